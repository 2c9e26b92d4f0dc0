"""Hostile input, slow sources and faults (issue 15): each class of attack gets its exact
status, costs no other caller anything, and leaves nothing on disk."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.auth import ServiceGate
from services.config import (
    BgmConfig,
    DeliveryLimit,
    RequestLimits,
    ServingConfig,
    StudioConfig,
    load_config,
)
from services.contract import brief_to_proto
from services.devserver import Running, free_port, start, stop, wait_serving, write_config
from services.domain import Cut, GeneratorInfo, Look, Segment
from services.edge import EdgeSchema, audio_bytes
from services.errors import CancelledError, ConfigError, InvalidInputError
from services.gateway.client import error_details
from services.gateway.server import binding as gateway_binding
from services.gen.bgm.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)
from services.generator.backends.composer.backend import PERFORMED, ComposerGenerator
from services.generator.beatcheck import genre_brief
from services.generator.servicer import SERVICE, GeneratorServicer
from services.media.audio import decode_audio, mux_into_video
from services.media.sources import SourcePolicy
from services.media.synth import Shot, SyntheticVideo, write_video
from services.scratch import MARKER, scratch_folder, sweep
from services.serve import check_tagger_reads_gateway_files, in_process_services
from services.serving import (
    ON_BEHALF_OF,
    STATUS_DETAILS_KEY,
    Cancellation,
    FairTurns,
    HostedServer,
    ServiceBinding,
    callers_of,
    freeze_start_up_heap,
    reason_of,
    status_for,
)
from services.studio.app import create_app
from services.tagger.backend import AnalysisRequest
from services.tagger.backends import create_tagger_backend
from services.tagger.server import binding as tagger_binding
from services.tagger.servicer import SERVICE as TAGGER_SERVICE
from services.tagger.servicer import TaggerServicer
from services.vocabulary import load_vocabulary
from tests.hand_made_media import stating_length, write_streams
from tests.test_services import code_of, metric, score

# ---- the edge schema, without servers --------------------------------------------------

HOSTILE = [
    # (request, field named in the message, what the message says)
    (gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(data=b"x", file_name="a." + "m" * 300)),
     "video.file_name", "at most 255 characters"),
    (gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(data=b"x", file_name="a\x00.mp4")),
     "video.file_name", "control character"),
    # Invisible, or turning the name round where a message quotes it.
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(genres=["rock\u200b"])),
     "controls.genres[0]", "invisible character U+200B is not allowed"),
    (gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(data=b"x", file_name="a\u202e4pm.exe")),
     "video.file_name", "invisible character U+202E"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(seed=-1)),
     "controls.seed", "at least 0"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(instruments=["piano"] * 20)),
     "controls.instruments", "at most 16 items"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(instruments=["piano", "piano"])),
     "controls.instruments", "named more than once"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(genres=["x" * 1_000_000])),
     "controls.genres[0]", "at most 255 characters (got 1000000"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(
        negative=[f"tag{i}" for i in range(10_000)])),
     "controls.negative", "at most 16 items (got 10000)"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(prompt="x" * 5_000_000)),
     "controls.prompt", "at most 2000 characters"),
    (gateway_pb2.ScoreRequest(controls=common_pb2.UserControls(bpm=float("nan"))),
     "controls.bpm", "finite"),
    (generator_pb2.GenerateRequest(brief=common_pb2.MusicBrief(
        tags=common_pb2.MusicTags(instruments=["piano"] * 20))),
     "brief.tags.instruments", "at most 16 items"),
    (generator_pb2.GenerateRequest(brief=common_pb2.MusicBrief(
        cuts=[common_pb2.Cut(time_s=-1.0)])),
     "brief.cuts[0].time_s", "at least 0"),
    (generator_pb2.GenerateRequest(brief=common_pb2.MusicBrief(
        cuts=[common_pb2.Cut(time_s=1.0, kind=99)])),  # type: ignore[arg-type]
     "brief.cuts[0].kind", "99 is not a value of CutKind (valid: 0, 1, 2)"),
    (gateway_pb2.ScoreRequest(output=gateway_pb2.OutputOptions(format=70)),  # type: ignore[arg-type]
     "output.format", "70 is not a value of OutputFormat"),
]  # fmt: skip


@pytest.mark.parametrize(("request_message", "field", "says"), HOSTILE)
def test_the_edge_names_the_field_and_quotes_little(request_message, field, says):
    with pytest.raises(InvalidInputError) as caught:
        EdgeSchema(RequestLimits()).check(request_message)
    message = str(caught.value)
    assert message.startswith(f"{field}:") and says in message, message
    assert len(message) < 200


def test_an_ordinary_request_passes_the_edge():
    controls = common_pb2.UserControls(genres=["rock"], moods=["happy"], prompt="a\nwalk",
                                       seed=7, bpm=120, candidates=2)  # fmt: skip
    EdgeSchema(RequestLimits()).check(gateway_pb2.ScoreRequest(controls=controls))


def test_a_refusal_is_bounded_and_carries_its_details():
    from google.rpc import error_details_pb2, status_pb2

    from services.serving import MAX_MESSAGE_CHARS, status_for

    error = InvalidInputError("y" * 5000, field="controls.prompt", error_reason="FIELD_LIMIT")
    refusal = status_for(error)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(refusal.message) <= MAX_MESSAGE_CHARS and "more characters" in refusal.message
    status = status_pb2.Status.FromString(refusal.details)
    bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(bad) and status.details[1].Unpack(info)
    assert bad.field_violations[0].field == "controls.prompt"
    assert (info.reason, info.domain) == ("FIELD_LIMIT", "bgm.v1")
    assert status_for(RuntimeError("/srv/secret/path")).message == (
        "internal error (the server log has the details)"
    )


def test_a_full_disk_is_resource_exhausted_not_internal():
    """The server's disk filling while a request writes its outputs: RESOURCE_EXHAUSTED,
    DISK_FULL, retry later (it had been INTERNAL "internal error", as if a bug)."""
    import errno

    from google.rpc import error_details_pb2, status_pb2

    from services.serving import status_for

    refusal = status_for(OSError(errno.ENOSPC, "No space left on device", "/srv/out/x.wav"))
    assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk filled" in refusal.message and "/srv" not in refusal.message
    status = status_pb2.Status.FromString(refusal.details)
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details) and info.reason == "DISK_FULL"
    assert status_for(OSError(errno.EACCES, "denied")).code == grpc.StatusCode.INTERNAL


# ---- scratch folders a killed process left -----------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from services.scratch import scratch_folder
with scratch_folder(Path(sys.argv[1]), sys.argv[2]) as folder:
    (folder / "upload.mp4").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)
"""


def _held_folder(root: Path, owner: str) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), owner],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_start_up_sweeps_only_what_killed_processes_of_its_own_left(tmp_path: Path):
    held = []
    try:  # from the first start: one that failed had left the others sleeping 600 s
        for service in ("gateway", "gateway", "tagger"):
            held.append(_held_folder(tmp_path, service))
        (killed, orphan), (_alive, busy), (other, foreign) = held
        unmarked = tmp_path / "someone-elses"
        unmarked.mkdir()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        other.send_signal(signal.SIGKILL)
        other.wait()
        assert orphan.is_dir()  # SIGKILL: nothing of the process's own ran
        assert sweep(tmp_path, "gateway", "gateway.staging_dir") == 1
        assert not orphan.exists()
        assert busy.is_dir() and foreign.is_dir() and unmarked.is_dir()
    finally:
        for process, _ in held:
            process.kill()
            process.wait()


