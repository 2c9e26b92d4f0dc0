"""`bgm analyze` and `bgm sample` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from services.media.synth import SyntheticVideo
from tests.bgm_command import bgm, bgm_process


def test_json_has_the_documented_fields(cuts_video: SyntheticVideo):
    result = bgm("analyze", str(cuts_video.path), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for field in (
        "duration_s",
        "fps",
        "width",
        "height",
        "has_audio",
        "cuts_s",
        "segments",
        "motion",
        "tags",
        "description",
        "backend",
        "semantics",
        "speech",
        "loudness",
    ):
        assert field in data
    assert data["duration_s"] == pytest.approx(cuts_video.duration_s, abs=1e-3)
    assert len(data["cuts_s"]) == len(cuts_video.cuts_s)
    assert set(data["motion"]) >= {"hz", "values"}
    assert {"start_s", "end_s", "energy", "moods", "caption"} <= set(data["segments"][0])
    assert {"genres", "moods", "instruments", "bpm", "bpm_min", "bpm_max", "key", "energy"} <= set(
        data["tags"]
    )
    assert data["description"].endswith(".")


@pytest.mark.parametrize(
    ("start", "end", "tile", "expected"),
    [(0.0, 10.0, 3.0, [(0.5, 3.5, 1.0), (3.5, 6.5, 1.0), (6.5, 9.5, 1.0)]),
     (2.0, 3.0, 4.0, [(2.0, 3.0, 0.25)]),
     (0.0, 1.0, 0.0, [])],
)  # fmt: skip
def test_plot_thumbnails_keep_their_shape(start, end, tile, expected):
    from services.tagger.report import filmstrip

    got = filmstrip(start, end, tile)
    assert [pytest.approx(copy) for copy in expected] == got


def test_summary_and_plot(cuts_video: SyntheticVideo, tmp_path: Path):
    plot = tmp_path / "analysis.png"
    result = bgm("analyze", str(cuts_video.path), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert "BPM" in result.stdout and "Segments" in result.stdout
    # Piped, the description is one line, not cut at 80 columns mid-phrase.
    music = next(line for line in result.stdout.splitlines() if line.startswith("Music"))
    assert music.rstrip().endswith("."), music
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 20_000


def test_prompt_shows_where_tags_came_from(cuts_video: SyntheticVideo):
    result = bgm("analyze", str(cuts_video.path), "--prompt", "wedding ceremony on the beach")
    assert result.returncode == 0, result.stderr
    assert "romantic (prompt" in result.stdout
    assert "(picture)" in result.stdout


def test_bad_input_is_one_clear_line(tmp_path: Path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    result = bgm_process("analyze", str(path))
    assert result.returncode == 2
    assert "INVALID_ARGUMENT" in result.stderr and "empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_analysing_a_silent_video_loads_no_speech_model(motion_video: SyntheticVideo):
    """`bgm analyze` on a video without sound imports neither torch nor the voice-activity
    model: they had loaded with the tagger, 2.3 s of a 3.0 s run on a 1 s clip (0.7 s now).
    A server still loads them before it reports SERVING (TaggerBackend.warm_up)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "services.cli", "analyze",
         str(motion_video.path)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "numpy" in imported  # the listing is there
    assert not {"torch", "silero_vad"} & imported


def test_bad_config_is_reported(tmp_path: Path, cuts_video: SyntheticVideo):
    config = tmp_path / "bgm.yaml"
    config.write_text("tagger:\n  vison: {}\n")
    result = bgm("--config", str(config), "analyze", str(cuts_video.path))
    assert result.returncode == 2
    assert "vison" in result.stderr and "Traceback" not in result.stderr
    # After the command too (it had been "unrecognized arguments: --config").
    video = str(cuts_video.path)
    for command, *rest in (("analyze", video), ("score", video, "-o", str(tmp_path / "o.wav")),
                           ("serve",), ("studio",)):  # fmt: skip
        after = bgm(command, "--config", str(config), *rest)
        assert after.returncode == 2 and "vison" in after.stderr, (command, after.stderr)


def test_a_service_s_settings_change_its_defaults_key_by_key(tmp_path: Path):
    """serving.gateway naming only a host (as the README's TLS example does) keeps the
    gateway's port, metrics port and workers; it had been refused ("port Field required"),
    and given a port, had turned the metrics off."""
    from services.config import load_config

    config = tmp_path / "bgm.yaml"
    config.write_text("serving:\n  gateway: {host: 0.0.0.0, allow_plaintext: true}\n"
                      "  tagger: {port: 6000}\n")  # fmt: skip
    serving = load_config(config).serving
    assert (serving.gateway.host, serving.gateway.port, serving.gateway.metrics_port,
            serving.gateway.max_concurrent) == ("0.0.0.0", 50051, 9101, 16)  # fmt: skip
    assert (serving.tagger.port, serving.tagger.metrics_port) == (6000, 9102)
    assert serving.generator.port == 50053


def test_every_config_example_in_the_docs_loads():
    """Each YAML block of README.md and docs/deploy.md that is a bgm config (its keys are the
    config's sections) loads as one."""
    import re

    import yaml

    from services.config import BgmConfig

    root = Path(__file__).resolve().parent.parent
    examples = [
        block
        for doc in ("README.md", "docs/deploy.md")
        for block in re.findall(r"```yaml\n(.*?)```", (root / doc).read_text(), re.S)
    ]
    configs = [data for data in map(yaml.safe_load, examples)
               if isinstance(data, dict) and set(data) <= set(BgmConfig.model_fields)]  # fmt: skip
    assert len(configs) >= 4
    for data in configs:
        BgmConfig.model_validate(data)


