"""Test media: every video is written here with PyAV, so tests know the truth about it."""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.config import ComposerConfig, TaggerConfig
from services.domain import GeneratedMusic, VideoAnalysis
from services.generator.backends.composer.backend import ComposerGenerator
from services.generator.beatcheck import genre_brief
from services.media.synth import (
    SyntheticVideo,
    accuracy_shots,
    beat_shots,
    motion_shots,
    write_video,
)
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """SONIQUE's tests need its own environment (stable-audio-tools); ./dev.sh test runs them
    there. Elsewhere they are skipped, saying so; but not in that run (BGM_REQUIRE_SONIQUE
    set), where an environment without it had skipped all eleven and passed."""
    if importlib.util.find_spec("stable_audio_tools") is not None:
        return
    if os.environ.get("BGM_REQUIRE_SONIQUE"):
        raise pytest.UsageError(
            "BGM_REQUIRE_SONIQUE is set, and stable_audio_tools cannot be imported here: "
            "SONIQUE's environment is broken (./dev.sh sonique sets it up again)"
        )
    skip = pytest.mark.skip(reason="needs the SONIQUE environment: ./dev.sh sonique")
    for item in items:
        if item.get_closest_marker("sonique") is not None:
            item.add_marker(skip)


# The name under which test_fuzz.py puts each RPC's cases per status into its test's report.
FUZZ_SUMMARY = "fuzz cases"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fuzz tests' cases per RPC, in the run's output even without -s, and from every
    worker when the tests run in several processes (pytest -n)."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == FUZZ_SUMMARY
    ]
    if lines:
        terminalreporter.write_sep("-", "fuzz: cases per RPC")
        for line in lines:
            terminalreporter.write_line(str(line))


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cuts_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "cuts.mp4", accuracy_shots())


@pytest.fixture(scope="session")
def motion_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "motion.mp4", motion_shots(), audio=False)


@pytest.fixture(scope="session")
def tagger() -> VisionTagger:
    return VisionTagger(TaggerConfig())


@pytest.fixture(scope="session")
def beat_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "beat.mp4", beat_shots(), audio=False)


@pytest.fixture(scope="session")
def generator() -> ComposerGenerator:
    return ComposerGenerator(ComposerConfig())


@pytest.fixture(scope="session")
def beat_analysis(tagger: VisionTagger, beat_video: SyntheticVideo) -> VideoAnalysis:
    return tagger.analyze(AnalysisRequest(beat_video.path))


@pytest.fixture(scope="session")
def composed(
    generator: ComposerGenerator, beat_analysis: VideoAnalysis
) -> Callable[[str, int], GeneratedMusic]:
    """The composer's piece for the beat video in a genre, on a seed (genre_brief's brief),
    rendered once for every test that reads it: a seed plays the same piece every time
    (test_composer checks that), and rendering is most of these tests' time. Read-only."""
    pieces: dict[tuple[str, int], GeneratedMusic] = {}

    def piece(genre: str, seed: int = 1) -> GeneratedMusic:
        if (genre, seed) not in pieces:
            music = generator.generate(genre_brief(beat_analysis, genre, seed=seed))
            music.audio.flags.writeable = False
            pieces[genre, seed] = music
        return pieces[genre, seed]

    return piece


class _Trickle(http.server.BaseHTTPRequestHandler):
    """/trickle: a video that arrives one byte every half second, for ever."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            for _ in range(240):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def trickle() -> Iterator[str]:
    """The URL of a video source that trickles (for slow-source and held-request tests)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/trickle"
    server.shutdown()
