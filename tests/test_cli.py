"""`bgm analyze` and `bgm sample` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.media.synth import SyntheticVideo


def bgm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=120
    )


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
    ):
        assert field in data
    assert data["duration_s"] == pytest.approx(cuts_video.duration_s, abs=1e-3)
    assert len(data["cuts_s"]) == len(cuts_video.cuts_s)
    assert set(data["motion"]) >= {"hz", "values"}
    assert {"start_s", "end_s", "energy", "moods"} <= set(data["segments"][0])
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
    result = bgm("analyze", str(path))
    assert result.returncode == 2
    assert "INVALID_ARGUMENT" in result.stderr and "empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_is_reported(tmp_path: Path, cuts_video: SyntheticVideo):
    config = tmp_path / "bgm.yaml"
    config.write_text("tagger:\n  vison: {}\n")
    result = bgm("--config", str(config), "analyze", str(cuts_video.path))
    assert result.returncode == 2
    assert "vison" in result.stderr and "Traceback" not in result.stderr


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

    result = bgm("--version")
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
    folder = bgm("score", str(video), "-o", f"{tmp_path}/")
    assert folder.returncode == 2 and "is a folder" in folder.stderr
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