def test_a_scratch_root_that_cannot_hold_folders_stops_the_start(tmp_path: Path):
    """A staging folder that was a file (or on a read-only disk) had passed start-up and
    failed every request INTERNAL; now the service refuses to start, naming the key."""
    file = tmp_path / "staging"
    file.write_text("")
    with pytest.raises(ConfigError, match=r"^gateway\.staging_dir: .* cannot hold scratch"):
        sweep(file, "gateway", "gateway.staging_dir")
    fresh = tmp_path / "made" / "here"
    assert sweep(fresh, "gateway", "gateway.staging_dir") == 0
    assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_a_scratch_folder_is_removed_however_the_request_ends(tmp_path: Path):
    with pytest.raises(RuntimeError), scratch_folder(tmp_path, "tagger") as folder:
        assert (folder / MARKER).is_file()
        raise RuntimeError("the request failed")
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_request_keeps_its_folder_until_the_work_in_its_thread_stops(
    tmp_path: Path,
):
    """A Score cancelled while a thread wrote its outputs (its caller had stopped reading):
    the request's folder was removed while the thread went on writing into it (until the
    request's status was sent), and what it wrote then was left behind. The thread is now
    stopped and waited for first."""

    class StreamStillOpen:
        def add_done_callback(self, callback: Callable[[Any], None]) -> None:
            """The stream ends after its work is cancelled, not before."""

    cancellation = Cancellation(StreamStillOpen())
    writing, seen = threading.Event(), {}

    def write(folder: Path) -> None:
        while True:
            (folder / "part.wav").write_bytes(b"RIFF")
            writing.set()
            try:
                cancellation.check()
            except CancelledError:
                seen["folder there when stopped"] = folder.is_dir()
                raise
            time.sleep(0.005)

    async def request() -> None:
        with scratch_folder(tmp_path, "gateway") as folder:
            await cancellation.in_thread(write, folder)

    async def scenario() -> None:
        task = asyncio.ensure_future(request())
        assert await asyncio.to_thread(writing.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert seen == {"folder there when stopped": True}
    assert list(tmp_path.iterdir()) == []


# ---- media limits before decoding --------------------------------------------------------

# The peak of this process's own memory (VmHWM; ru_maxrss would carry the parent's over).
_PROBE = """
import sys
from pathlib import Path
from services.errors import InvalidVideoError
from services.media.video import probe_video
try:
    probe_video(sys.argv[1])
except InvalidVideoError as error:
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(line for line in status if line.startswith("VmHWM")).split()[1]
    print(error.reason, int(peak) // 1024)
"""


@pytest.fixture(scope="module")
def huge_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16000x16000 H.264 video of two black frames (about 750 KB)."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("huge") / "huge.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 16000
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        black = av.VideoFrame.from_ndarray(np.zeros((16000, 16000, 3), np.uint8), format="rgb24")
        for _ in range(2):
            for packet in stream.encode(black):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_huge_frame_is_refused_before_it_is_decoded(huge_frame: Path):
    probe = subprocess.run([sys.executable, "-c", _PROBE, str(huge_frame)], capture_output=True,
                           text=True, timeout=60, check=True)  # fmt: skip
    reason, peak_mb = probe.stdout.split()
    print(f"probing a 16000x16000 frame: peak memory {peak_mb} MB")
    # Decoding the frame alone would take 16000 x 16000 x 1.5 bytes = 384 MB.
    assert reason == "too_large" and int(peak_mb) < 300


# ---- damaged media the muxer and the mixer meet (found by tests/test_fuzz.py) -----------


def test_a_damaged_audio_track_still_mixes(media_dir: Path):
    video = write_video(media_dir / "to-damage.mp4", [Shot(2.0, speed=0.5), Shot(2.0, hue=0.6)])
    data = bytearray(video.path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0xFF
    damaged = media_dir / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    audio = decode_audio(damaged, 48000, 4 * 48000)
    assert audio is not None and audio.shape == (4 * 48000, 2)


def test_a_video_joined_to_itself_muxes(media_dir: Path, tmp_path: Path):
    video = write_video(media_dir / "once.mkv", [Shot(1.0, speed=0.5)], audio=False,
                        width=128, height=72)  # fmt: skip
    twice = tmp_path / "twice.mkv"
    twice.write_bytes(video.path.read_bytes() * 2)
    out = tmp_path / "scored.mp4"
    mux_into_video(twice, out, np.zeros((48000, 2), np.float32), 48000)
    with av.open(str(out)) as container:
        assert container.streams.video and container.streams.audio


@pytest.mark.parametrize("extension", [".mp4", ".mkv"])
def test_a_matroska_video_with_b_frames_keeps_every_picture(tmp_path: Path, extension: str):
    """Matroska stores no decode times, and FFmpeg gives none to a B-frame stream's first
    packets: the muxer had dropped them, first picture and all, and nothing decoded until the
    next keyframe (30 of 90 frames here)."""
    video = write_video(tmp_path / "b-frames.mkv", [Shot(2.0, speed=0.5), Shot(1.0, hue=0.5)],
                        x264_preset="medium")  # fmt: skip
    out = tmp_path / f"scored{extension}"
    mux_into_video(video.path, out, np.zeros((3 * 48000, 2), np.float32), 48000)
    with av.open(str(out)) as container:
        pictures = sum(1 for _ in container.decode(container.streams.video[0]))
    assert pictures == len(video.frame_times_s) == 90


@pytest.mark.parametrize("first_pts", [900_000, 2**33 - 90_000], ids=["ten-hours", "wrapping"])
def test_an_mpeg_ts_capture_starts_with_its_music(tmp_path: Path, first_pts: int):
    """A capture's clock starts anywhere (here at 10 s, or a second before its 33 bits
    wrap): the scored video starts at 0 with its music and keeps every frame. It had started
    10 s after the music, and past the wrap kept 32 of 90 frames, 26.5 hours on."""
    capture = write_streams(tmp_path / "capture.ts", frames=90, first_pts=first_pts,
                            sound_s=3.0, container_format="mpegts")  # fmt: skip
    out = tmp_path / "scored.mp4"
    mux_into_video(capture, out, np.zeros((3 * 48000, 2), np.float32), 48000)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.start_time == 0 and container.duration == pytest.approx(3_000_000, abs=50_000)
        assert sum(1 for _ in container.decode(video)) == 90


def test_a_video_is_muxed_no_longer_than_its_music(tmp_path: Path):
    """A container that states 2 s over a minute of frames gets 2 s of music, and the scored
    video stops with it (the whole minute had been copied under 2 s of sound)."""
    minute = write_streams(tmp_path / "minute.mkv", frames=30 * 60, sound_s=2.0,
                           container_format="matroska")  # fmt: skip
    path = stating_length(minute, tmp_path / "states-2s.mkv", 2.0)
    out = tmp_path / "scored.mp4"
    mux_into_video(path, out, np.zeros((2 * 48000, 2), np.float32), 48000)
    with av.open(str(out)) as container:
        shown = [float(p.pts * p.time_base) for p in container.demux(container.streams.video[0])
                 if p.pts is not None]  # fmt: skip
    # Pictures are cut in decoding order, so B-frames' references may show a frame or two on.
    assert 2 * 30 <= len(shown) <= 2 * 30 + 3 and max(shown) - min(shown) < 2.1


# ---- cancellation in planning --------------------------------------------------------------


def _long_timeline(analysis, cuts: int):
    """A brief with a cut every 0.3 s: planning it is the long part."""
    duration = cuts * 0.3
    look = Look(0.5, 0.5, 0.5, 0.5)
    return genre_brief(
        analysis, "pop", duration_s=duration,
        segments=[Segment(i * 0.3, (i + 1) * 0.3, 0.5, look, ["happy"]) for i in range(cuts)],
        cuts=[Cut((i + 1) * 0.3, "hard", 0.8) for i in range(cuts - 1)],
    )  # fmt: skip


def _cancelled_after(seconds: float) -> tuple[Callable[[float], None], list[float]]:
    """A progress callback that cancels `seconds` from now, and how late each call that
    heard the cancel came."""
    cancel_at = time.monotonic() + seconds
    heard: list[float] = []

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now >= cancel_at:
            heard.append(now - cancel_at)
            raise CancelledError("cancelled")

    return progress, heard


class _CheckedWork:
    """A progress callback that measures the longest stretch of the calling thread's CPU time
    between two of its calls (time other processes take from the machine does not count, nor
    the interpreter's full collections, which no code can ask in: on a host of this kind at
    half the speed of the one the bound was set on, one walking what planning made took 70-90
    ms in the middle of a loop that asks every note), and cancels at the first call that
    reports `cancel_at` done. Open it as a context manager: it hears the collections while
    open."""

    def __init__(self, cancel_at: float):
        self.cancel_at = cancel_at
        self.longest = 0.0
        self._collecting = 0.0
        self._collected = 0.0
        self._last = 0.0

    def __enter__(self) -> _CheckedWork:
        gc.callbacks.append(self._on_collection)
        self._last = time.thread_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._collecting = time.thread_time()
        else:
            self._collected += time.thread_time() - self._collecting

    def __call__(self, fraction: float) -> None:
        now = time.thread_time()
        self.longest = max(self.longest, now - self._last - self._collected)
        self._last, self._collected = now, 0.0
        if fraction >= self.cancel_at:
            raise CancelledError("cancelled")


@pytest.mark.alone
def test_planning_hears_a_cancel_promptly_all_the_way_through(generator, beat_analysis):
    """Planning a 25-minute piece with a cut every 0.3 s (the tempo map, the arrangement, the
    performance) asks whether it is cancelled at least every tenth of a second of its work:
    the tempo map's windows of 1,024 beats went 0.19-0.23 s between two asks, and a cancel
    that came early in one waited for it."""
    brief = _long_timeline(beat_analysis, 5000)
    # As a server does: a full collection then walks only what planning made (over the test
    # process's whole heap, one took 0.1-0.15 s).
    freeze_start_up_heap()
    try:
        with _CheckedWork(cancel_at=PERFORMED) as checked, pytest.raises(CancelledError):
            generator.generate(brief, checked)
    finally:
        gc.unfreeze()
    print(f"planning went {checked.longest * 1000:.0f} ms of its CPU time between two asks")
    # 0.07 s on the host the bound was set on (the heartbeat's 0.05 s and a window of the
    # map), 0.10-0.11 s on one half as fast (0.12-0.14 s, and once 0.19 s, with collections
    # counted and the sections unasked); windows of 1,024 beats: 0.52 s there.
    assert checked.longest <= 0.15


@pytest.mark.alone
def test_analysis_hears_a_cancel_within_a_tenth_of_a_second(tagger, beat_video):
    freeze_start_up_heap()  # as a server does (a full collection of this process's heap: 0.1 s)
    progress, heard = _cancelled_after(0.3)
    try:
        with pytest.raises(CancelledError):
            tagger.analyze(AnalysisRequest(beat_video.path), progress)
    finally:
        gc.unfreeze()
    print(f"the analysis heard the cancel {heard[0] * 1000:.0f} ms after it was asked for")
    assert heard[0] <= 0.1


@pytest.mark.alone
def test_mastering_and_writing_hear_a_cancel(tmp_path: Path, media_dir: Path):
    from services.domain import CutAlignment, GeneratedMusic, MusicPlan, OutputOptions
    from services.gateway.delivery import master_music, write_outputs

    rate = 48000
    noise = np.random.default_rng(0).normal(0, 0.1, (180 * rate, 2)).astype(np.float32)
    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    music = GeneratedMusic(noise, rate, {}, b"", plan)
    calls: list[float] = []
    mastered = master_music(media_dir / "unused.mp4", music, OutputOptions(tmp_path / "out.wav"),
                            lambda: calls.append(time.monotonic()))  # fmt: skip
    gaps = np.diff(calls)
    print(f"mastering 3 min: {len(calls)} heartbeats, at most {gaps.max() * 1000:.0f} ms apart")
    assert len(calls) > 10 and gaps.max() < 0.25

    def cancel_soon() -> None:
        calls.append(0.0)
        if len(calls) > 20:
            raise CancelledError("cancelled")

    calls.clear()
    with pytest.raises(CancelledError):
        write_outputs(media_dir / "unused.mp4", music, mastered,
                      OutputOptions(tmp_path / "out.wav"), cancel_soon)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# ---- real servers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening-media")


@pytest.fixture(scope="module")
def clip(media: Path) -> SyntheticVideo:
    shots = [Shot(2.0, speed=0.4, hue=0.1), Shot(2.0, speed=0.8, hue=0.6)]
    return write_video(media / "clip.mp4", shots)


SOURCES = {"file_roots": [], "http_hosts": ["127.0.0.1"], "allow_private_addresses": True,
           "timeout_s": 60.0}  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Iterator[Running]:
    running = start(tmp_path_factory.mktemp("hardened"), media,
                    sources={**SOURCES, "file_roots": [str(media)]},
                    max_upload_bytes=2_000_000, max_requests_per_client=12,
                    upload_timeout_s=UPLOAD_TIMEOUT_S)  # fmt: skip
    yield running
    assert stop(running) == 0


# The hardened gateway's deadline for an upload's bytes.
UPLOAD_TIMEOUT_S = 4.0


def _left_behind(running: Running) -> list[Path]:
    found = [*running.staging.glob("*")]
    if running.tagger_scratch.exists():
        found += running.tagger_scratch.glob("*")
    return found


def _request(uri: str = "", data: bytes = b"", **controls: Any) -> gateway_pb2.ScoreRequest:
    video = common_pb2.VideoSource(uri=uri) if uri else common_pb2.VideoSource(data=data)
    return gateway_pb2.ScoreRequest(video=video, controls=common_pb2.UserControls(**controls))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("controls", "field"),
    [({"seed": -1}, "controls.seed"),
     ({"instruments": ["piano"] * 20}, "controls.instruments"),
     ({"genres": ["x" * 1_000_000]}, "controls.genres[0]"),
     ({"negative": [f"tag{i}" for i in range(10_000)]}, "controls.negative"),
     ({"prompt": "x" * 5_000_000}, "controls.prompt")],
)  # fmt: skip
def test_hostile_controls_are_invalid_argument_naming_the_field(servers, clip, controls, field):
    started = time.monotonic()
    code, details = code_of(lambda: score(servers.gateway, _request(clip.path.as_uri(),
                                                                    **controls)))  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details
    assert len(details) < 200 and time.monotonic() - started < 5
    assert _left_behind(servers) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a." + "m" * 300, "a\x00.mp4"])
def test_hostile_file_names_are_invalid_argument(servers, clip, name):
    video = common_pb2.VideoSource(data=clip.path.read_bytes(), file_name=name)
    code, details = code_of(lambda: score(servers.gateway, gateway_pb2.ScoreRequest(video=video)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("video.file_name")
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_a_playlist_reads_no_file_it_names(servers, tmp_path: Path):
    """An uploaded HLS playlist naming a video outside every allowed folder: FFmpeg had read
    it, and the gateway scored it and handed it back."""
    secret = write_video(tmp_path / "secret.ts", [Shot(2.0, hue=0.3)], audio=False)
    for entry in (str(secret.path), secret.path.as_uri()):
        playlist = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
                    f"{entry}\n#EXT-X-ENDLIST\n")  # fmt: skip
        request = gateway_pb2.ScoreRequest(
            video=common_pb2.VideoSource(data=playlist.encode(), file_name="x.m3u8")
        )
        code, details = code_of(lambda r=request: score(servers.gateway, r))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "playlist" in details, details
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_inline_bytes_obey_the_upload_limit(servers):
    code, details = code_of(lambda: score(servers.gateway, _request(data=b"x" * 2_000_001)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "upload limit" in details
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_an_upload_that_trickles_is_cut_off(servers, media):
    """An upload whose bytes trickle (a header, then a byte every half second) is refused
    once gateway.upload_timeout_s has passed, its staging folder gone; it had held its folder
    and one of its client's requests for as long as it liked."""

    def trickle() -> Iterator[gateway_pb2.ScoreUploadRequest]:
        header = gateway_pb2.UploadHeader(file_name="slow.mp4", size_bytes=1000)
        yield gateway_pb2.ScoreUploadRequest(header=header)
        for _ in range(60):
            time.sleep(0.5)
            yield gateway_pb2.ScoreUploadRequest(chunk=b"x")

    def upload() -> None:
        with grpc.insecure_channel(servers.gateway) as channel:
            list(gateway_pb2_grpc.GatewayStub(channel).ScoreUpload(trickle(), timeout=60))

    started = time.monotonic()
    code, details = code_of(upload)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "did not arrive within" in details
    assert time.monotonic() - started < UPLOAD_TIMEOUT_S + 10
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_an_upload_its_caller_cancels_is_counted_cancelled(servers):
    """A caller that cancels mid-upload went away: its request is counted CANCELLED, and its
    staging folder goes. It had been counted INVALID_ARGUMENT ("the upload's header said N
    bytes and M came"), as bad input of the caller's, in the metrics that alert on it."""

    def counted(code: str) -> float:
        labels = f'code="{code}",method="ScoreUpload",service="bgm.v1.Gateway"'
        return metric(servers.metrics, f"bgm_requests_total{{{labels}")

    before = counted("CANCELLED"), counted("INVALID_ARGUMENT")
    sent, cancelled = threading.Event(), threading.Event()

    def part_of_a_file() -> Iterator[gateway_pb2.ScoreUploadRequest]:
        header = gateway_pb2.UploadHeader(file_name="clip.mp4", size_bytes=1_000_000)
        yield gateway_pb2.ScoreUploadRequest(header=header)
        yield gateway_pb2.ScoreUploadRequest(chunk=b"x" * 65536)
        sent.set()
        cancelled.wait(10)

    with grpc.insecure_channel(servers.gateway) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).ScoreUpload(part_of_a_file(), timeout=60)
        assert sent.wait(10)
        time.sleep(0.5)
        call.cancel()
        cancelled.set()
        _until(lambda: counted("CANCELLED") == before[0] + 1, timeout_s=10)
    assert counted("INVALID_ARGUMENT") == before[1]
    assert _left_behind(servers) == []


def _nothing_until(stalled: threading.Event) -> Iterator[Any]:
    """A request stream that sends nothing, held open until `stalled` is set (60 s at most)."""
    stalled.wait(60)
    return
    yield  # (a generator that sends nothing)


@pytest.mark.slow
def test_an_upload_that_never_sends_its_header_is_counted_and_cut_off(servers):
    """A ScoreUpload that sends nothing counts against its client's requests and ends after
    gateway.upload_timeout_s: it had been held for good and counted against no limit (one
    client held 20,000 open)."""
    stalled = threading.Event()
    nothing = functools.partial(_nothing_until, stalled)

    with grpc.insecure_channel(servers.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        started = time.monotonic()
        held = [stub.ScoreUpload(nothing(), timeout=60) for _ in range(12)]
        time.sleep(1.0)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.ScoreUpload(nothing(), timeout=60))
        assert error_details(caught.value).reason == "CLIENT_BUSY"
        for call in held:
            code, details = code_of(lambda call=call: list(call))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
            assert "header did not arrive within" in details
        assert time.monotonic() - started < UPLOAD_TIMEOUT_S + 10
        stalled.set()
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_no_server_path_reaches_the_client(servers):
    code, details = code_of(lambda: score(servers.gateway, _request(data=b"")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in details
    assert str(servers.staging) not in details and "/" not in details, details


def _unread_staging(tmp_path: Path, media: Path) -> BgmConfig:
    """The README's file roots set for the tagger without the gateway's staging folder."""
    return BgmConfig.model_validate({
        "tagger": {"sources": {"file_roots": [str(media)]},
                   "scratch_dir": str(tmp_path / "tagger-scratch")},
        "gateway": {"staging_dir": str(tmp_path / "staging"),
                    "sources": {"file_roots": [str(media)]}},
    })  # fmt: skip


def test_a_tagger_that_cannot_read_the_gateways_staging_is_refused_at_start(
    tmp_path: Path, media: Path
):
    # Every upload had failed with PERMISSION_DENIED naming the server's staging path.
    config = _unread_staging(tmp_path, media)

    async def served_in_process() -> None:
        async with in_process_services(config):
            pass

    with pytest.raises(ConfigError, match=r"tagger\.sources\.file_roots") as caught:
        asyncio.run(served_in_process())
    assert str(tmp_path / "staging") in str(caught.value)
    shared = config.gateway.model_copy(update={"staging_url": (tmp_path / "store").as_uri()})
    check_tagger_reads_gateway_files(config.model_copy(update={"gateway": shared}))
    served = subprocess.run([sys.executable, "-m", "services.cli", "--config",
                             str(_written(tmp_path, config)), "serve"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert served.returncode == 2 and "tagger.sources.file_roots" in served.stderr, served
    # `bgm studio` with its own services: refused before it starts (it had been a traceback
    # from inside the web server's start-up, exit 3).
    with pytest.raises(ConfigError, match=r"tagger\.sources\.file_roots"):
        create_app(StudioConfig(folder=tmp_path / "studio"), config)
    assert not (tmp_path / "studio").exists()


def _written(tmp_path: Path, config: BgmConfig) -> Path:
    path = tmp_path / "bgm.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    return path


def test_a_tagger_elsewhere_that_refuses_the_staged_video_is_the_servers_fault(
    tmp_path: Path, media: Path, clip: SyntheticVideo
):
    # The tagger on its own (another host's config): the caller had been told PERMISSION_DENIED,
    # "file:///.../staging/<request>/clip.mp4 is outside the folders this server may read".
    config = _unread_staging(tmp_path, media)
    with _hosted(tagger_binding(config)) as (tagger_address, _):
        reaching = config.gateway.model_copy(update={"tagger_address": tagger_address})
        elsewhere = config.model_copy(update={"gateway": reaching})
        with (
            _hosted(lambda: gateway_binding(elsewhere)) as (address, _),
            grpc.insecure_channel(address) as channel,
        ):
            stub = gateway_pb2_grpc.GatewayStub(channel)
            request = gateway_pb2.GatewayAnalyzeRequest(video=common_pb2.VideoSource(
                data=clip.path.read_bytes(), file_name="clip.mp4"))  # fmt: skip
            code, details = code_of(lambda: stub.Analyze(request, timeout=60))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
    assert "configuration" in details and "/" not in details, details


@pytest.mark.slow
def test_eight_huge_frames_cost_the_gateway_little(servers, huge_frame):
    def peak_mb() -> int:
        status = Path(f"/proc/{servers.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM"))
                   .split()[1]) // 1024  # fmt: skip

    before = peak_mb()
    data = huge_frame.read_bytes()
    results: list[tuple[grpc.StatusCode, str]] = []

    def upload() -> None:
        results.append(code_of(lambda: score(servers.gateway, _request(data=data))))

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"eight 16000x16000 uploads: the services' peak memory {before} -> {peak_mb()} MB")
    assert all(code == grpc.StatusCode.INVALID_ARGUMENT and "16000x16000" in details
               for code, details in results), results  # fmt: skip
    # Decoding the eight frames would take 8 x 384 MB (3.4 GB before the limits were read
    # first); opening such a stream without decoding costs tens of MB.
    assert peak_mb() - before < 8 * 64
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_a_request_for_too_much_music_is_refused(servers, beat_analysis):
    brief = genre_brief(beat_analysis, "pop", duration_s=3000.0)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        request = generator_pb2.GenerateRequest(brief=brief_to_proto(brief), candidates=4)
        code, details = code_of(lambda: list(stub.Generate(request, timeout=10)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "the limit is 7200 s" in details


@pytest.mark.slow
def test_stems_count_as_music_held(servers, beat_analysis):
    """A stem is a track of the piece's length, held as the mix is: 1,500 s of pop (five
    instruments, so six tracks) with stems is refused before any work; without stems it is
    within the limit (600 s with stems for 11 instruments had held 6.2 GB, not 1.6)."""
    brief = genre_brief(beat_analysis, "pop", duration_s=1500.0)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        request = generator_pb2.GenerateRequest(brief=brief_to_proto(brief), stems=True)
        started = time.monotonic()
        code, details = code_of(lambda: list(stub.Generate(request, timeout=10)))
        assert time.monotonic() - started < 2.0
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert "9000 s of audio (1500.0 s x 1 candidate(s) x 6 tracks each" in details
        plain = generator_pb2.GenerateRequest(brief=brief_to_proto(brief))
        first = next(iter(stub.Generate(plain, timeout=30)))
    assert first.HasField("progress")


@pytest.mark.slow
def test_outputs_an_existing_file_and_a_refused_request(servers, clip):
    existing = servers.outputs / "taken"
    existing.write_text("a file, not a folder")
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        output=gateway_pb2.OutputOptions(output_uri=existing.as_uri()),
    )
    code, details = code_of(lambda: score(servers.gateway, request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("output_uri"), details
    # Refused after the folder's name was checked: nothing is made for it.
    fresh = servers.outputs / "new" / "deeper"
    request.output.output_uri = fresh.as_uri()
    request.controls.genres.append("polka")
    assert code_of(lambda: score(servers.gateway, request))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert not (servers.outputs / "new").exists()
    assert _left_behind(servers) == []


@pytest.mark.slow
def test_four_requests_write_into_one_folder(servers, clip):
    folder = servers.outputs / "shared"
    request = gateway_pb2.ScoreRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri()),
        output=gateway_pb2.OutputOptions(output_uri=folder.as_uri(), midi=True),
    )
    results: list[object] = []

    def one() -> None:
        try:
            results.append(score(servers.gateway, request)[-1].result)
        except grpc.RpcError as error:
            results.append(error.code())

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(r, gateway_pb2.ScoreResult) for r in results), results
    assert sorted(p.name for p in folder.iterdir()) == ["music.mid", "scored.mp4"]
    assert _left_behind(servers) == []


@pytest.mark.slow
@pytest.mark.alone
def test_slow_sources_cost_an_ordinary_request_nothing(servers, clip, trickle):
    ordinary = _request(clip.path.as_uri())
    score(servers.gateway, ordinary)  # warm
    started = time.monotonic()
    score(servers.gateway, ordinary)
    alone = time.monotonic() - started

    trickling: list[grpc.StatusCode] = []
    channels = [grpc.insecure_channel(servers.gateway) for _ in range(8)]
    calls = [gateway_pb2_grpc.GatewayStub(c).Score(_request(trickle), timeout=60)
             for c in channels]  # fmt: skip

    def drain(call) -> None:
        try:
            list(call)
        except grpc.RpcError as error:
            trickling.append(error.code())

    threads = [threading.Thread(target=drain, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the downloads are under way
    started = time.monotonic()
    score(servers.gateway, ordinary)
    meanwhile = time.monotonic() - started
    print(f"an ordinary request: {alone:.2f} s alone, {meanwhile:.2f} s while 8 sources trickle")
    for call in calls:
        call.cancel()
    for thread in threads:
        thread.join()
    for channel in channels:
        channel.close()
    # Four downloads at once (SourcePolicy.max_downloads); the rest are refused at once.
    assert trickling.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4, trickling
    assert meanwhile < 2 * alone + 1.0
    deadline = time.monotonic() + 5
    while _left_behind(servers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _left_behind(servers) == []


@pytest.mark.slow
@pytest.mark.alone
def test_a_cancelled_long_brief_frees_the_generator_within_a_second(servers, beat_analysis):
    brief = _long_timeline(beat_analysis, 20_000)
    with grpc.insecure_channel(servers.generator) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        call = stub.Generate(generator_pb2.GenerateRequest(brief=brief_to_proto(brief)),
                             timeout=3.0)  # fmt: skip
        code, _ = code_of(lambda: list(call))
        deadline = time.monotonic()
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    while metric(servers.generator_metrics, "bgm_generations_running") > 0:
        assert time.monotonic() - deadline < 1.0, "the generator kept planning"
        time.sleep(0.02)
    print(f"the generator stopped {time.monotonic() - deadline:.2f} s after the deadline")


def _waits_while(
    send: Callable[[], None], ask: Callable[[], Any], pause_s: float
) -> tuple[list[float], float]:
    """Three callers `send` at once while another keeps calling `ask` (`pause_s` apart): how
    long each `ask` took, and how long it all took."""
    senders = [threading.Thread(target=send) for _ in range(3)]
    waits = []
    started = time.monotonic()
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        asked = time.monotonic()
        ask()
        waits.append(time.monotonic() - asked)
        time.sleep(pause_s)
    for sender in senders:
        sender.join()
    return waits, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.alone
def test_briefs_at_the_limits_leave_the_generator_answering_others(servers):
    """Three callers each send a brief at the timeline limits (20,000 segments with
    2,000-character captions: 40 MB), for twice the music a request may ask for: checking and
    reading them takes the generator a fraction of a second each, and meanwhile it answers
    another caller's Describe and reads its short brief (they had held its event loop: 1.3 s
    a request)."""
    limits = RequestLimits()
    items = limits.max_timeline_items
    # A brief the generator could honour but for its length (it is checked first).
    brief = _brief_of(limits.max_music_s)
    caption = "a crowd crosses the square at dusk, " * (limits.max_prompt_chars // 36)
    span = limits.max_music_s / items
    for i in range(items):
        brief.segments.add(start_s=i * span, end_s=(i + 1) * span, caption=caption)
        brief.cuts.add(time_s=(i + 0.5) * span, strength=0.8)
    # Sent as it is (serialized once here, not by each sender as it sends).
    request = generator_pb2.GenerateRequest(brief=brief, candidates=2).SerializeToString()
    assert len(request) > 40_000_000
    codes: list[tuple[grpc.StatusCode, str]] = []
    # The huge requests and the Describe calls each travel on their own connection.
    own = [("grpc.use_local_subchannel_pool", 1)]

    def send() -> None:
        with grpc.insecure_channel(servers.generator, options=own) as channel:
            generate = channel.unary_stream("/bgm.v1.Generator/Generate")
            codes.append(code_of(lambda: list(generate(request, timeout=60))))

    # Another caller's short brief (refused for the music it asks for, after it is read).
    short = generator_pb2.GenerateRequest(brief=_brief_of(limits.max_music_s), candidates=2)
    short_codes = []
    with grpc.insecure_channel(servers.generator, options=own) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        stub.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=30)

        def ask() -> None:
            stub.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=30)
            short_codes.append(code_of(lambda: list(stub.Generate(short, timeout=30)))[0])

        waits, took = _waits_while(send, ask, pause_s=0.02)
    assert [code for code, _ in codes] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3, codes
    assert all("14400 s" in details for _, details in codes), codes
    assert set(short_codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    print(f"{len(waits)} answers in {took:.2f} s, the slowest {max(waits):.3f} s")
    # With the loop held by each huge request in turn, the slowest had waited over half of
    # that (1.8 s of 3.0 s); at first about a tenth (0.2-0.3 s of 1.7-2.2 s), on 2026-12-06
    # up to a third (0.39-0.67 s of 1.8-2.1 s in six runs, at 4bfa2c1 and 512130b alike; a
    # fresh-clone CI's 0.64 s of 1.87 s had failed the bound of a third; at e0316ab one of
    # 1.75 s of 2.15 s failed this one). Each huge request had been serialized again on the
    # loop to count its bytes (0.45-1.3 s); counted as it came, the slowest waited 0.19-0.36 s
    # of 2.0-2.2 s in four runs, while the loop parsed the requests as they arrived.
    assert max(waits) < took / 2


@pytest.mark.slow
def test_request_headers_are_refused_over_the_limit_and_only_then(servers):
    """Metadata over serving.max_metadata_bytes (16 KiB) is refused saying so, and any under
    it is taken. gRPC's own limits had refused headers between 8 and 16 KiB at random (a
    12 KiB token about half its calls), and 1,000 small entries with an empty message."""
    check = health_pb2.HealthCheckRequest(service="bgm.v1.Gateway")
    with grpc.insecure_channel(servers.gateway) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(12):
            reply = health.Check(check, timeout=10, metadata=(("x-token", "t" * 12_000),))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        for metadata in ((("x-token", "t" * 20_000),),
                         tuple((f"x-k{i}", "v") for i in range(1000))):  # fmt: skip
            with pytest.raises(grpc.RpcError) as refused:
                health.Check(check, timeout=10, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "over the 16384 this server takes (serving.max_metadata_bytes)" in (
                refused.value.details() or ""
            )


@pytest.mark.slow
def test_metrics_listen_where_the_service_listens(servers):
    port = int(servers.metrics.rsplit(":", 1)[1].split("/")[0])
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    local = [fields[1] for fields in listening if fields[3] == "0A"
             and int(fields[1].split(":")[1], 16) == port]  # fmt: skip
    assert local == ["0100007F:" + f"{port:04X}"]  # 127.0.0.1, not 0.0.0.0


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_service_on_an_ipv6_address_serves_its_metrics_there(tmp_path: Path, media: Path):
    """serving.tagger.host "[::1]", as gRPC writes an IPv6 address: the metrics listen on
    the same address (the server had died at start-up: prometheus was handed "[::1]")."""
    import urllib.request

    config, ports = write_config(tmp_path, media,
                                 changes={"serving": {"tagger": {"host": "[::1]"}}})  # fmt: skip
    server = _serve(config, "tagger", tmp_path / "serve.log")
    try:
        wait_serving(f"[::1]:{ports['tagger']}", seconds=60)
        with grpc.insecure_channel(f"[::1]:{ports['tagger']}") as channel:
            tagger_pb2_grpc.TaggerStub(channel).Describe(tagger_pb2.TaggerDescribeRequest(),
                                                         timeout=30)  # fmt: skip
        url = f"http://[::1]:{ports['tagger_metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and b"bgm_" in answer.read()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()[-2000:]


def test_the_metrics_endpoint_drops_scrapes_that_never_end_and_caps_them():
    """prometheus_client's server had held a thread for every connection whose request never
    finished (a thousand held a thousand threads), and their closing at once rendered the
    metrics in each, holding the services' event loop (the gateway NOT_SERVING). A request
    must come within serving.metrics_timeout_s, and at most metrics_max_connections are
    served at once; a scrape is answered as before."""
    import socket
    import urllib.request

    from services.serving import serve_metrics

    serving = ServingConfig(metrics_timeout_s=0.5, metrics_max_connections=2)
    server = serve_metrics("127.0.0.1", 0, serving)
    port = server.server_address[1]
    try:
        start = time.monotonic()
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for sock in held:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as over:
            assert over.recv(100) == b""  # the third, closed as it came
        for sock in held:
            assert sock.recv(100) == b""  # closed at the timeout, not held
            sock.close()
        assert time.monotonic() - start < 5
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and b"# TYPE process_max_fds" in answer.read()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_one_client_cannot_take_every_worker(tmp_path: Path, media: Path, clip, trickle):
    running = start(tmp_path, media, sources={**SOURCES, "file_roots": [str(media)]},
                    max_requests_per_client=1)  # fmt: skip
    try:
        with grpc.insecure_channel(running.gateway) as channel:
            held = gateway_pb2_grpc.GatewayStub(channel).Score(_request(trickle), timeout=30)
            time.sleep(1.0)
            with pytest.raises(grpc.RpcError) as caught:
                score(running.gateway, _request(clip.path.as_uri()))
            code, details = caught.value.code(), caught.value.details()
            refusal = error_details(caught.value)
            held.cancel()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "per client is 1" in details
        assert refusal.reason == "CLIENT_BUSY" and refusal.retry_after_s == 1.0
    finally:
        assert stop(running) == 0


@pytest.mark.slow
def test_a_request_that_never_arrives_is_counted_and_cut_off(tmp_path: Path, media: Path):
    """A Score or a Generate whose message does not arrive counts, after half a second,
    against its caller's bytes in flight as the largest message (serving.peer.max_bytes:
    one too many is refused CALLER_BUSY), and ends after serving.max_arrival_s, what gRPC
    held of it let go. gRPC reads a single request whole before any handler runs: 16 Scores
    of 60 MB sent but for their last byte had held 900 MB at the gateway for as long as
    their caller liked, counted against no limit."""
    message = 1024 * 1024
    running = start(tmp_path, media, sources={**SOURCES, "file_roots": [str(media)]},
                    changes={"serving": {"max_arrival_s": 3.0, "max_message_bytes": message,
                                         "peer": {"max_bytes": 3 * message}}})  # fmt: skip
    stalled = threading.Event()
    nothing = functools.partial(_nothing_until, stalled)

    try:
        for address, method in ((running.gateway, "/bgm.v1.Gateway/Score"),
                                (running.generator, "/bgm.v1.Generator/Generate")):  # fmt: skip
            with grpc.insecure_channel(address) as channel:
                # The unary request sent as a stream that never sends its message.
                call = channel.stream_stream(method, request_serializer=lambda b: b,
                                             response_deserializer=lambda b: b)  # fmt: skip
                started = time.monotonic()
                held = [call(nothing(), timeout=60) for _ in range(3)]
                time.sleep(1.0)
                code, details = code_of(lambda call=call: list(call(nothing(), timeout=60)))
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (method, code, details)
                assert "serving.peer.max_bytes" in details, details
                for waiting in held:
                    code, details = code_of(lambda waiting=waiting: list(waiting))
                    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (method, code, details)
                    assert "did not arrive within 3 s (serving.max_arrival_s)" in details
                assert time.monotonic() - started < 3.0 + 5
        # Refused and cut off, the caller's next Score is served.
        clip = write_video(media / "arrival.mp4", [Shot(2.0, speed=0.5, hue=0.2)])
        assert score(running.gateway, _request(clip.path.as_uri()))[-1].HasField("result")
    finally:
        stalled.set()
        assert stop(running) == 0


@pytest.mark.slow
def test_a_score_caller_that_stops_reading_lets_its_request_go(tmp_path: Path, media: Path, clip):
    """A Score whose caller stops reading ends after serving.reader_stall_s: its folder is
    removed and its place among its client's requests is freed, so with one request a
    client, the client's next Score is admitted (it had been refused for as long as the
    first caller liked to leave its events unread)."""
    running = start(tmp_path, media, sources={**SOURCES, "file_roots": [str(media)]},
                    max_requests_per_client=1,
                    changes={"serving": {"reader_stall_s": 1.0}})  # fmt: skip
    try:
        with grpc.insecure_channel(running.gateway, options=STOPS_READING) as stopped:
            first = gateway_pb2_grpc.GatewayStub(stopped).Score(_request(clip.path.as_uri()),
                                                                timeout=60)  # fmt: skip
            next(first)
            refused, deadline = 0, time.monotonic() + 30
            while True:
                try:
                    events = score(running.gateway, _request(clip.path.as_uri()), timeout=60)
                    break
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    assert time.monotonic() < deadline, "the client's next Score was refused"
                    refused += 1
                    time.sleep(0.25)
            left = code_of(lambda: list(first))
        print(f"the client's next Score was refused {refused} times, then admitted")
        assert events[-1].WhichOneof("event") == "result"
        assert left[0] == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "the caller took no message for 1 s (serving.reader_stall_s)" in left[1]
        _until(lambda: _left_behind(running) == [], timeout_s=10)
    finally:
        assert stop(running) == 0


@pytest.mark.slow
def test_a_score_client_that_takes_its_files_too_slowly_lets_them_go(
    tmp_path: Path, media: Path, clip
):
    """A client that takes each chunk of its files within serving.reader_stall_s, but all of
    them more slowly than serving.delivery allows, has its Score ended and its request
    folder removed (it had held them for as long as it liked); one that reads promptly gets
    them all."""
    running = start(tmp_path, media, sources={**SOURCES, "file_roots": [str(media)]},
                    chunk_bytes=16 * 1024, changes={"serving": {"delivery": {
                        "grace_s": 1.0, "min_bytes_per_s": 1024**3}}})  # fmt: skip
    try:
        # A WAV of the clip: 47 chunks, more than the connection's window holds.
        request = _request(clip.path.as_uri())
        request.output.format = gateway_pb2.OUTPUT_FORMAT_WAV
        prompt = score(running.gateway, request, timeout=60)
        files = [e.file for e in prompt if e.WhichOneof("event") == "file"]
        assert len(files) > 20 and files[-1].last and prompt[-1].WhichOneof("event") == "result"

        def slowly() -> None:
            with grpc.insecure_channel(running.gateway, options=STOPS_READING) as channel:
                stub = gateway_pb2_grpc.GatewayStub(channel)
                for response in stub.Score(request, timeout=60):
                    if response.event.WhichOneof("event") == "file":
                        time.sleep(0.6)

        code, message = code_of(slowly)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, message
        assert "did not take the" in message and "(serving.delivery)" in message
        _until(lambda: _left_behind(running) == [], timeout_s=10)
    finally:
        assert stop(running) == 0


# ---- turns -------------------------------------------------------------------------------


def test_callers_take_turns_not_arrival_order():
    """One worker. A gateway's client sends four requests, then another of its clients one,
    then a caller of its own two: each waits behind its own, not behind all of the first's
    (a flood of 30 briefs had delayed another caller's Generate from 0.2 s to 45 s)."""

    async def scenario() -> list[str]:
        turns = FairTurns(1)
        served: list[str] = []
        first_may_end = asyncio.Event()

        async def request(peer: str, caller: str, name: str) -> None:
            async with turns.turn(peer, caller):
                served.append(name)
                if name == "a1":
                    await first_may_end.wait()

        sent = []
        for peer, caller, name in [
            *[("gateway", "client-a", f"a{i}") for i in range(1, 5)],
            ("gateway", "client-b", "b1"),
            ("direct", "", "d1"),
            ("direct", "", "d2"),
        ]:
            sent.append(asyncio.create_task(request(peer, caller, name)))
            await asyncio.sleep(0)
        first_may_end.set()
        await asyncio.gather(*sent)
        return served

    assert asyncio.run(scenario()) == ["a1", "a2", "d1", "b1", "d2", "a3", "a4"]


def test_a_request_that_leaves_gives_up_its_turn():
    """A request cancelled while it waits leaves the queue; one cancelled as its turn came
    hands the turn on: the worker is never lost."""

    async def scenario() -> list[str]:
        turns = FairTurns(1)
        served: list[str] = []
        holder_may_end = asyncio.Event()
        waiting: dict[str, asyncio.Task[None]] = {}

        async def request(name: str) -> None:
            async with turns.turn("peer", name):
                served.append(name)
                if name == "holder":
                    await holder_may_end.wait()
            if name == "holder":
                waiting["granted"].cancel()  # its turn has just come; it has not started

        tasks = [asyncio.create_task(request("holder"))]
        for name in ("granted", "left", "last"):
            await asyncio.sleep(0)
            waiting[name] = asyncio.create_task(request(name))
            tasks.append(waiting[name])
        await asyncio.sleep(0)
        waiting["left"].cancel()
        holder_may_end.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await asyncio.wait_for(request("after"), 5)
        return served

    assert asyncio.run(scenario()) == ["holder", "last", "after"]


def test_a_wait_cancelled_as_a_turn_ends_loses_no_worker():
    """A waiting request cancelled in the same step of the loop as the running one ends
    (requests sharing a deadline): the ending one ends cleanly, the cancelled one is
    cancelled, and the worker serves the next. Its cancelled wait had been given the turn:
    the worker was lost for good (every later request timed out) and the ending request
    failed as INTERNAL."""

    async def scenario() -> list[str]:
        turns = FairTurns(1)
        ended: list[str] = []
        holder_may_end = asyncio.Event()

        async def request(name: str) -> None:
            try:
                async with turns.turn("peer", name):
                    if name == "holder":
                        await holder_may_end.wait()
                ended.append(f"{name} done")
            except asyncio.CancelledError:
                ended.append(f"{name} cancelled")
                raise

        holder = asyncio.create_task(request("holder"))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(request("waiter"))
        await asyncio.sleep(0)
        holder_may_end.set()  # the holder's wake-up is queued first...
        waiter.cancel()  # ...and the waiter's cancel lands before either runs
        await asyncio.gather(holder, waiter, return_exceptions=True)
        await asyncio.wait_for(request("next"), 5)
        return ended

    assert asyncio.run(scenario()) == ["holder done", "waiter cancelled", "next done"]


def test_turns_that_weigh_hold_at_most_the_capacity_and_never_delay_a_heavy_one():
    """Turns weighing bytes of memory, 10 in all. Beside a 6, a second 6 waits for room (with
    a count of turns both would have run, 12 held); another caller's 3 goes past it, within
    the 4 it leaves (it had waited minutes behind a heavy request), and the 6 runs beside it
    once the first ends. A 15, more than the whole, waits for every turn to end and runs
    alone, none going past. Beside a 6, an 8 waits; a 2 goes past it, a 1 then would delay
    it and waits; the 8 runs as the 6 ends. And when one waiting for room leaves, the one it
    held back runs."""

    async def scenario() -> tuple[list[str], list[int]]:
        turns = FairTurns(10)
        served: list[str] = []
        peaks: list[int] = []
        may_end: dict[str, asyncio.Event] = {}
        tasks: dict[str, asyncio.Task[None]] = {}

        async def request(name: str, weight: int) -> None:
            may_end[name] = asyncio.Event()
            async with turns.turn(name, "", weight):
                served.append(name)
                peaks.append(turns.held)
                await may_end[name].wait()

        async def send(name: str, weight: int) -> None:
            tasks[name] = asyncio.create_task(request(name, weight))
            await asyncio.sleep(0.01)

        async def end(*names: str) -> None:
            for name in names:
                may_end[name].set()
            await asyncio.gather(*(tasks[name] for name in names))
            await asyncio.sleep(0.01)

        await send("a", 6)
        await send("b", 6)
        await send("c", 3)
        assert served == ["a", "c"]
        await end("a")
        assert served == ["a", "c", "b"]
        await send("big", 15)
        await send("d", 1)
        assert served[-1] == "b"
        await end("b", "c")
        assert served[-1] == "big" and turns.held == 15
        await end("big")
        await end("d")
        await send("x", 6)
        await send("heavy", 8)
        await send("light", 2)
        await send("lighter", 1)
        assert served[-2:] == ["x", "light"] and turns.held == 8
        await end("x")
        assert served[-1] == "heavy" and turns.held == 10
        await end("light")
        assert served[-1] == "lighter"
        await end("heavy", "lighter")
        # One waiting for room leaves: the one it held back runs.
        await send("y", 6)
        await send("waits", 8)
        await send("behind", 3)
        assert served[-1] == "y"
        tasks["waits"].cancel()
        await asyncio.gather(tasks["waits"], return_exceptions=True)
        await asyncio.sleep(0.01)
        assert served[-1] == "behind" and turns.held == 9
        await end("y", "behind")
        assert turns.held == 0
        return served, peaks

    served, peaks = asyncio.run(scenario())
    assert served == ["a", "c", "b", "big", "d", "x", "light", "heavy", "lighter", "y", "behind"]
    assert peaks == [6, 9, 9, 15, 1, 6, 8, 10, 9, 6, 9]


def test_a_heavy_turn_stays_first_when_its_own_peers_caller_goes_past_it():
    """Capacity 10, a 5 held: a 6 from one peer waits for room, then another peer's 5, then a
    2 from the first peer's other caller, which goes past the 6 (within its room). When the
    5 ends, the 6 runs before the 5 that came after it. Serving the 2 had moved the first
    peer behind the other, so that peer's 5 took the turn ahead of the 6, and steady light
    traffic could keep the 6 waiting for ever (a review's reproducer: 2,000 steps)."""

    async def scenario() -> list[str]:
        turns = FairTurns(10)
        served: list[str] = []
        may_end: dict[str, asyncio.Event] = {}
        tasks: dict[str, asyncio.Task[None]] = {}

        async def request(name: str, peer: str, caller: str, weight: int) -> None:
            may_end[name] = asyncio.Event()
            async with turns.turn(peer, caller, weight):
                served.append(name)
                await may_end[name].wait()

        for name, peer, caller, weight in [
            ("holder", "p1", "", 5),
            ("heavy", "p2", "b", 6),
            ("later", "p3", "", 5),
            ("light", "p2", "c", 2),
        ]:
            tasks[name] = asyncio.create_task(request(name, peer, caller, weight))
            await asyncio.sleep(0.01)
        may_end["holder"].set()
        await asyncio.sleep(0.01)
        for event in may_end.values():
            event.set()
        await asyncio.sleep(0.01)
        for event in may_end.values():
            event.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 5)
        return served

    assert asyncio.run(scenario()) == ["holder", "light", "heavy", "later"]


def test_a_request_set_aside_and_cancelled_keeps_the_count_of_turns():
    """A long request steps aside for another caller, then is cancelled while it waits for
    its next turn: it stops (CancelledError in its worker), the other's turn goes on, and
    the one worker serves the next request."""
    from services.errors import CancelledError as Cancelled
    from services.serving import turn_keeper

    async def scenario() -> list[str]:
        turns = FairTurns(1)
        events: list[str] = []
        cancelled = threading.Event()
        other_may_end = asyncio.Event()

        def check() -> None:
            if cancelled.is_set():
                raise Cancelled("cancelled by the test")

        async def long(loop: asyncio.AbstractEventLoop) -> None:
            async with turns.turn("peer-a") as turn:
                keep = turn_keeper(turn, loop, 0.05, check)

                def work() -> None:
                    for _ in range(400):
                        time.sleep(0.01)
                        keep(0.0)

                try:
                    await asyncio.to_thread(work)
                except Cancelled:
                    events.append("long cancelled")

        async def other(name: str) -> None:
            async with turns.turn("peer-b", name):
                events.append(f"{name} has its turn")
                if name == "other":
                    await other_may_end.wait()

        running = asyncio.create_task(long(asyncio.get_running_loop()))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(other("other"))
        await asyncio.sleep(0.3)  # the long one has stepped aside
        cancelled.set()
        await running
        other_may_end.set()
        await waiting
        await asyncio.wait_for(other("next"), 5)
        return events

    assert asyncio.run(scenario()) == ["other has its turn", "long cancelled",
                                       "next has its turn"]  # fmt: skip


@contextlib.contextmanager
def _hosted(
    binding: ServiceBinding | Callable[[], ServiceBinding],
    address: str = "127.0.0.1:0",
    serving: ServingConfig | None = None,
) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """`binding` served in this process (its own event loop, in a thread) at `address` (any
    free port by default) with `serving`'s settings (the defaults by default): the address it
    listens on and the loop. A binding that opens channels (the gateway's) must be made in
    that loop: pass what makes it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def serve() -> HostedServer:
        made = binding if isinstance(binding, ServiceBinding) else binding()
        server = HostedServer([made], address, serving or ServingConfig())
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(serve(), loop).result(30)
    try:
        yield f"127.0.0.1:{server.port}", loop
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class _OneTrackBackend:
    def describe(self) -> GeneratorInfo:
        return GeneratorInfo(name="test", version="0", max_duration_s=3600.0,
                             sample_rates=(48000,), outputs=("audio",), genres=("pop",),
                             instruments=("piano",))  # fmt: skip

    def tracks(self, brief: object) -> int:
        return 1


def _brief_of(duration_s: float, key: str = "C major") -> common_pb2.MusicBrief:
    """A brief _OneTrackBackend can honour (with another `key`, perhaps not)."""
    tags = common_pb2.MusicTags(genres=["pop"], bpm=120, bpm_min=100, bpm_max=140, key=key)
    return common_pb2.MusicBrief(duration_s=duration_s, sample_rate=48000, tags=tags,
                                 structure="free")  # fmt: skip


def test_a_caller_who_comes_after_a_long_request_s_slice_waits_only_for_its_next_report():
    """One worker, a 1 s slice: a request that has worked alone past its slice gives way at
    its next report (10 ms apart) to another caller who comes then. It had counted its turn
    as taken anew at the slice's end when nobody waited, so a caller coming just after waited
    out a whole new slice (0.9 s here; up to 2 s for a generator turn)."""
    from services.serving import turn_keeper

    async def scenario() -> float:
        turns = FairTurns(1)
        loop = asyncio.get_running_loop()

        async def long() -> None:
            async with turns.turn("peer-a") as turn:
                keep = turn_keeper(turn, loop, 1.0, lambda: None)

                def work() -> None:
                    for _ in range(300):
                        time.sleep(0.01)
                        keep(0.0)

                await asyncio.to_thread(work)

        running = asyncio.create_task(long())
        await asyncio.sleep(1.1)
        asked = time.monotonic()
        async with turns.turn("peer-b"):
            waited = time.monotonic() - asked
        await running
        return waited

    assert asyncio.run(scenario()) < 0.3


def test_a_request_set_aside_resumes_before_its_callers_next():
    """One worker: a long request steps aside for another caller's, then resumes before its
    own caller's next request starts, so it can step aside again for a third caller. Set
    aside behind its caller's other requests, it had kept every later caller waiting for
    them all (a short analysis waited 10 s behind eight long ones)."""
    from services.serving import turn_keeper

    async def scenario() -> list[str]:
        turns = FairTurns(1)
        events: list[str] = []
        loop = asyncio.get_running_loop()

        async def request(name: str, caller: str, steps: int) -> None:
            async with turns.turn("peer", caller) as turn:
                events.append(f"{name} starts")
                keep = turn_keeper(turn, loop, 0.05, lambda: None)

                def work() -> None:
                    for _ in range(steps):
                        time.sleep(0.01)
                        keep(0.0)

                await asyncio.to_thread(work)
                events.append(f"{name} ends")

        first = asyncio.create_task(request("a1", "a", 60))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(request("a2", "a", 1))
        await asyncio.sleep(0.1)
        await request("b", "b", 1)
        await asyncio.sleep(0.1)
        await asyncio.gather(first, second, request("c", "c", 1))
        return events

    events = asyncio.run(scenario())
    assert events.index("b ends") < events.index("a1 ends"), events
    assert events.index("c ends") < events.index("a1 ends") < events.index("a2 starts"), events


@pytest.mark.parametrize("long_jobs", [3, 4])
def test_a_short_request_gets_a_turn_while_long_ones_take_turns(long_jobs: int):
    """Two workers, long requests from two callers (three, or two each), then a third
    caller's short one: it has a turn within a slice or two. With one request set aside at
    a time, once capacity + 1 long ones had started no other could step aside, and a short
    request waited for a whole long one to end (32.7 s against 3 s alone, through the
    gateway; 133 s against 11 s at the generator)."""
    from concurrent.futures import ThreadPoolExecutor

    from services.serving import SET_ASIDE_PER_WORKER, turn_keeper

    async def scenario() -> float:
        turns = FairTurns(2, max_set_aside=2 * SET_ASIDE_PER_WORKER)
        loop = asyncio.get_running_loop()
        workers = ThreadPoolExecutor(2 + turns.max_set_aside)
        stop = threading.Event()

        async def request(caller: str, steps: int) -> None:
            async with turns.turn("peer", caller) as turn:
                keep = turn_keeper(turn, loop, 0.05, lambda: None)

                def work() -> None:
                    for _ in range(steps):
                        if stop.is_set():
                            return
                        time.sleep(0.01)
                        keep(0.0)

                await loop.run_in_executor(workers, work)

        callers = ["a", "b", "a", "b"][:long_jobs]
        long = [asyncio.create_task(request(caller, 1000)) for caller in callers]
        await asyncio.sleep(0.5)  # they have started, and taken turns
        asked = time.monotonic()
        await asyncio.wait_for(request("c", 1), 30)
        waited = time.monotonic() - asked
        stop.set()
        await asyncio.gather(*long)
        workers.shutdown()
        return waited

    waited = asyncio.run(scenario())
    print(f"{long_jobs} long requests: the short one waited {waited:.2f} s")
    assert waited < 1.0, waited


class _SteppingBackend(_OneTrackBackend):
    """Works 0.05 s a step, a step per 4 s of music, reporting after each."""

    def generate_batch(self, jobs: list) -> list:
        for job in jobs:
            for step in range(max(1, round(job.brief.duration_s / 4))):
                time.sleep(0.05)
                job.progress(step / 100)
        return [InvalidInputError("composed by the test") for _ in jobs]


@pytest.mark.slow
def test_a_long_request_steps_aside_for_another_caller():
    """The generator, one worker: a 400 s piece for one caller (5 s of work), then a short
    one for another. The short one is done long before the long one, which steps aside
    after its slice of the worker (it had waited behind the whole piece: 86 s behind two
    pieces at the limit, in a resource review)."""
    backend: Any = _SteppingBackend()
    servicer = GeneratorServicer(backend, RequestLimits(), 1, ServiceGate(), turn_slice_s=0.3)
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip

    def ask(channel: grpc.Channel, duration_s: float, caller: str) -> None:
        request = generator_pb2.GenerateRequest(brief=_brief_of(duration_s))
        call = generator_pb2_grpc.GeneratorStub(channel).Generate(
            request, timeout=60, metadata=((ON_BEHALF_OF, caller),)
        )
        code_of(lambda: list(call))

    assert _short_ends_before_long(binding, ask, 400.0, 4.0) > 2.0


def _short_ends_before_long(
    binding: ServiceBinding,
    ask: Callable[[grpc.Channel, float, str], None],
    long_size: float,
    short_size: float,
) -> float:
    """`binding` hosted: seconds between another caller's short request (`ask`ed half a
    second after) ending and the long one's ending."""
    ended: dict[str, float] = {}
    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:

        def send(size: float, caller: str) -> None:
            ask(channel, size, caller)
            ended[caller] = time.monotonic()

        long = threading.Thread(target=send, args=(long_size, "long"))
        long.start()
        time.sleep(0.5)
        send(short_size, "short")
        long.join(60)
    return ended["long"] - ended["short"]


@pytest.mark.slow
def test_the_generator_serves_the_gateways_clients_in_turn():
    """The generator, one worker: four briefs for one of the gateway's clients, then one for
    another. The other's is composed second or third, not after the four (ON_BEHALF_OF,
    which the gateway sends, names the client)."""
    arrived: list[float] = []
    composed: list[float] = []
    first_may_end = threading.Event()

    async def compose(jobs: list) -> list:
        composed.append(jobs[0].brief.duration_s)
        if len(composed) == 1:
            await asyncio.to_thread(first_may_end.wait, 30)
        return [InvalidInputError("composed by the test") for _ in jobs]

    class Recording(GeneratorServicer):
        async def Generate(self, request, context):
            arrived.append(request.brief.duration_s)
            async for message in super().Generate(request, context):
                yield message

    servicer = Recording(_OneTrackBackend(), RequestLimits(), 1, ServiceGate(), compose)  # type: ignore[arg-type]
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    sent = [(1.0, "client-a"), (1.1, "client-a"), (1.2, "client-a"), (1.3, "client-a"),
            (2.0, "client-b")]  # fmt: skip
    codes: list[grpc.StatusCode] = []
    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)

        def send(duration_s: float, caller: str) -> None:
            request = generator_pb2.GenerateRequest(brief=_brief_of(duration_s))
            call = stub.Generate(request, timeout=60, metadata=((ON_BEHALF_OF, caller),))
            codes.append(code_of(lambda: list(call))[0])

        senders = []
        for duration_s, caller in sent:
            senders.append(threading.Thread(target=send, args=(duration_s, caller)))
            senders[-1].start()
            _until(lambda: len(arrived) == len(senders))
        time.sleep(0.3)  # the last has reached its turn's queue
        first_may_end.set()
        for sender in senders:
            sender.join(60)
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 5
    assert composed[:2] == [1.0, 1.1] and composed.index(2.0) == 2, composed


@pytest.mark.slow
def test_the_generator_holds_no_more_audio_at_once_than_its_budget():
    """The generator, two workers, and an audio budget that one request's music (2 s, 48 kHz)
    fills: two requests compose one after the other, not side by side (two at the request
    limit had held 2 x 2.8 GB at once, and the gateway as much again)."""
    composing: list[int] = []
    running = [0]

    async def compose(jobs: list) -> list:
        running[0] += 1
        composing.append(running[0])
        await asyncio.sleep(0.5)
        running[0] -= 1
        return [InvalidInputError("composed by the test") for _ in jobs]

    one_piece = 2 * 48000 * 2 * 4
    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 2, ServiceGate(),  # type: ignore[arg-type]
                                 compose, audio_budget_bytes=one_piece)  # fmt: skip
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    codes: list[grpc.StatusCode] = []
    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)

        def send(caller: str) -> None:
            request = generator_pb2.GenerateRequest(brief=_brief_of(2.0))
            call = stub.Generate(request, timeout=60, metadata=((ON_BEHALF_OF, caller),))
            codes.append(code_of(lambda: list(call))[0])

        senders = [threading.Thread(target=send, args=(caller,)) for caller in ("a", "b")]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert composing == [1, 1]


# A client that reads nothing more: its HTTP/2 window (1 KB) fills, and the server's next
# write waits for it.
STOPS_READING = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0),
                 ("grpc.use_local_subchannel_pool", 1)]  # fmt: skip


def _composing_silence(
    seconds: float, rate: int, reports: int = 0
) -> Callable[[list], Awaitable[list]]:
    """A generator's compose step that makes `seconds` of silence for each job, after
    `reports` progress reports."""
    from services.domain import CutAlignment, GeneratedMusic, MusicPlan

    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    samples = round(seconds * rate)

    async def compose(jobs: list) -> list:
        for step in range(reports):  # rising fractions, each a progress message
            for job in jobs:
                job.progress((step + 1) / (reports + 1))
            await asyncio.sleep(0)
        return [GeneratedMusic(np.zeros((samples, 2), np.float32), rate, {}, b"", plan)
                for _ in jobs]  # fmt: skip

    return compose


@contextlib.contextmanager
def _a_caller_who_stops_reading_and_another(
    compose: Callable[[list], Awaitable[list]], workers: int, budget_bytes: int, stall_s: float
) -> Iterator[tuple[Any, Any]]:
    """A generator composing with `compose` on `workers`, its audio budget `budget_bytes`,
    hosted with serving.reader_stall_s `stall_s`; a stub for a caller who stops reading
    (STOPS_READING) and one for another caller, on a connection of its own."""
    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), workers, ServiceGate(),  # type: ignore[arg-type]
                                 compose, audio_budget_bytes=budget_bytes)  # fmt: skip
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    with (
        _hosted(binding, serving=ServingConfig(reader_stall_s=stall_s)) as (address, _),
        grpc.insecure_channel(address, options=STOPS_READING) as stopped,
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as other,
    ):
        yield generator_pb2_grpc.GeneratorStub(stopped), generator_pb2_grpc.GeneratorStub(other)