def test_sample_video_is_what_it_says(tmp_path: Path):
    path = tmp_path / "sample.mp4"
    made = bgm("sample", str(path))
    assert made.returncode == 0, made.stderr
    result = bgm("analyze", str(path), "--json")
    data = json.loads(result.stdout)
    assert data["duration_s"] == pytest.approx(20.0, abs=1e-3)
    assert [round(c, 1) for c in data["cuts_s"]] == [4.0, 7.0, 9.5, 11.5, 15.0]


def test_version_names_the_package_and_the_contracts():
    from importlib.metadata import version

    result = bgm_process("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"bgm {version('bgm')} (contracts bgm.v1)"


def test_tags_lists_the_vocabulary_with_synonyms():
    result = bgm("tags")
    assert result.returncode == 0
    assert "hip-hop" in result.stdout and "hiphop" in result.stdout and "F#m" in result.stdout
    listing = json.loads(bgm("tags", "--json").stdout)
    assert "acoustic-guitar" in listing["instruments"]
    assert "guitar" in listing["instruments"]["acoustic-guitar"]
    assert listing["keys"]["modes"] == ["major", "minor"]


def test_help_shows_the_values():
    result = bgm("score", "--help")
    assert "hip-hop" in result.stdout and "acoustic-guitar" in result.stdout


def test_score_protects_inputs_and_existing_outputs(cuts_video: SyntheticVideo, tmp_path: Path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(cuts_video.path.read_bytes())
    original = video.read_bytes()
    refused = bgm("score", str(video), "-o", str(video), "--force")
    assert refused.returncode == 2 and "is an input" in refused.stderr
    assert video.read_bytes() == original
    # An -o folder holding the video: the output would be the video itself.
    folder = bgm("score", str(video), "-o", f"{tmp_path}/")
    assert folder.returncode == 2 and "is an input" in folder.stderr
    out = tmp_path / "scored.mp4"
    first = bgm("score", str(video), "-o", str(out))
    assert first.returncode == 0, first.stderr
    # Piped, the summary is not cut at 80 columns mid-phrase.
    sound = next(line for line in first.stdout.splitlines() if line.startswith("Sound"))
    assert sound.endswith("(--keep-original-audio keeps it under the music)")
    assert " s in all: start-up " in first.stdout
    again = bgm("score", str(video), "-o", str(out))
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    kept = bgm("score", str(video), "-o", str(out), "--force", "--keep-original-audio")
    assert kept.returncode == 0 and "the video's own sound under the music" in kept.stdout


def test_an_output_that_cannot_be_written_is_one_line(cuts_video: SyntheticVideo,
                                                      tmp_path: Path):  # fmt: skip
    # A missing folder is refused before any model loads (it had been refused only after the
    # generator loaded: here a model that does not exist, refused first).
    missing = bgm(
        "score",
        str(cuts_video.path),
        "-o",
        str(tmp_path / "nodir" / "e.wav"),
        "--generator",
        "diffusion",
        "--generator-model",
        str(tmp_path / "no-model"),
    )
    assert missing.returncode == 2, missing.stderr
    assert f"folder {tmp_path / 'nodir'} does not exist" in missing.stderr
    # A folder that passes the check and still takes no file (/proc, to root): the job ran,
    # then a PyAV traceback; now one line naming the output, nothing left behind.
    unwritable = bgm("score", str(cuts_video.path), "-o", "/proc/bgm-scored.wav")
    if os.access("/proc", os.W_OK):
        assert unwritable.returncode == 1, unwritable.stderr
        assert "cannot write output bgm-scored.wav" in unwritable.stderr
    else:
        assert unwritable.returncode == 2 and "/proc is not writable" in unwritable.stderr
    assert not list(Path("/proc").glob(".bgm-scored*"))


def _decoded(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit WAV's sound as one channel (the louder of the two at each sample)."""
    import wave

    with wave.open(str(path)) as file:
        rate, channels = file.getframerate(), file.getnchannels()
        samples = np.frombuffer(file.readframes(file.getnframes()), "<i2")
    return np.abs(samples.reshape(-1, channels) / 32768.0).max(axis=1), rate


def test_several_videos_into_a_folder_and_a_part_of_one(cuts_video: SyntheticVideo,
                                                        tmp_path: Path):  # fmt: skip
    first, second = tmp_path / "first.mp4", tmp_path / "second.mov"
    first.write_bytes(cuts_video.path.read_bytes())
    second.write_bytes(cuts_video.path.read_bytes())
    out = tmp_path / "scored"
    both = bgm("score", str(first), str(second), "-o", f"{out}/", "--format", "wav")
    assert both.returncode == 0, both.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.wav", "second.wav"]
    audio, rate = _decoded(out / "second.wav")
    assert len(audio) == round(cuts_video.duration_s * rate)
    lone = bgm("score", str(first), str(second), "-o", str(tmp_path / "one.wav"))
    assert lone.returncode == 2 and "names a folder" in lone.stderr

    part = bgm("score", str(first), "-o", str(tmp_path / "part.wav"), "--start", "2",
               "--end", "5")  # fmt: skip
    assert part.returncode == 0, part.stderr
    audio, rate = _decoded(tmp_path / "part.wav")
    # The whole video's length, the music from 2 s to 5 s and silence around it.
    assert len(audio) == round(cuts_video.duration_s * rate)
    sounding = np.flatnonzero(np.abs(audio) > 1e-4) / rate
    assert sounding[0] >= 2.0 - 1e-3 and sounding[-1] <= 5.0 + 1e-3
    assert sounding[0] < 2.1 and sounding[-1] > 4.5
    late = bgm("score", str(first), "-o", str(tmp_path / "late.wav"), "--end", "99")
    assert late.returncode == 2 and "lasts" in late.stderr