@pytest.mark.slow
def test_a_generate_caller_that_stops_reading_lets_the_music_go():
    """A Generate whose caller stops reading ends after serving.reader_stall_s, and its share
    of the audio budget goes with it: another caller's Generate, waiting for that share, gets
    its music (it had waited for as long as the first caller liked to leave its music unread).
    The first caller, reading again, gets the status that says why."""
    rate = 48000
    request = generator_pb2.GenerateRequest(brief=_brief_of(2.0))
    with _a_caller_who_stops_reading_and_another(
        _composing_silence(2.0, rate), 2, audio_bytes(2.0, rate), stall_s=1.0
    ) as (stopped, other):
        first = stopped.Generate(request, timeout=60)
        assert next(first).HasField("plan")  # the music is next, and the share is held
        started = time.monotonic()
        second = list(other.Generate(request, timeout=20))
        waited = time.monotonic() - started
        left = code_of(lambda: list(first))
    print(f"the other caller waited {waited:.2f} s for the share")
    assert sum(len(m.audio.pcm_f32le) for m in second) == 2 * rate * 2 * 4
    assert left[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the caller took no message for 1 s (serving.reader_stall_s)" in left[1]


@pytest.mark.slow
def test_a_generate_caller_that_stops_reading_its_progress_holds_no_turn():
    """A Generate whose caller stops reading while it is composed: its progress messages had
    been written while the request held its turn, so once the caller's window was full the
    turn was held, nothing composing, until serving.reader_stall_s ended the stream (two
    such calls kept every other caller's Generate waiting 30 s). The turn goes when the work
    is done; only the music's share waits for the caller."""
    rate = 48000
    request = generator_pb2.GenerateRequest(brief=_brief_of(1.0))
    with _a_caller_who_stops_reading_and_another(
        _composing_silence(1.0, rate, reports=3000), 1, 10 * audio_bytes(1.0, rate), stall_s=8.0
    ) as (stopped, other):
        first = stopped.Generate(request, timeout=60)
        assert next(first).HasField("progress")  # and then it reads no more
        time.sleep(0.5)
        started = time.monotonic()
        second = list(other.Generate(request, timeout=30))
        waited = time.monotonic() - started
        first.cancel()
    print(f"the other caller's Generate took {waited:.2f} s")
    assert any(m.HasField("audio") for m in second)
    assert waited < 4.0, waited


@pytest.mark.slow
def test_a_generate_caller_that_takes_its_music_too_slowly_lets_the_share_go():
    """A caller that takes each message of its music within serving.reader_stall_s, but all
    of it more slowly than serving.delivery allows, has its Generate ended, and its share of
    the audio budget goes with it: another caller's Generate, waiting for that share, gets its
    music (it had waited for as long as the first caller liked to take its music)."""
    rate = 48000
    quick = DeliveryLimit(grace_s=1.0, min_bytes_per_s=1024**3)
    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 2, ServiceGate(),  # type: ignore[arg-type]
                                 _composing_silence(20.0, rate),
                                 audio_budget_bytes=audio_bytes(20.0, rate),
                                 delivery=quick)  # fmt: skip
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    request = generator_pb2.GenerateRequest(brief=_brief_of(20.0))
    taken: list[float] = []

    def slowly(stub: generator_pb2_grpc.GeneratorStub) -> None:
        for message in stub.Generate(request, timeout=60):
            if message.HasField("audio"):
                taken.append(time.monotonic())
                time.sleep(0.5)

    with (
        _hosted(binding) as (address, _),
        grpc.insecure_channel(address, options=STOPS_READING) as slow,
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as other,
    ):
        left: list[tuple[grpc.StatusCode, str]] = []
        stub = generator_pb2_grpc.GeneratorStub(slow)
        reader = threading.Thread(target=lambda: left.append(code_of(lambda: slowly(stub))))
        reader.start()
        _until(lambda: len(taken) > 0)
        started = time.monotonic()
        second = list(generator_pb2_grpc.GeneratorStub(other).Generate(request, timeout=30))
        waited = time.monotonic() - started
        reader.join(30)
    print(f"the other caller waited {waited:.2f} s for the share; the slow one took "
          f"{len(taken)} of 20 chunks")  # fmt: skip
    assert sum(len(m.audio.pcm_f32le) for m in second) == 20 * rate * 2 * 4
    assert left, "the slow caller was let take all its music"
    assert left[0][0] == grpc.StatusCode.DEADLINE_EXCEEDED, left
    assert "did not take the" in left[0][1] and "(serving.delivery)" in left[0][1]
    assert len(taken) < 10


def _silence_binding(seconds: float) -> ServiceBinding:
    """A generator service of one worker that makes `seconds` of silence for each job."""
    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 1, ServiceGate(),  # type: ignore[arg-type]
                                 _composing_silence(seconds, 48000))  # fmt: skip
    return ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                          servicer)  # fmt: skip


def _generates_counted(code: str) -> float:
    """The Generate requests this process's metrics count with status `code`."""
    from prometheus_client import REGISTRY

    labels = {"service": SERVICE, "method": "Generate", "tenant": "", "code": code}
    return REGISTRY.get_sample_value("bgm_requests_total", labels) or 0.0


@pytest.mark.slow
def test_a_stream_whose_caller_cancels_mid_delivery_is_counted_cancelled():
    """A caller that cancels while its music waits for it to read: the request is counted
    and logged CANCELLED (it had been counted OK, as if the music had been delivered)."""
    binding, counted = _silence_binding(20.0), _generates_counted
    before = counted("CANCELLED"), counted("OK")
    with (
        _hosted(binding) as (address, _),
        grpc.insecure_channel(address, options=STOPS_READING) as channel,
    ):
        call = generator_pb2_grpc.GeneratorStub(channel).Generate(
            generator_pb2.GenerateRequest(brief=_brief_of(20.0)), timeout=60
        )
        assert next(call).HasField("plan")  # the music waits for the caller
        call.cancel()
        _until(lambda: counted("CANCELLED") == before[0] + 1, timeout_s=10)
    assert counted("OK") == before[1]


@pytest.mark.slow
def test_a_stalled_stream_is_counted_when_it_stalls_and_its_caller_leaving_logs_no_error(
    caplog: pytest.LogCaptureFixture,
):
    """A Generate whose caller stops reading is counted DEADLINE_EXCEEDED once
    serving.reader_stall_s has passed, while the caller still neither reads nor leaves (it
    had stayed in flight until the caller did one or the other: the status waits behind the
    unread music); the caller then cancelling is no error in the log (gRPC had logged the
    status it could not send with three chained tracebacks)."""
    binding, counted = _silence_binding(20.0), _generates_counted
    before = counted("DEADLINE_EXCEEDED")
    with (
        caplog.at_level(logging.WARNING),
        _hosted(binding, serving=ServingConfig(reader_stall_s=1.0)) as (address, _),
        grpc.insecure_channel(address, options=STOPS_READING) as channel,
    ):
        call = generator_pb2_grpc.GeneratorStub(channel).Generate(
            generator_pb2.GenerateRequest(brief=_brief_of(20.0)), timeout=60
        )
        assert next(call).HasField("plan")  # the music waits for the caller
        _until(lambda: counted("DEADLINE_EXCEEDED") == before + 1, timeout_s=10)
        call.cancel()
        time.sleep(1.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.slow
def test_a_refused_request_is_let_go_without_the_collector():
    """A refused request is freed as its call ends. gRPC keeps the error a call ends with, and
    its traceback held the handler's frames and so the request, in a cycle only Python's
    collector frees, which runs by counts of objects, not bytes: eight 60 MB inline videos
    refused at once had left the gateway 500 MB larger each time, 3.7 GB after six."""
    binding = _silence_binding(1.0)
    sent = generator_pb2.GenerateRequest(brief=_brief_of(1.0, key="H major"))

    async def requests_alive() -> int:
        """The server's copies of the request."""
        return sum(isinstance(o, generator_pb2.GenerateRequest) and o == sent and o is not sent
                   for o in gc.get_objects())  # fmt: skip

    with _hosted(binding) as (address, loop), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        gc.collect()
        gc.disable()
        try:
            code, _ = code_of(lambda: list(stub.Generate(sent, timeout=20)))
            time.sleep(0.3)
            alive = asyncio.run_coroutine_threadsafe(requests_alive(), loop).result(10)
        finally:
            gc.enable()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert alive == 0


@pytest.mark.slow
def test_a_generate_whose_caller_left_leaves_no_task_waiting():
    """A Generate past its deadline while the piece is composed: the wait for its progress
    goes with it ("Task was destroyed but it is pending!" had been logged for each)."""
    may_end = threading.Event()

    async def compose(jobs: list) -> list:
        await asyncio.to_thread(may_end.wait, 30)
        return [InvalidInputError("composed by the test") for _ in jobs]

    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 1, ServiceGate(), compose)  # type: ignore[arg-type]
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip

    def waiting_for_news(loop: asyncio.AbstractEventLoop) -> int:
        async def count() -> int:
            tasks = asyncio.all_tasks()
            return sum("Queue.get" in repr(task.get_coro()) for task in tasks)

        return asyncio.run_coroutine_threadsafe(count(), loop).result(10)

    with _hosted(binding) as (address, loop), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        request = generator_pb2.GenerateRequest(brief=_brief_of(1.0))
        code, _ = code_of(lambda: list(stub.Generate(request, timeout=0.5)))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.3)
        left = waiting_for_news(loop)
        may_end.set()
    assert left == 0


def _composing_until() -> tuple[
    threading.Event, threading.Event, Callable[[list], Awaitable[list]]
]:
    """A compose step that holds its worker until `may_end` is set (`composing` says it
    began), then ends each job refused: (may_end, composing, compose)."""
    may_end = threading.Event()
    composing = threading.Event()

    async def compose(jobs: list) -> list:
        composing.set()
        await asyncio.to_thread(may_end.wait, 30)
        return [InvalidInputError("composed by the test") for _ in jobs]

    return may_end, composing, compose


@pytest.mark.slow
def test_a_brief_the_generator_cannot_honour_is_refused_without_waiting_for_a_turn():
    """The generator, its one worker busy: a brief in a key that does not exist is refused
    at once, naming the field, while the worker is still busy (it had waited its turn: 30 s
    behind two long pieces)."""
    may_end, composing, compose = _composing_until()

    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 1, ServiceGate(), compose)  # type: ignore[arg-type]
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)
        held = stub.Generate(generator_pb2.GenerateRequest(brief=_brief_of(60.0)), timeout=60)
        holder = threading.Thread(target=lambda: code_of(lambda: list(held)))
        holder.start()
        assert composing.wait(30)
        bad = generator_pb2.GenerateRequest(brief=_brief_of(1.0, key="H major"))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Generate(bad, timeout=20))
        still_busy = not may_end.is_set() and holder.is_alive()
        may_end.set()
        holder.join(30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and still_busy
    assert error_details(caught.value).fields == ["brief.tags.key"]


def _generates_in_flight() -> float:
    """The Generate requests this process's metrics count as being served."""
    from prometheus_client import REGISTRY

    labels = {"service": SERVICE, "method": "Generate"}
    return REGISTRY.get_sample_value("bgm_requests_in_flight", labels) or 0.0


def test_a_caller_s_requests_past_its_limit_are_refused_not_held():
    """The generator, its one worker busy: one caller's requests wait up to
    serving.peer.max_requests, and their bytes up to max_bytes; past either they are refused
    at once, where each had been held whole while it waited (a hundred 60 MB videos queued
    at the tagger had taken 12 GB, and the process with them)."""
    from services.config import PeerLimit

    may_end, composing, compose = _composing_until()

    small = generator_pb2.GenerateRequest(brief=_brief_of(1.0))
    big = generator_pb2.GenerateRequest(brief=_brief_of(1.0))
    big.brief.segments.add(start_s=0.0, end_s=1.0, caption="x" * 1500)
    # Room for one big request beside three small ones.
    limit = PeerLimit(max_requests=3, max_bytes=big.ByteSize() + 3 * small.ByteSize())
    servicer = GeneratorServicer(_OneTrackBackend(), RequestLimits(), 1, ServiceGate(),  # type: ignore[arg-type]
                                 compose, peer_limit=limit)  # fmt: skip
    binding = ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                             servicer)  # fmt: skip
    before = _generates_in_flight()
    held: list[threading.Thread] = []
    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorStub(channel)

        def hold(request: generator_pb2.GenerateRequest) -> None:
            call = stub.Generate(request, timeout=60)
            held.append(threading.Thread(target=lambda: code_of(lambda: list(call))))
            held[-1].start()
            _until(lambda: _generates_in_flight() - before == len(held))

        def refused(request: generator_pb2.GenerateRequest) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Generate(request, timeout=20))
            return caught.value

        hold(small)  # composing
        assert composing.wait(30)
        hold(big)  # waits for its turn
        too_large = refused(big)
        hold(small)  # the third: still within the bytes
        too_many = refused(small)
        still_busy = not may_end.is_set()
        may_end.set()
        for thread in held:
            thread.join(30)
    assert still_busy
    for refusal, says in ((too_large, "hold"), (too_many, "3 requests in flight")):
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.details()
        assert says in (refusal.details() or "") and "per caller" in (refusal.details() or "")
        assert error_details(refusal).reason == "CALLER_BUSY"


@pytest.mark.parametrize(
    ("change", "field"),
    [(lambda b: setattr(b, "duration_s", 0.0), "brief.duration_s"),
     (lambda b: setattr(b, "sample_rate", 1), "brief.sample_rate"),
     (lambda b: setattr(b.tags, "bpm", 400.0), "brief.tags.bpm"),
     (lambda b: setattr(b.tags, "bpm_min", 150.0), "brief.tags.bpm_min"),
     (lambda b: b.tags.ClearField("genres"), "brief.tags.genres"),
     (lambda b: b.tags.genres.append("rock"), "brief.tags.genres"),
     (lambda b: b.tags.instruments.append("kazoo"), "brief.tags.instruments"),
     (lambda b: setattr(b, "structure", "reference"), "brief.structure"),
     (lambda b: b.negative.append("zzz"), "brief.negative"),
     (lambda b: b.negative.append("pop"), "brief.negative"),
     # A user's mood naming a genre (a fuzz case): the composer's tempo had failed INTERNAL.
     (lambda b: b.tags.origins.add(kind=common_pb2.TAG_KIND_MOOD, tag="ambient",
                                   source=common_pb2.TAG_SOURCE_USER),
      "brief.tags.origins[0].tag")],
)  # fmt: skip
def test_a_brief_the_generator_refuses_names_its_field(change, field):
    """As the MusicBrief contract promises (these had named none; an unknown negative tag,
    or the brief's own genre negated, had been played as if not said)."""
    from services.contract import brief_from_proto
    from services.generator.backend import validate_brief

    message = _brief_of(4.0)
    change(message)
    with pytest.raises(InvalidInputError) as caught:
        validate_brief(brief_from_proto(message, stems=False), _OneTrackBackend().describe(),
                       load_vocabulary())  # fmt: skip
    assert caught.value.field == field


class _HeldTagger:
    """Analyses nothing: holds each analysis until released, then refuses it."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.may_end = threading.Event()

    def analyze(self, request: AnalysisRequest, progress: Callable[[float], None]) -> None:
        self.started.release()
        self.may_end.wait(30)
        raise InvalidInputError("analysed by the test")


class _SteppingTagger:
    """Analyses nothing: 0.05 s a step, as many steps as the upload's bytes, reporting after
    each, then refuses the video."""

    def analyze(self, request: AnalysisRequest, progress: Callable[[float], None]) -> None:
        steps = request.video_path.stat().st_size
        for step in range(steps):
            time.sleep(0.05)
            progress(step / steps)
        raise InvalidInputError("analysed by the test")


@pytest.mark.slow
def test_a_long_analysis_steps_aside_for_another_caller(tmp_path: Path):
    """The tagger, one worker: a long analysis for one caller (5 s of work), then a short one
    for another. The short one ends long before the long one, which steps aside after its
    slice of the worker (turns had ended only when an analysis did)."""
    servicer = TaggerServicer(
        _SteppingTagger(),  # type: ignore[arg-type]
        SourcePolicy(), tmp_path, RequestLimits(), max_concurrent=1, max_duration_s=60.0,
        gate=ServiceGate(), turn_slice_s=0.3,
    )  # fmt: skip
    binding = ServiceBinding(TAGGER_SERVICE, tagger_pb2_grpc.add_TaggerServicer_to_server,
                             servicer)  # fmt: skip

    def ask(channel: grpc.Channel, steps: float, caller: str) -> None:
        video = common_pb2.VideoSource(data=b"v" * int(steps), file_name="clip.mp4")
        stub = tagger_pb2_grpc.TaggerStub(channel)
        code_of(lambda: stub.Analyze(tagger_pb2.AnalyzeRequest(video=video), timeout=60,
                                     metadata=((ON_BEHALF_OF, caller),)))  # fmt: skip

    assert _short_ends_before_long(binding, ask, 100, 2) > 2.0


@pytest.mark.slow
def test_an_upload_waiting_for_its_turn_is_not_written_to_scratch(tmp_path: Path):
    """The tagger, one worker: a second inline upload waits for its turn in memory, not on
    the scratch disk (30 uploads of 60 MB waiting had all been written at once)."""
    backend = _HeldTagger()
    servicer = TaggerServicer(
        backend,  # type: ignore[arg-type]
        SourcePolicy(), tmp_path, RequestLimits(), max_concurrent=1, max_duration_s=60.0,
        gate=ServiceGate(),
    )  # fmt: skip
    binding = ServiceBinding(TAGGER_SERVICE, tagger_pb2_grpc.add_TaggerServicer_to_server,
                             servicer)  # fmt: skip
    upload = b"v" * 200_000
    request = tagger_pb2.AnalyzeRequest(
        video=common_pb2.VideoSource(data=upload, file_name="clip.mp4")
    )
    codes: list[grpc.StatusCode] = []

    def written() -> int:
        return sum(
            1 for f in tmp_path.rglob("*") if f.is_file() and f.stat().st_size == len(upload)
        )

    with _hosted(binding) as (address, _), grpc.insecure_channel(address) as channel:
        stub = tagger_pb2_grpc.TaggerStub(channel)

        def send() -> None:
            codes.append(code_of(lambda: stub.Analyze(request, timeout=60))[0])

        first = threading.Thread(target=send)
        first.start()
        assert backend.started.acquire(timeout=30)
        second = threading.Thread(target=send)
        second.start()
        time.sleep(0.5)
        waiting_on_disk = written()
        backend.may_end.set()
        first.join(60)
        second.join(60)
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert waiting_on_disk == 1, "the waiting upload was written before its turn"
    assert written() == 0


# ---- recovery ----------------------------------------------------------------------------


def _serve(config: Path, which: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", "--config", str(config),
                             "serve", which], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)  # fmt: skip


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="bgm.v1.Gateway"), timeout=1
            )
        except grpc.RpcError:
            return -1
        return int(reply.status)


@pytest.mark.slow
@pytest.mark.alone
def test_the_gateway_scores_again_within_a_second_of_the_generator(tmp_path, media, clip):
    config, ports = write_config(tmp_path, media)
    address = {name: f"127.0.0.1:{ports[name]}" for name in ("tagger", "generator", "gateway")}
    log = tmp_path / "serve.log"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:  # from the first start: a server that never came up had left the others running
        for name in ("tagger", "generator"):
            processes[name] = _serve(config, name, log)
        for name in ("tagger", "generator"):
            wait_serving(address[name])
        processes["gateway"] = _serve(config, "gateway", log)
        wait_serving(address["gateway"])
        request = _request(clip.path.as_uri())
        score(address["gateway"], request)

        processes["generator"].kill()
        processes["generator"].wait()
        code, _ = code_of(lambda: score(address["gateway"], request))
        assert code == grpc.StatusCode.UNAVAILABLE
        deadline = time.monotonic() + 5
        while _health(address["gateway"]) == health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the gateway's health ignores the generator"
            time.sleep(0.1)
        time.sleep(5.0)  # down a while: a default channel's backoff would have grown

        processes["generator"] = _serve(config, "generator", log)
        wait_serving(address["generator"], "bgm.v1.Generator")
        healthy = time.monotonic()
        while True:
            attempt = time.monotonic()
            try:
                score(address["gateway"], request)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                assert attempt - healthy < 10, "the gateway never scored again"
                time.sleep(0.05)
        print(f"the gateway scored again {attempt - healthy:.2f} s after the generator was "
              "healthy")  # fmt: skip
        assert attempt - healthy <= 1.0
        deadline = time.monotonic() + 3
        while _health(address["gateway"]) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the gateway's health did not come back"
            time.sleep(0.1)
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=60)


Fault = Callable[[generator_pb2.GenerateResponse], list[generator_pb2.GenerateResponse]]


def _progress_event(fraction: float) -> generator_pb2.GenerateResponse:
    return generator_pb2.GenerateResponse(
        every_candidate=True, progress=common_pb2.Progress(stage="composition", fraction=fraction)
    )


class _FaultyGenerator(GeneratorServicer):
    """A generator from another team: the composer's messages, each passed through `fault`
    (the messages sent in its place), `opening` sent before them, and its Describe answer
    passed through `description` (which changes it in place), after `delay_s`."""

    fault: Fault = staticmethod(lambda message: [message])
    opening: tuple[generator_pb2.GenerateResponse, ...] = ()
    # Seconds it waits before it answers.
    delay_s = 0.0
    # The status it ends each Generate with at once, if any.
    refusal: tuple[grpc.StatusCode, str] | None = None
    description: Callable[[generator_pb2.GeneratorDescribeResponse], None] = staticmethod(
        lambda reply: None
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Whom each Generate was for (ON_BEHALF_OF), in order.
        self.served_for: list[str] = []

    async def Describe(self, request, context):
        reply = await super().Describe(request, context)
        self.description(reply)
        return reply

    async def Generate(self, request, context):
        self.served_for.append(callers_of(context)[1])
        if self.refusal is not None:
            await context.abort(*self.refusal)
        await asyncio.sleep(self.delay_s)
        for message in self.opening:
            yield message
        async for message in super().Generate(request, context):
            for sent in self.fault(message):
                yield sent


class _FaultyTagger(TaggerServicer):
    """A tagger from another team: the vision tagger's answer, passed through `fault` (which
    changes it in place), after `delay_s`."""

    fault: Callable[[tagger_pb2.AnalyzeResponse], None] = staticmethod(lambda reply: None)
    delay_s = 0.0
    refusal: tuple[grpc.StatusCode, str] | None = None
    # Called just before the refusal (to change the world it refuses in).
    before_refusal: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Whom each Analyze was for (ON_BEHALF_OF), in order.
        self.served_for: list[str] = []

    async def Analyze(self, request, context):
        self.served_for.append(callers_of(context)[1])
        if self.refusal is not None:
            self.before_refusal()
            await context.abort(*self.refusal)
        await asyncio.sleep(self.delay_s)
        reply = await super().Analyze(request, context)
        self.fault(reply)
        return reply


@pytest.fixture(scope="module")
def faulty_config(tmp_path_factory, media) -> tuple[Path, dict[str, int]]:
    """The config of the `faulty` services, and their ports."""
    return write_config(tmp_path_factory.mktemp("faulty"), media)


@pytest.fixture(scope="module")
def faulty(faulty_config) -> Iterator[tuple[str, _FaultyTagger, _FaultyGenerator]]:
    """A _FaultyTagger and a _FaultyGenerator served in this process and a real gateway in
    front of them: the gateway's address, the tagger and the generator, whose faults a test
    sets."""
    with _faulty_services(*faulty_config) as services:
        yield services


@contextlib.contextmanager
def _faulty_services(
    config: Path, ports: dict[str, int], generator_class: type[_FaultyGenerator] = _FaultyGenerator
) -> Iterator[tuple[str, _FaultyTagger, _FaultyGenerator]]:
    folder = config.parent
    address = {name: f"127.0.0.1:{ports[name]}" for name in ("tagger", "generator", "gateway")}
    loaded = load_config(config)
    tagger = _FaultyTagger.from_config(loaded, create_tagger_backend(loaded.tagger))
    generator = generator_class.from_config(loaded, ComposerGenerator(loaded.generator.composer))
    bindings = {
        "tagger": ServiceBinding(TAGGER_SERVICE, tagger_pb2_grpc.add_TaggerServicer_to_server,
                                 tagger),
        "generator": ServiceBinding(SERVICE, generator_pb2_grpc.add_GeneratorServicer_to_server,
                                    generator),
    }  # fmt: skip
    with contextlib.ExitStack() as hosted:
        for name, binding in bindings.items():
            hosted.enter_context(_hosted(binding, address[name]))
        gateway = _serve(config, "gateway", folder / "serve.log")
        try:
            wait_serving(address["gateway"])
            yield address["gateway"], tagger, generator
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)


@pytest.mark.slow
def test_the_gateway_holds_no_more_audio_at_once_than_its_budget(tmp_path, media, clip):
    """A gateway whose audio budget is smaller than any request's music: two Scores sent at
    once are each generated, mastered and written alone (a request larger than the whole
    budget has its turn alone), and both succeed. Without the budget both were generated
    side by side: the gateway held their music together (two at the request limit, 9.9 GB
    in one process with the generator)."""
    config, ports = write_config(tmp_path, media, audio_budget_bytes=1)
    running, most = [0], [0]

    class Counting(_FaultyGenerator):
        async def Generate(self, request, context):
            running[0] += 1
            most[0] = max(most[0], running[0])
            try:
                await asyncio.sleep(1.0)
                async for message in super().Generate(request, context):
                    yield message
            finally:
                running[0] -= 1

    with _faulty_services(config, ports, Counting) as (gateway, _, _):
        results: list[str] = []

        def send() -> None:
            events = score(gateway, _request(clip.path.as_uri()))
            results.append(events[-1].WhichOneof("event"))

        senders = [threading.Thread(target=send) for _ in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
    assert results == ["result", "result"]
    assert most[0] == 1


@pytest.mark.slow
@pytest.mark.parametrize("room_for_one", ["audio budget", "slot"])
def test_a_client_that_stops_reading_keeps_no_room_from_others(tmp_path, media, clip,
                                                               room_for_one):  # fmt: skip
    """A gateway whose audio budget holds one Score of the clip, or that works on one Score
    at a time: a client reads its stream until the composition starts, then stops (its
    HTTP/2 window kept small, so the gateway cannot write ahead). Its music is still made
    and written, and its share and its slot let go: another client's Score is done in
    seconds. Both had been held across the stream's writes, for as long as the stalled
    client kept its connection: the other Score waited past its 30 s deadline (a review's
    reproducer)."""
    if room_for_one == "slot":
        one_at_a_time = {"serving": {"gateway": {"max_concurrent": 1}}}
        config, ports = write_config(tmp_path, media, changes=one_at_a_time)
    else:
        one_share = audio_bytes(clip.duration_s + 1.0, 48000)
        config, ports = write_config(tmp_path, media, audio_budget_bytes=one_share)
    metrics_url = f"http://127.0.0.1:{ports['gateway_metrics']}/metrics"
    with _faulty_services(config, ports) as (gateway, _, _):
        stalled = grpc.insecure_channel(gateway, options=[("grpc.http2.lookahead_bytes", 1),
                                                          ("grpc.http2.bdp_probe", 0)])  # fmt: skip
        try:
            call = gateway_pb2_grpc.GatewayStub(stalled).Score(_request(clip.path.as_uri()),
                                                               timeout=120)  # fmt: skip
            for response in call:
                if response.event.WhichOneof("event") == "progress" and (
                    response.event.progress.stage == "composition"
                ):
                    break  # and reads no more
            events = score(gateway, _request(clip.path.as_uri()), timeout=30)
            assert events[-1].WhichOneof("event") == "result"
            _until(lambda: metric(metrics_url, "bgm_audio_held_bytes") == 0)
            call.cancel()
        finally:
            stalled.close()


@pytest.mark.slow
def test_a_tenant_s_backlog_does_not_hold_the_gateway_s_slots_from_another(
    tmp_path, media, clip, monkeypatch
):
    """A gateway that works on one Score at a time, with auth on: one tenant sends three
    Scores at once, another tenant one just after. The tenants take turns: the second
    tenant's comes after the one running and the first tenant's next, not after the whole
    backlog, as when the slots were handed out in the order the requests came (30 Scores of
    one tenant had kept another's waiting 152 s)."""
    keys = {"acme": "acme-key", "globex": "globex-key"}
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump(
        [{"tenant": t, "sha256": hashlib.sha256(k.encode()).hexdigest()}
         for t, k in keys.items()]))  # fmt: skip
    monkeypatch.setenv("BGM_TEST_SERVICE_TOKEN", "gateway-only")
    changes: dict[str, dict[str, Any]] = {
        "auth": {"enabled": True, "api_keys_file": str(tmp_path / "keys.yaml"),
                 "service_token_env": "BGM_TEST_SERVICE_TOKEN"},
        "serving": {"gateway": {"max_concurrent": 1}},
    }  # fmt: skip
    config, ports = write_config(tmp_path, media, changes=changes)
    finished: list[str] = []

    def send(tenant: str) -> None:
        with grpc.insecure_channel(gateway) as channel:
            call = gateway_pb2_grpc.GatewayStub(channel).Score(
                _request(data=clip.path.read_bytes()), timeout=120,
                metadata=(("authorization", f"Bearer {keys[tenant]}"),))  # fmt: skip
            assert list(call)[-1].event.WhichOneof("event") == "result"
        finished.append(tenant)

    with _faulty_services(config, ports) as (gateway, tagger, _):
        # Each Score holds the slot for at least a second.
        tagger.delay_s = 1.0
        senders = [threading.Thread(target=send, args=("acme",)) for _ in range(3)]
        for sender in senders:
            sender.start()
        _until(lambda: len(tagger.served_for) == 1)
        time.sleep(0.5)  # the other two wait for the slot
        late = threading.Thread(target=send, args=("globex",))
        late.start()
        for sender in [*senders, late]:
            sender.join(120)
    assert finished == ["acme", "acme", "globex", "acme"]


@pytest.mark.slow
def test_the_wait_for_a_turn_is_measured(tmp_path, media, clip):
    """bgm_turn_wait_seconds: two Scores at once on a gateway of one slot, each holding it a
    second or more; the second's wait is measured (request latency had lumped the queue and
    the work together, and nothing showed an operator the queue)."""
    changes = {"serving": {"gateway": {"max_concurrent": 1}}}
    config, ports = write_config(tmp_path, media, changes=changes)
    with _faulty_services(config, ports) as (gateway, tagger, _):
        tagger.delay_s = 1.0
        senders = [threading.Thread(target=score, args=(gateway, _request(clip.path.as_uri())))
                   for _ in range(2)]  # fmt: skip
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
        url = f"http://127.0.0.1:{ports['gateway_metrics']}/metrics"
        gateway_s = '{service="bgm.v1.Gateway"}'
        count = metric(url, f"bgm_turn_wait_seconds_count{gateway_s}")
        waited = metric(url, f"bgm_turn_wait_seconds_sum{gateway_s}")
    assert count == 2 and waited >= 0.9, (count, waited)


@pytest.mark.slow
def test_a_score_with_no_news_sends_its_progress_again(tmp_path, media, clip):
    """A Score whose analysis takes a while (here 1.5 s) sends its last progress again every
    gateway.progress_every_s (0.3 s here; 15 s by default), so that a proxy or load balancer
    that ends quiet streams keeps it: it had sent nothing until the analysis came, for
    minutes with a long video. The fractions still rise."""
    config, ports = write_config(tmp_path, media, progress_every_s=0.3)
    with _faulty_services(config, ports) as (gateway, tagger, _):
        tagger.delay_s = 1.5
        events = score(gateway, _request(clip.path.as_uri()))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result"
    before_analysis = kinds[: kinds.index("analysis")]
    assert before_analysis.count("progress") >= 3 and set(before_analysis) == {"progress"}
    fractions = [e.progress.fraction for e in events if e.WhichOneof("event") == "progress"]
    assert fractions == sorted(fractions) and events[0].progress.stage == "analysis"


@pytest.mark.slow
def test_the_score_progress_rises_whatever_the_generator_sends(faulty, clip, monkeypatch):
    """The Score stream's fractions rise within 0..1 (the gateway's contract) behind a
    generator whose own step back, pass 1 and are not numbers."""
    gateway, _, generator = faulty
    erratic = tuple(_progress_event(fraction) for fraction in (0.5, 0.2, math.nan, 3.0))
    monkeypatch.setattr(generator, "opening", erratic)
    events = score(gateway, _request(clip.path.as_uri()))
    assert events[-1].WhichOneof("event") == "result"
    fractions = [e.progress.fraction for e in events if e.WhichOneof("event") == "progress"]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] <= fractions[-1] <= 1.0


@pytest.mark.slow
def test_the_gateway_names_its_client_to_the_tagger_and_the_generator(faulty, clip):
    """Both hear whom the gateway calls for (its client here: auth is off), so they take
    turns between the gateway's clients, not between its requests."""
    gateway, tagger, generator = faulty
    events = score(gateway, _request(clip.path.as_uri()))
    assert events[-1].WhichOneof("event") == "result"
    assert tagger.served_for[-1] == generator.served_for[-1] == "ipv4:127.0.0.1"


@pytest.mark.slow
@pytest.mark.parametrize("slow", ["tagger", "generator"])
def test_a_service_slower_than_the_gateway_allows_is_named_in_the_deadline(
    faulty, faulty_config, tmp_path, monkeypatch, clip, slow
):
    """A tagger or generator that outlasts the gateway's limit on it (analyze_timeout_s,
    generate_timeout_s): DEADLINE_EXCEEDED naming the service and the setting, where gRPC's
    bare "Deadline Exceeded" had read as if the caller's own deadline had passed."""
    _, tagger, generator = faulty
    monkeypatch.setattr({"tagger": tagger, "generator": generator}[slow], "delay_s", 3.0)
    config = yaml.safe_load(faulty_config[0].read_text())
    config["gateway"] |= {"analyze_timeout_s": 1.5, "generate_timeout_s": 1.5}
    port = free_port()
    config["serving"]["gateway"] = {"port": port, "metrics_port": free_port()}
    path = tmp_path / "bgm.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = _serve(path, "gateway", tmp_path / "serve.log")
    try:
        wait_serving(f"127.0.0.1:{port}")
        with pytest.raises(grpc.RpcError) as caught:
            score(f"127.0.0.1:{port}", _request(clip.path.as_uri()), timeout=60)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=60)
    setting = {"tagger": "analyze_timeout_s", "generator": "generate_timeout_s"}[slow]
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == (
        f"the {slow} took longer than this gateway allows it (gateway.{setting}: 1.5 s)"
    )
    assert error_details(caught.value).reason == "DOWNSTREAM_TOO_SLOW"


@pytest.mark.slow
def test_a_callers_own_file_removed_while_it_waited_is_not_found(faulty, clip, monkeypatch):
    """A video named by a file:// URI, which the tagger reads where it lies, removed before
    the tagger read it: the tagger's NOT_FOUND is the caller's (NOT_FOUND naming its file),
    not the servers' configuration (that is kept for a file the gateway still has)."""
    gateway, tagger, _ = faulty
    vanishing = clip.path.with_name("vanishing.mp4")
    vanishing.write_bytes(clip.path.read_bytes())
    missing = (grpc.StatusCode.NOT_FOUND, f"{vanishing.as_uri()} does not exist")
    monkeypatch.setattr(tagger, "refusal", missing)
    monkeypatch.setattr(tagger, "before_refusal", lambda: vanishing.unlink(missing_ok=True))
    code, details = code_of(lambda: score(gateway, _request(vanishing.as_uri())))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND,
                               "vanishing.mp4 was removed before it was analysed")  # fmt: skip


@pytest.mark.slow
def test_a_deadline_a_service_sends_before_the_gateways_limit_is_its_own(faulty, clip, monkeypatch):
    """A generator that ends a call at once with DEADLINE_EXCEEDED (its own wait on something
    ran out): its code and message reach the caller, which had been told that the generator
    took longer than gateway.generate_timeout_s (600 s) allows."""
    gateway, _, generator = faulty
    ran_out = (grpc.StatusCode.DEADLINE_EXCEEDED, "the model's warm-up ran out")
    monkeypatch.setattr(generator, "refusal", ran_out)
    assert code_of(lambda: score(gateway, _request(clip.path.as_uri()))) == ran_out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("refusal", "code", "says", "reason"),
    [((grpc.StatusCode.INVALID_ARGUMENT, "brief.segments: this generator wants at most 3"),
      grpc.StatusCode.INVALID_ARGUMENT,
      "the generator refused the brief made of this request: brief.segments: this generator",
      "GENERATOR_REFUSED_BRIEF"),
     ((grpc.StatusCode.RESOURCE_EXHAUSTED, "GPU busy"), grpc.StatusCode.RESOURCE_EXHAUSTED,
      "the generator is busy: GPU busy", "DOWNSTREAM_BUSY")],
)  # fmt: skip
def test_a_swapped_generator_s_refusal_says_whose_it_is(
    faulty, clip, monkeypatch, refusal, code, says, reason
):
    """Another team's generator refusing the brief (naming brief.segments, a field the
    caller never sent), or busy in its own words: the caller is told it is the generator's,
    with a reason (and for a busy one, when to try again); both had come through bare, as if
    the caller's field or quota."""
    gateway, _, generator = faulty
    monkeypatch.setattr(generator, "refusal", refusal)
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, _request(clip.path.as_uri()))
    assert caught.value.code() == code and (caught.value.details() or "").startswith(says)
    details = error_details(caught.value)
    assert details.reason == reason and details.fields == []
    assert (details.retry_after_s is not None) == (reason == "DOWNSTREAM_BUSY")


@pytest.mark.slow
def test_a_generator_s_refusal_of_the_caller_s_own_bytes_is_passed_on(faulty, clip, monkeypatch):
    """A generator that cannot decode the caller's reference audio (its own bytes, passed
    through unchanged): its code, message and reason reach the caller as it sent them, not as
    a refusal of the gateway's brief."""
    gateway, _, generator = faulty
    cannot = InvalidInputError("the reference file is not readable audio",
                               field="brief.reference_audio")  # fmt: skip
    details = ((STATUS_DETAILS_KEY, status_for(cannot).details),)
    monkeypatch.setattr(generator, "refusal", (grpc.StatusCode.INVALID_ARGUMENT,
                                               str(cannot), details))  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, _request(clip.path.as_uri()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the reference file is not readable audio"
    assert error_details(caught.value).reason == "INVALID_INPUT"


@pytest.mark.slow
def test_describes_at_once_make_one_call_to_the_generator(faulty, monkeypatch):
    """Gateway.Describe asks the generator at most once a second however many callers ask
    at once (each had been a call to the generator)."""
    from concurrent.futures import ThreadPoolExecutor

    gateway, _, generator = faulty
    asked = []
    monkeypatch.setattr(generator, "description", lambda reply: asked.append(1))
    with grpc.insecure_channel(gateway) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        stub.Describe(gateway_pb2.GatewayDescribeRequest(), timeout=30)  # connected
        time.sleep(1.1)  # what it asked before is old
        before = len(asked)
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda _: stub.Describe(
                gateway_pb2.GatewayDescribeRequest(), timeout=30), range(30)))  # fmt: skip
    assert all(a.generator == "composer" for a in answers)
    # One for the thirty, and perhaps the gateway's own check of its dependencies (once a
    # second) or a second Describe past the second.
    assert len(asked) - before <= 3, len(asked) - before


@pytest.mark.slow
@pytest.mark.parametrize("service", ["tagger", "generator"])
def test_a_service_that_cannot_find_what_the_gateway_hands_it_is_the_servers_fault(
    faulty, clip, monkeypatch, service
):
    """A tagger that cannot find the video the gateway staged for it (a staging folder not
    shared with it), or a generator that cannot find what it needs: FAILED_PRECONDITION for
    the servers' configuration, the service's message (a server path) in the gateway's log
    only. The caller had been told NOT_FOUND with the staging path, as if its video were
    missing."""
    gateway, tagger, generator = faulty
    missing = (grpc.StatusCode.NOT_FOUND, "file:///srv/staging/3f2a/clip.mp4 does not exist")
    monkeypatch.setattr({"tagger": tagger, "generator": generator}[service], "refusal", missing)
    code, details = code_of(lambda: score(gateway, _request(clip.path.as_uri())))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
    assert service in details and "NOT_FOUND" in details and "/" not in details, details


def _refused_as_downstream_then_answered(answered: Callable[[], bool], monkeypatch) -> str:
    """The error's message: the call fails INTERNAL, DOWNSTREAM_BROKE_CONTRACT; once the fault
    is undone, the same call is answered (`answered` says whether it was)."""
    with pytest.raises(grpc.RpcError) as caught:
        answered()
    assert caught.value.code() == grpc.StatusCode.INTERNAL, caught.value.details()
    assert error_details(caught.value).reason == "DOWNSTREAM_BROKE_CONTRACT"
    monkeypatch.undo()
    assert answered()
    return caught.value.details()


def _refused_as_downstream_then_scored(gateway: str, clip: SyntheticVideo, monkeypatch) -> str:
    """The same for Score: once the fault is undone, the request is scored."""
    request = _request(clip.path.as_uri())
    return _refused_as_downstream_then_answered(
        lambda: score(gateway, request)[-1].WhichOneof("event") == "result", monkeypatch
    )


def _changed(event: str, **changes: object) -> Fault:
    """Each message of `event` ("audio", "plan") with its fields changed."""

    def fault(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
        if message.WhichOneof("event") == event:
            for name, value in changes.items():
                setattr(getattr(message, event), name, value)
        return [message]

    return fault


def _nan_audio(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
    if message.WhichOneof("event") == "audio" and message.audio.first_sample == 0:
        message.audio.pcm_f32le = np.full(8, np.nan, dtype="<f4").tobytes()
    return [message]


def _audio_after_the_first_dropped(
    message: generator_pb2.GenerateResponse,
) -> list[generator_pb2.GenerateResponse]:
    """The mix's first chunk, and the stream ending OK without the rest."""
    dropped = message.WhichOneof("event") == "audio" and message.audio.first_sample > 0
    return [] if dropped else [message]


def _huge_audio(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
    """Samples of 3e38 (finite: mastering's sums had overflowed, and the piece come out
    silent, "-inf LUFS")."""
    if message.WhichOneof("event") == "audio":
        count = len(message.audio.pcm_f32le) // 4
        message.audio.pcm_f32le = np.full(count, 3e38, dtype="<f4").tobytes()
    return [message]


def _midi_replaced(midi: bytes) -> Fault:
    def fault(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
        if message.WhichOneof("event") == "midi":
            message.midi = midi
        return [message]

    return fault


def _extra(**fields: Any) -> Fault:
    """The message, then one more (candidate and stem as `fields` say) after the plan."""

    def fault(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
        if message.WhichOneof("event") != "plan":
            return [message]
        return [message, generator_pb2.GenerateResponse(**fields)]

    return fault


STEM = generator_pb2.StemChunk(
    instrument="kazoo", audio=common_pb2.AudioChunk(sample_rate=48000, channels=2)
)


def _stem_named(name: str) -> Fault:
    """A plan that plays `name`, and a stem for it: a stem's name is its file's."""

    def fault(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
        if message.WhichOneof("event") != "plan":
            return [message]
        message.plan.instruments.append(name)
        stem = generator_pb2.StemChunk(instrument=name, audio=STEM.audio)
        return [message, generator_pb2.GenerateResponse(stem=stem)]

    return fault


def _unasked_stem() -> Fault:
    """Beside each chunk of the mix, the same chunk as the stem of an instrument the plan
    plays, for a request that asked for no stems."""
    played: list[str] = []

    def fault(message: generator_pb2.GenerateResponse) -> list[generator_pb2.GenerateResponse]:
        if message.WhichOneof("event") == "plan":
            played.append(message.plan.instruments[0])
        if message.WhichOneof("event") != "audio":
            return [message]
        stem = generator_pb2.StemChunk(instrument=played[-1], audio=message.audio)
        return [message, generator_pb2.GenerateResponse(candidate=message.candidate, stem=stem)]

    return fault


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "says"),
    [(_changed("audio", sample_rate=22050), "at 22050 Hz, not the brief's"),
     (_changed("audio", total_samples=10**12), "1000000000000 samples"),
     (_changed("audio", channels=6), "of 6 channels"),
     (_changed("audio", first_sample=10**9), "does not fit"),
     (_nan_audio, "samples that are not numbers"),
     # Each of these had been delivered, the call OK: silence where the music was missing.
     (_audio_after_the_first_dropped, "it ended at sample 48000 of"),
     (_changed("audio", first_sample=0), "a chunk at sample 0 where sample 48000 came next"),
     (_huge_audio, "samples past 1e+06"),
     # Passed on to the caller's result (and `bgm client`'s terminal) and written as they came.
     (_changed("plan", bpm=float("nan")), "candidate 0's plan: bpm: nan is not a tempo"),
     (_changed("plan", key="\x1b[31mC major"), "candidate 0's plan: words with control"),
     (_changed("plan", ending="explode"), "candidate 0's plan: ending: 'explode' is not one of"),
     (_midi_replaced(b"junk" * 1000), "MIDI that is not a Standard MIDI File"),
     (_extra(candidate=7, midi=b"MThd"), "candidate 7 of 1"),
     (_extra(stem=STEM), "a stem for 'kazoo'"),
     # Written as stems/NAME.wav: it had escaped the output folder (a file written outside
     # every output root), or failed as a bare INTERNAL.
     (_stem_named("../../../escaped"), "a stem named '../../../escaped'"),
     (_stem_named("strings/legato"), "a stem named 'strings/legato'"),
     # Stems nobody asked for: more audio than the gateway set aside room for.
     (_unasked_stem(), "sent 2 tracks of"),
     (lambda message: [] if message.WhichOneof("event") == "plan" else [message],
      "returned no plan")],
)  # fmt: skip
def test_a_generator_that_breaks_its_contract_costs_the_caller_a_clear_error(
    faulty, clip, monkeypatch, fault, says
):
    """Music of another rate, length or shape than the brief's, samples that are not numbers,
    a candidate or a stem nobody asked for: INTERNAL, saying what the generator sent and that
    the request was not at fault (reason DOWNSTREAM_BROKE_CONTRACT), with nothing allocated
    for it; the next request is scored."""
    gateway, _, generator = faulty
    monkeypatch.setattr(generator, "fault", fault)
    assert says in _refused_as_downstream_then_scored(gateway, clip, monkeypatch)


@pytest.mark.slow
def test_stems_short_of_an_instrument_the_plan_plays_are_the_generator_s_fault(
    faulty, clip, monkeypatch
):
    """Stems asked for ("one audio track per instrument"), and the generator sends none for
    one of its instruments: the set had been delivered short, the call OK."""
    gateway, _, generator = faulty
    played: list[str] = []

    def first_instrument_s_dropped(message):
        if message.WhichOneof("event") == "plan":
            played.append(message.plan.instruments[0])
        if message.WhichOneof("event") == "stem" and message.stem.instrument == played[-1]:
            return []
        return [message]

    monkeypatch.setattr(generator, "fault", first_instrument_s_dropped)
    request = _request(clip.path.as_uri())
    request.output.stems = True
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, request)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert error_details(caught.value).reason == "DOWNSTREAM_BROKE_CONTRACT"
    assert f"no stem for {played[-1]!r}" in caught.value.details()
    monkeypatch.undo()
    events = score(gateway, request)
    stems = {e.file.name for e in events if e.WhichOneof("event") == "file"
             and e.file.kind == gateway_pb2.FILE_KIND_STEM}  # fmt: skip
    assert f"stems/{played[-1]}.wav" in stems


@pytest.mark.slow
def test_no_midi_from_a_generator_that_offers_it_is_the_generator_s_fault(
    faulty, clip, monkeypatch
):
    """MIDI asked for and an empty one sent: an empty music.mid had been delivered, the call
    OK."""
    gateway, _, generator = faulty
    monkeypatch.setattr(generator, "fault", _midi_replaced(b""))
    request = _request(clip.path.as_uri())
    request.output.midi = True
    details = _refused_as_downstream_then_answered(
        lambda: score(gateway, request)[-1].WhichOneof("event") == "result", monkeypatch
    )
    assert details == "the generator sent no MIDI, which it offers"


def test_a_ranking_of_measures_that_are_not_numbers_is_refused():
    """A ranking's score of NaN and a fit of 7 had been passed on and printed as such."""
    from services.domain import CandidateScore
    from services.errors import InvalidInputError
    from services.rules import check_ranking

    def scored(score: float, tempo_fit: float) -> CandidateScore:
        return CandidateScore(candidate=1, rank=1, score=score, tempo_fit=tempo_fit,
                              cut_accent=None, energy_follow=0.5)  # fmt: skip

    check_ranking([scored(0.7, 0.5)])
    with pytest.raises(InvalidInputError, match=r"candidate 1's score: nan is outside 0\.\.1"):
        check_ranking([scored(float("nan"), 0.5)])
    with pytest.raises(InvalidInputError, match=r"candidate 1's tempo_fit: 7 is outside 0\.\.1"):
        check_ranking([scored(0.7, 7.0)])


def test_an_analysis_s_curves_count_towards_its_conversion_off_the_event_loop():
    """16 million motion values had been converted on the event loop (another caller's
    health check held 1.2 s): they count, a hundred to an item."""
    from services.serving import LONG_MESSAGE_ITEMS, timeline_items

    analysis = common_pb2.VideoAnalysis()
    analysis.motion.values.extend([0.5] * 100 * (LONG_MESSAGE_ITEMS + 1))
    assert timeline_items(analysis) > LONG_MESSAGE_ITEMS
    assert timeline_items(common_pb2.MusicBrief()) == 0


@pytest.mark.slow
def test_a_generator_without_48_khz_scores_a_request_that_names_no_rate(faulty, clip, monkeypatch):
    """A generator that makes only 44.1 kHz: a request that names no rate gets 44.1 kHz (every
    such request had been refused, "sample rate 48000 is not supported", while the gateway
    said SERVING); one that names 48000 is refused naming output.sample_rate."""
    import io

    import soundfile

    gateway, _, generator = faulty

    def only_44k(reply: generator_pb2.GeneratorDescribeResponse) -> None:
        del reply.sample_rates[:]
        reply.sample_rates.append(44100)

    monkeypatch.setattr(generator, "description", only_44k)
    request = _request(clip.path.as_uri())
    request.output.format = gateway_pb2.OUTPUT_FORMAT_WAV
    events = score(gateway, request)
    assert events[-1].WhichOneof("event") == "result"
    wav = b"".join(e.file.data for e in events if e.WhichOneof("event") == "file")
    assert soundfile.info(io.BytesIO(wav)).samplerate == 44100
    request.output.sample_rate = 48000
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value).fields == ["output.sample_rate"]


def test_the_delivered_candidate_is_the_one_ranked_first():
    """A generator that lists its ranking in candidate order, the best marked by its rank:
    the gateway delivers the one ranked 1 (it had delivered the first listed while its
    client named the other as delivered); ranks that are not 1..n are its broken contract."""
    from services.domain import CandidateScore
    from services.errors import DownstreamError
    from services.gateway.servicer import _best_first

    def scored(candidate: int, rank: int) -> CandidateScore:
        return CandidateScore(candidate=candidate, rank=rank, score=1.0 / rank, tempo_fit=0.5,
                              cut_accent=None, energy_follow=None)  # fmt: skip

    listed = [scored(0, 2), scored(1, 1)]
    assert [s.candidate for s in _best_first(listed)] == [1, 0]
    for broken in ([scored(0, 1), scored(1, 1)], [scored(0, 1), scored(0, 2)],
                   [scored(0, 1), scored(7, 2)]):  # fmt: skip
        with pytest.raises(DownstreamError, match=r"not ranks 1\.\.2 for candidates 0\.\.1"):
            _best_first(broken)


@pytest.mark.slow
def test_outputs_the_generator_does_not_make_are_refused_before_any_work(faulty, clip, monkeypatch):
    """MIDI from a generator whose description makes none: INVALID_ARGUMENT naming
    output.midi, before the analysis (an empty music.mid had been delivered as if made)."""
    gateway, tagger, generator = faulty
    monkeypatch.setattr(generator, "description", lambda reply: reply.outputs.remove("midi"))
    analysed = len(tagger.served_for)
    request = _request(clip.path.as_uri())
    request.output.midi = True
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "makes no midi" in caught.value.details()
    assert error_details(caught.value).fields == ["output.midi"]
    assert len(tagger.served_for) == analysed


def _rates(*rates: int) -> Callable[[generator_pb2.GeneratorDescribeResponse], None]:
    def described(reply: generator_pb2.GeneratorDescribeResponse) -> None:
        del reply.sample_rates[:]
        reply.sample_rates.extend(rates)

    return described


def _structures(*names: str) -> Callable[[generator_pb2.GeneratorDescribeResponse], None]:
    def described(reply: generator_pb2.GeneratorDescribeResponse) -> None:
        del reply.structures[:]
        reply.structures.extend(names)

    return described


def _plays(
    genres: list[str] | None = None, instruments: list[str] | None = None, candidates: int = 0
) -> Callable[[generator_pb2.GeneratorDescribeResponse], None]:
    """A description that offers only these genres, instruments or candidates."""

    def description(reply: generator_pb2.GeneratorDescribeResponse) -> None:
        for field, offered in (("genres", genres), ("instruments", instruments)):
            if offered is not None:
                reply.ClearField(field)
                getattr(reply, field).extend(offered)
        if candidates:
            reply.max_candidates = candidates

    return description


@pytest.mark.slow
@pytest.mark.parametrize(
    ("offered", "asked", "field", "says"),
    [(_plays(genres=["ambient", "cinematic"]), {"genres": ["ambient", "rock"]}, "controls.genres",
      "does not play genre rock; it plays ambient, cinematic"),
     (_plays(instruments=["piano"]), {"instruments": ["piano", "drums"]}, "controls.instruments",
      "does not play instrument drums; it plays piano"),
     (_plays(candidates=2), {"candidates": 3}, "controls.candidates",
      "makes at most 2 candidates for a request, not 3")],
)  # fmt: skip
def test_what_the_generator_does_not_offer_is_refused_before_any_work(
    faulty, clip, monkeypatch, offered, asked, field, says
):
    """Another team's generator may play fewer genres or instruments, or make fewer
    candidates, than this project's: asking for more is INVALID_ARGUMENT NOT_OFFERED on the
    field, before the analysis (it had been refused by the generator after it, or sent)."""
    gateway, tagger, generator = faulty
    monkeypatch.setattr(generator, "description", offered)
    analysed = len(tagger.served_for)
    with pytest.raises(grpc.RpcError) as caught:
        score(gateway, _request(clip.path.as_uri(), **asked))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in caught.value.details()
    details = error_details(caught.value)
    assert details.fields == [field] and details.reason == "NOT_OFFERED"
    assert len(tagger.served_for) == analysed


@pytest.mark.slow
def test_the_taggers_genres_and_instruments_the_generator_does_not_play_are_left_out(
    faulty, clip, monkeypatch
):
    """The tagger chooses from the whole vocabulary; a generator that plays less is sent only
    what it plays, the vocabulary's best-ranked genre and its first instrument standing in
    where it plays none of the tagger's (the brief had carried them all)."""
    gateway, _, generator = faulty
    tagged = score(gateway, _request(clip.path.as_uri()))[-1].result.tags
    vocabulary = load_vocabulary()
    genre = next(g for g in vocabulary.genres if g not in tagged.genres)
    instrument = next(i for i in reversed(vocabulary.instruments) if i not in tagged.instruments)
    # One of the tagger's genres stays playable; none of its instruments does.
    monkeypatch.setattr(generator, "description", _plays(genres=[genre, tagged.genres[-1]],
                                                         instruments=[instrument]))  # fmt: skip
    tags = score(gateway, _request(clip.path.as_uri()))[-1].result.tags
    assert list(tags.genres) == [tagged.genres[-1]]
    assert list(tags.instruments) == [instrument]
    assert {o.tag for o in tags.origins} <= {*tags.genres, *tags.moods, *tags.instruments}
    # Asked for by the caller, an offered genre comes first as ever.
    tags = score(gateway, _request(clip.path.as_uri(), genres=[genre]))[-1].result.tags
    assert list(tags.genres) == [genre, tagged.genres[-1]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "says"),
    [(lambda reply: setattr(reply, "max_duration_s", 0.0), "max_duration_s: 0 s is not a length"),
     (lambda reply: reply.ClearField("sample_rates"), "sample_rates: [] are not all sample"),
     # A request that named no rate had been written at 2 MHz.
     (_rates(2_000_000), "sample_rates: [2000000] are not all sample rates from 8000 to"),
     # Every request that named no structure had been refused naming controls.structure.
     (_structures("\x00", "zzz"), "structures: ['\\x00', 'zzz'] lack 'free'"),
     (lambda reply: setattr(reply, "max_candidates", -1), "max_candidates: -1 is not a count"),
     # Every Score had generated, then failed for the plan it never sends.
     (lambda reply: reply.outputs.remove("plan"), "lack plan, which every request needs"),
     # A brief names a genre it plays, and an instrument: none is left to name.
     (lambda reply: reply.ClearField("genres"), "genres: it plays none"),
     (_plays(instruments=["theremin"]), "instruments: it plays none the vocabulary names "
                                        "(theremin)")],
)  # fmt: skip
def test_a_generator_that_describes_itself_off_its_contract_costs_the_caller_a_clear_error(
    faulty, clip, monkeypatch, fault, says
):
    """The gateway checks every request by the generator's description: a longest piece of
    0 s or no sample rates would refuse every caller as INVALID_ARGUMENT for a video too long
    or a rate not offered; it is INTERNAL DOWNSTREAM_BROKE_CONTRACT naming the generator."""
    gateway, _, generator = faulty
    monkeypatch.setattr(generator, "description", fault)
    # Its readiness says so too: a load balancer sends no caller to a gateway that would fail
    # them all.
    wait_serving(gateway, statuses=(health_pb2.HealthCheckResponse.NOT_SERVING,), seconds=5)
    details = _refused_as_downstream_then_scored(gateway, clip, monkeypatch)
    assert details.startswith("the generator's description: ") and says in details
    wait_serving(gateway, seconds=5)


def _cuts_beyond_the_limit(reply: tagger_pb2.AnalyzeResponse) -> None:
    """30,000 cuts: the generator's limit on a brief, which had refused it INVALID_ARGUMENT
    naming brief.cuts, a field the caller never sent."""
    analysis = reply.analysis
    del analysis.cuts[:]
    for i in range(30_000):
        analysis.cuts.add(time_s=0.5 + i * 1e-4, strength=0.5)


def _timeline_changed(reply: tagger_pb2.AnalyzeResponse, **changes: object) -> None:
    analysis = reply.analysis
    for name, value in changes.items():
        setattr(analysis, name, value)


def _segment_gap(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.segments[1].start_s += 0.5


def _cut_outside(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.cuts[0].time_s = reply.analysis.duration_s + 3.0


def _ten_times_longer(reply: tagger_pb2.AnalyzeResponse) -> None:
    """A timeline that tiles a length ten times the video's."""
    analysis = reply.analysis
    analysis.duration_s *= 10.0
    analysis.segments[-1].end_s = analysis.duration_s


def _origin_added(tag: str, score: float) -> Callable[[tagger_pb2.AnalyzeResponse], None]:
    """A mood's origin, put first."""

    def fault(reply: tagger_pb2.AnalyzeResponse) -> None:
        origins = reply.analysis.tags.origins
        kept = list(origins)
        del origins[:]
        origins.add(kind=common_pb2.TAG_KIND_MOOD, tag=tag, source=common_pb2.TAG_SOURCE_PICTURE,
                    score=score)  # fmt: skip
        origins.extend(kept)

    return fault


def _longer_by(seconds: float) -> Callable[[tagger_pb2.AnalyzeResponse], None]:
    """A timeline that tiles a length `seconds` past the video's."""

    def fault(reply: tagger_pb2.AnalyzeResponse) -> None:
        analysis = reply.analysis
        analysis.duration_s += seconds
        analysis.segments[-1].end_s = analysis.duration_s

    return fault


def _speech_backwards(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.speech.append(common_pb2.SpeechInterval(start_s=2.0, end_s=1.0))


def _tags_changed(**changes: object) -> Callable[[tagger_pb2.AnalyzeResponse], None]:
    def fault(reply: tagger_pb2.AnalyzeResponse) -> None:
        tags = reply.analysis.tags
        for name, value in changes.items():
            if isinstance(value, list):
                del getattr(tags, name)[:]
                getattr(tags, name).extend(value)
            else:
                setattr(tags, name, value)

    return fault


def _energy_of_seven(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.segments[0].energy = 7.0


def _motion_not_a_number(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.motion.values[3] = math.nan


def _loudness_without_a_rate(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.loudness.hz = 0.0
    reply.analysis.loudness.values.append(-20.0)


def _segment_mood_unknown(reply: tagger_pb2.AnalyzeResponse) -> None:
    reply.analysis.segments[1].moods.append("sneaky")


TAGGER_FAULTS = [
    # Passed on to the caller as they came, and printed by `bgm client` (for 322 s).
    (lambda reply: _timeline_changed(reply, fps=math.nan), "analysis.fps: nan is not a size"),
    (lambda reply: _timeline_changed(reply, rotation=45), "analysis.rotation: 45 is not quarter"),
    (lambda reply: reply.analysis.warnings.extend(["w" * 10_000] * 500),
     "analysis.warnings: 500, 500 of them over 1000 characters"),
    (lambda reply: _timeline_changed(reply, duration_s=math.nan),
     "analysis.duration_s: nan s is not a length"),
    (lambda reply: _timeline_changed(reply, duration_s=-4.0),
     "analysis.duration_s: -4 s is not a length"),
    (_segment_gap, "analysis.segments[1] starts at"),
    (_cut_outside, "analysis.cuts[0] at"),
    (_speech_backwards, "analysis.speech[0] (2-1 s)"),
    (_energy_of_seven, "analysis.segments[0].energy: 7 is outside 0..1"),
    (_motion_not_a_number, "analysis.motion.values[3]: nan is outside 0..1"),
    (_loudness_without_a_rate, "analysis.loudness.hz: 0 is not a rate"),
    (_segment_mood_unknown, "analysis.segments[1].moods: unknown mood sneaky"),
    (_tags_changed(energy=1.5), "analysis.tags.energy: 1.5 is outside 0..1"),
    (_tags_changed(genres=["polka"]), "analysis.tags.genres: unknown genre polka"),
    (_tags_changed(bpm=400.0, bpm_max=400.0), "analysis.tags.bpm: 400 BPM"),
    (_tags_changed(key="H major"), "analysis.tags.key: bad key 'H major'"),
    (_origin_added("calm", math.nan), "analysis.tags.origins[0].score: nan is not a number"),
    (_origin_added("sneaky", 0.5), "analysis.tags.origins[0].tag: unknown mood sneaky"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "says"),
    [*TAGGER_FAULTS, (_ten_times_longer, "s for a video of"),
     (_cuts_beyond_the_limit, "makes a brief past the limits: brief.cuts: at most")],
)  # fmt: skip
def test_a_tagger_that_breaks_its_contract_costs_the_caller_a_clear_error(
    faulty, clip, monkeypatch, fault, says
):
    """A length that is not a positive number or is far past the video's, segments that leave
    a gap, cuts or speech outside the timeline, energies or motion outside 0..1, tags the
    vocabulary does not name, a tempo outside its range, a key that is none: INTERNAL
    DOWNSTREAM_BROKE_CONTRACT naming the tagger, before the caller sees the analysis (not the
    generator's INVALID_ARGUMENT on a brief field the caller never sent, an internal error, or
    music for another length); the next request is scored."""
    gateway, tagger, _ = faulty
    monkeypatch.setattr(tagger, "fault", fault)
    details = _refused_as_downstream_then_scored(gateway, clip, monkeypatch)
    assert details.startswith("the tagger's analysis: ") and says in details


@pytest.mark.slow
def test_the_music_fits_the_picture_a_tagger_finds_a_little_longer(faulty, clip, monkeypatch):
    """A tagger that counts a container's length (where the sound outlasts the picture) finds
    the video up to TAGGER_LENGTH_SLACK_S longer than the gateway's probe: the music is the
    picture's length, as the gateway measured it (it had run 0.9 s past the last frame)."""
    import io

    import soundfile

    from services.media.video import probe_video

    gateway, tagger, _ = faulty
    monkeypatch.setattr(tagger, "fault", _longer_by(0.9))
    request = _request(clip.path.as_uri())
    request.output.format = gateway_pb2.OUTPUT_FORMAT_WAV
    events = score(gateway, request)
    wav = b"".join(e.file.data for e in events if e.WhichOneof("event") == "file")
    probed = probe_video(clip.path).duration_s
    assert soundfile.info(io.BytesIO(wav)).duration == pytest.approx(probed, abs=1e-3)
    # And the analysis the caller is sent is the timeline the music was made to.
    (analysis,) = [e.analysis for e in events if e.WhichOneof("event") == "analysis"]
    assert analysis.duration_s == pytest.approx(probed)
    assert analysis.segments[-1].end_s == pytest.approx(probed)


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "says"), TAGGER_FAULTS[::3])
def test_the_gateway_analyze_holds_the_tagger_to_its_contract(
    faulty, clip, monkeypatch, fault, says
):
    """Analyze passes the tagger's analysis on only as its contract has it."""
    gateway, tagger, _ = faulty
    monkeypatch.setattr(tagger, "fault", fault)
    request = gateway_pb2.GatewayAnalyzeRequest(
        video=common_pb2.VideoSource(uri=clip.path.as_uri())
    )
    with grpc.insecure_channel(gateway) as channel:
        analyze = gateway_pb2_grpc.GatewayStub(channel).Analyze

        def answered() -> bool:
            length = analyze(request, timeout=60).analysis.duration_s
            return length == pytest.approx(clip.duration_s)

        assert says in _refused_as_downstream_then_answered(answered, monkeypatch)


def test_a_reply_over_the_message_limit_is_the_service_behind_s_fault():
    """A generator's message over the gateway's limit: gRPC refuses it as RESOURCE_EXHAUSTED,
    which had reached the caller as if its own request were too large; it is INTERNAL
    DOWNSTREAM_BROKE_CONTRACT."""
    from services.serving import status_for

    oversized = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(),
        details="Received message larger than max (69120021 vs. 67108864)",
    )  # fmt: skip
    refusal = status_for(oversized)
    assert refusal.code == grpc.StatusCode.INTERNAL
    assert "69120021 vs. 67108864" in refusal.message
    assert b"DOWNSTREAM_BROKE_CONTRACT" in refusal.details
    # A status message over gRPC's metadata limit (a generator's 15,000 characters) too.
    too_long = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(),
        details="received metadata size exceeds hard limit (16437 vs. 16384)",
    )  # fmt: skip
    assert status_for(too_long).code == grpc.StatusCode.INTERNAL
    # The caller's own request over a limit is still its own.
    own = grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                               grpc.aio.Metadata(), details="over the tenant's quota")  # fmt: skip
    assert status_for(own).code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_failure_inside_another_make_of_service_reaches_the_caller_without_its_internals():
    """A tagger or generator of another make that fails INTERNAL or UNKNOWN with its stack
    trace and paths as the message: passed on whole, they had crossed the wire (this
    project's own services send their errors with details, which pass as they are); and a
    message's terminal escapes, line breaks and direction overrides are not sent on."""
    from services.serving import status_for

    trace = 'Traceback (most recent call last):\n  File "/srv/secret/gen.py", line 3\nKeyError'
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        failed = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                      details=trace)  # fmt: skip
        refusal = status_for(failed)
        assert refusal.code == grpc.StatusCode.INTERNAL
        assert "/srv/secret" not in refusal.message and "Traceback" not in refusal.message
        assert code.name in refusal.message and b"DOWNSTREAM_BROKE_CONTRACT" in refusal.details
    odd = grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(),
                               grpc.aio.Metadata(),
                               details="no \x1b[31mred\x1b[0m\r\nline \u202eevil")  # fmt: skip
    assert status_for(odd).message == "no  [31mred [0m  line  evil"


@pytest.mark.parametrize(
    "words",
    ["Received message larger than max (5000 vs. 1000)",
     "CLIENT: Sent message larger than max (5000 vs. 1000)",
     "grpc: received message larger than max (5000000 vs. 4194304)",
     "gRPC message exceeds maximum size 4194304: 5000000"],
)  # fmt: skip
def test_grpc_s_refusal_of_a_large_message_between_services_is_no_busy_service(words):
    """gRPC's refusal of a message over a limit between the gateway and the generator, in
    any library's words (sent or received): the servers' fault (INTERNAL), not a busy
    generator to be tried again in a second; only the core's received wording had been
    known."""
    from services.gateway.servicer import _for_caller

    refused = grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(), details=words)  # fmt: skip
    said = status_for(_for_caller(refused, "generator", "generate_timeout_s", 1800.0,
                                  time.monotonic()))  # fmt: skip
    assert said.code == grpc.StatusCode.INTERNAL, said.message
    assert reason_of(said.details) == "DOWNSTREAM_BROKE_CONTRACT"


def test_a_dependency_that_fails_the_check_is_one_line_in_the_log():
    """The gateway's NOT_SERVING warning names each dependency's failure on one line, its
    code and cause whole: an AioRpcError's str() had spread over lines and been cut at 200
    characters, before the cause."""
    from services.gateway.servicer import _one_line

    cause = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: refused"
    failed = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                  grpc.aio.Metadata(), details=cause,
                                  debug_error_string="x" * 300)  # fmt: skip
    assert _one_line(failed) == f"UNAVAILABLE: {cause}"
    assert _one_line(ValueError("line\nbreak")) == "ValueError: line break"


def test_a_line_logged_for_a_request_names_it_from_its_threads_too():
    """A line logged while a request is served, in its task or a thread it hands work to,
    ends with the request's id (its audit line's request_id): a warning any caller can cause
    (a damaged audio track's) had named none. Lines logged for no request, and the audit
    log's own (whose JSON holds the id), are left as they are."""
    import io
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from services.serving import CURRENT_REQUEST, LOG_FORMAT, RequestOfLine, in_request

    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestOfLine())
    lines, audit = logging.getLogger("bgm.test-lines"), logging.getLogger("bgm.audit")
    for logger in (lines, audit):
        logger.addHandler(handler)
    request = "ab" * 16
    try:
        serving = CURRENT_REQUEST.set(request)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(in_request(lines.warning, "decoding stopped")).result()
            pool.submit(lines.warning, "a thread of no request").result()
        audit.warning('{"request_id": "%s"}', request)
        CURRENT_REQUEST.reset(serving)
        lines.warning("after the request")
    finally:
        for logger in (lines, audit):
            logger.removeHandler(handler)
    said = [line.split(" WARNING ", 1)[1] for line in written.getvalue().splitlines()]
    assert said == [f"bgm.test-lines decoding stopped (request {request})",
                    "bgm.test-lines a thread of no request",
                    f'bgm.audit {{"request_id": "{request}"}}',
                    "bgm.test-lines after the request"]  # fmt: skip


def test_limits_live_in_the_config():
    limits = RequestLimits(max_prompt_chars=100)
    with pytest.raises(InvalidInputError, match="at most 100 characters"):
        EdgeSchema(limits).check(gateway_pb2.ScoreRequest(
            controls=common_pb2.UserControls(prompt="y" * 101)))  # fmt: skip


class _Refused:
    """A generator's opening that ends the call before it reads the brief."""

    def __iter__(self) -> Iterator[generator_pb2.GenerateResponse]:
        raise RuntimeError("refused by the test")


@pytest.mark.slow
@pytest.mark.alone
def test_an_analysis_at_the_limits_leaves_the_gateway_answering_others(faulty, clip, monkeypatch):
    """A 2-hour video whose shots change every half second gives the tagger's most: 14,400
    cuts and 4,800 segments with their thumbnails, 30 MB. Three callers score such a video at
    once while another keeps asking the gateway for its health: turning each analysis into
    domain types, checking it, copying it into the caller's event and making the
    generator's request of it (0.4 s a request) had held the gateway's event loop, and with
    it every other caller."""
    gateway, tagger, generator = faulty

    # Made once: the test process's own work (it serves the tagger) stays out of the waits.
    end = clip.duration_s
    hard = common_pb2.CUT_KIND_HARD
    cuts = [common_pb2.Cut(time_s=end * (i + 1) / 14_401, kind=hard, strength=0.5)
            for i in range(14_400)]  # fmt: skip
    segments = [common_pb2.Segment(start_s=end * i / 4_800, end_s=end * (i + 1) / 4_800,
                                   energy=0.5, moods=["calm"], thumbnail_jpeg=b"\xff" * 4_000)
                for i in range(4_800)]  # fmt: skip

    def at_the_limits(reply: tagger_pb2.AnalyzeResponse) -> None:
        analysis = reply.analysis
        del analysis.cuts[:]
        del analysis.segments[:]
        analysis.cuts.extend(cuts)
        analysis.segments.extend(segments)

    monkeypatch.setattr(tagger, "fault", staticmethod(at_the_limits))
    monkeypatch.setattr(generator, "opening", _Refused())
    request = _request(clip.path.as_uri())
    own = [("grpc.use_local_subchannel_pool", 1)]
    codes: list[tuple[grpc.StatusCode, str]] = []

    def send() -> None:
        # The analysis event comes back whole (20 MB), left unread.
        roomy = [*own, ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        with grpc.insecure_channel(gateway, options=roomy) as channel:
            scored = channel.unary_stream(
                "/bgm.v1.Gateway/Score", request_serializer=type(request).SerializeToString
            )
            codes.append(code_of(lambda: list(scored(request, timeout=60))))

    with grpc.insecure_channel(gateway, options=own) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        waits, took = _waits_while(
            send, lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=30), pause_s=0.01
        )
    # Each was read, checked and sent to the generator, which failed it (an exception: gRPC's
    # UNKNOWN, whose message the gateway logs rather than pass on).
    assert len(codes) == 3 and all("failed (UNKNOWN)" in d for _, d in codes), codes
    print(f"{len(waits)} health checks in {took:.2f} s, the slowest {max(waits):.3f} s")
    # With the analyses converted on the loop, one check waited for all three: 0.82-0.89 s of
    # 1.05-1.27 s. Now 0.10-0.17 s of 1.1-1.7 s here (0.38 s of 2.26 s on a slower machine):
    # the event to the caller is still serialized on the loop (50 ms), and the loop takes
    # turns with the converting thread.
    assert max(waits) < took / 3


def test_a_staging_store_that_cannot_be_written_is_refused_at_start_up():
    """gateway.staging_url naming a store whose filesystem is not installed (WebDAV wants
    webdav4) is a configuration error when the gateway starts, where every Score had failed
    on it."""
    from services.config import BgmConfig
    from services.gateway.servicer import GatewayServicer

    config = BgmConfig()
    staged = config.gateway.model_copy(update={"staging_url": "webdav://store.example/bgm"})

    async def started() -> None:  # as a server makes it: in its event loop
        GatewayServicer.from_config(config.model_copy(update={"gateway": staged}))

    with pytest.raises(ConfigError, match=r"gateway\.staging_url webdav://.*webdav4"):
        asyncio.run(started())


def test_a_second_server_on_a_port_one_holds_is_refused():
    # gRPC sets SO_REUSEPORT by default: a second `bgm serve` on a running one's port had
    # started without a word, and the two split the requests between them.
    async def scenario() -> None:
        first = HostedServer([], "127.0.0.1:0", ServingConfig())
        await first.start()
        try:
            with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1"):
                HostedServer([], f"127.0.0.1:{first.port}", ServingConfig())
        finally:
            await first.stop(0)

    asyncio.run(scenario())


def test_a_connection_that_carries_no_request_is_closed():
    """An HTTP/2 connection held open with nothing on it is closed after
    serving.max_connection_idle_s: twenty thousand had taken every file descriptor."""
    import socket

    def frame(kind: int, flags: int, payload: bytes = b"") -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + b"\0\0\0\0" + payload

    settings, ack = frame(4, 0), frame(4, 1)
    idle = ServingConfig(max_connection_idle_s=1.0)
    with _hosted(_silence_binding(1.0), serving=idle) as (address, _):
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=20) as connection:
            connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + ack)
            opened = time.monotonic()
            while connection.recv(65536):  # the server's settings, then its GOAWAY
                pass
            closed_after = time.monotonic() - opened
    assert closed_after < 15, closed_after


def test_a_quiet_call_outlives_a_client_s_keepalive_pings():
    """A client that pings every second on a call that sends nothing (as Go and Java clients
    ping every 10 s on a Score waiting for its turn) keeps its call, with the server allowing
    pings every half second: at gRPC's default policy the server had ended the call
    UNAVAILABLE "Too many pings" after a few pings."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    pinging = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    serving = ServingConfig(min_client_ping_interval_s=0.5)
    with (
        _hosted(_silence_binding(1.0), serving=serving) as (address, _),
        grpc.insecure_channel(address, options=pinging) as channel,
    ):
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=6
        )
        with pytest.raises(grpc.RpcError) as ended:
            for _ in watch:
                pass
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ended.value.details()


class _Call:
    """What client_of reads of a gRPC call: its peer."""

    def __init__(self, peer: str):
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_limits_count_an_ipv6_caller_by_its_64():
    """A host is handed a whole IPv6 /64: counted by address, it had as many callers (and
    per-caller limits and turns) as it liked. The audit line still names the address."""

    from services.serving import address_group, client_of, peer_address

    def call(peer: str) -> Any:
        return _Call(peer)

    first = call("ipv6:%5B2001:db8:0:1::5%5D:5555")
    assert client_of(first) == client_of(call("ipv6:%5B2001:db8:0:1:ff::9%5D:1"))
    assert client_of(first) == "ipv6:2001:db8:0:1::/64"
    assert client_of(call("ipv6:%5B2001:db8:0:2::5%5D:1")) != client_of(first)
    assert peer_address(first) == "ipv6:[2001:db8:0:1::5]"
    assert client_of(call("ipv6:%5B::ffff:10.0.0.2%5D:4")) == "ipv4:10.0.0.2"
    assert client_of(call("ipv4:10.0.0.2:80")) == "ipv4:10.0.0.2"
    assert address_group("10.0.0.2") == "10.0.0.2" and address_group("testclient") == "testclient"


class _SlowStore:
    """An fsspec store (slowstore:///path, a local folder) whose copies in take PUT_S and, as
    an object store's, need no folder made first."""

    PUT_S = 3.0

    @staticmethod
    def register() -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        class SlowStore(LocalFileSystem):
            protocol = "slowstore"

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(auto_mkdir=True, **kwargs)

            @classmethod
            def _strip_protocol(cls, path: Any) -> Any:
                return super()._strip_protocol(str(path).removeprefix("slowstore://"))

            def put_file(self, lpath: Any, rpath: Any, **kwargs: Any) -> None:
                time.sleep(_SlowStore.PUT_S)
                super().put_file(lpath, rpath, **kwargs)

        fsspec.register_implementation("slowstore", SlowStore, clobber=True)

    @classmethod
    def staging_into(cls, tmp_path: Path, progress_every_s: float) -> tuple[Path, Any]:
        """A store in `tmp_path`, and the config of a gateway that stages into it (with no
        tagger or generator to reach)."""
        from services.config import BgmConfig

        cls.register()
        store = tmp_path / "store"
        store.mkdir()
        config = BgmConfig.model_validate({"gateway": {
            "staging_dir": str(tmp_path / "staging"), "staging_url": f"slowstore://{store}",
            "tagger_address": "127.0.0.1:1", "generator_address": "127.0.0.1:1",
            "progress_every_s": progress_every_s}})  # fmt: skip
        return store, config


def test_a_copy_into_the_staging_store_holds_no_other_caller_and_the_stream_alive(
    tmp_path: Path, clip: SyntheticVideo
):
    """A Score whose video takes 3 s to copy into the shared staging store: the gateway
    answers another caller meanwhile, the Score's stream sends progress while it waits, and
    the store is empty after. The copy had run on the event loop (every other caller held
    for as long as it took; a 4 GB video into S3, minutes), and the stream was quiet until
    the analysis began."""
    store, config = _SlowStore.staging_into(tmp_path, progress_every_s=0.5)
    with (
        _hosted(lambda: gateway_binding(config)) as (address, _),
        grpc.insecure_channel(address) as channel,
    ):
        stub = gateway_pb2_grpc.GatewayStub(channel)
        request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(
            data=clip.path.read_bytes(), file_name="clip.mp4"))  # fmt: skip
        began = time.monotonic()
        stream = stub.Score(request, timeout=60)
        first = next(stream)
        assert first.event.progress.stage == "analysis"
        # The copy goes on: another caller is answered meanwhile.
        code, _ = code_of(lambda: stub.Analyze(gateway_pb2.GatewayAnalyzeRequest(), timeout=30))
        answered_in = time.monotonic() - began
        assert code == grpc.StatusCode.INVALID_ARGUMENT  # it names no video
        assert answered_in < _SlowStore.PUT_S / 2, answered_in
        beats = 1
        with contextlib.suppress(grpc.RpcError):  # no tagger: UNAVAILABLE once staged
            for response in stream:
                beats += response.event.WhichOneof("event") == "progress"
        assert beats >= 3
        assert list(store.iterdir()) == []
        # A caller gone while its copy goes on: the copy is removed once it is made.
        stream = stub.Score(request, timeout=60)
        next(stream)
        stream.cancel()
        time.sleep(_SlowStore.PUT_S)
        _until(lambda: not any(store.iterdir())
               and not any((tmp_path / "staging").rglob("*.mp4")), 10)  # fmt: skip


class _CallerContext:
    """What a gateway handler asks of its call, for a caller at one address that sends no
    metadata and sets no deadline."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def auth_context(self) -> dict[str, Any]:
        return {}

    def cancelled(self) -> bool:
        return False

    def code(self) -> None:
        return None

    def time_remaining(self) -> None:
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        pass

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def send_initial_metadata(self, metadata: Any) -> None:
        pass


def test_a_score_closed_while_its_copy_goes_on_lets_go_only_once_the_copy_is_removed(
    tmp_path: Path, clip: SyntheticVideo
):
    """A Score stream closed at a message it sends (gRPC closes it so when the caller leaves
    while it writes): its copy into the store is waited for and removed, and its folder and
    place let go after. The heartbeats' generator had been left to the collector: the close
    returned at once, the folder and the place let go, the copy going on into the store."""
    from services.gateway.servicer import GatewayServicer

    store, config = _SlowStore.staging_into(tmp_path, progress_every_s=0.2)
    request = gateway_pb2.ScoreRequest(video=common_pb2.VideoSource(
        data=clip.path.read_bytes(), file_name="clip.mp4"))  # fmt: skip

    async def scenario() -> tuple[list[Path], list[Path]]:
        servicer = GatewayServicer.from_config(config)
        stream: Any = servicer.Score(request, _CallerContext())  # an async generator
        await anext(stream)  # a heartbeat while the copy goes on
        await stream.aclose()
        return list(store.iterdir()), list((tmp_path / "staging").rglob("*.mp4"))

    assert asyncio.run(scenario()) == ([], [])
