"""`bgm analyze` and `bgm sample` as a user runs them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pretty_midi
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
    # Kept unless --force (it had been replaced without a word), and written whole: nothing
    # but the picture is left beside it.
    drawn = plot.read_bytes()
    plot.write_bytes(b"my own picture")
    _one_line_refusal(bgm("analyze", str(cuts_video.path), "--plot", str(plot)))
    assert plot.read_bytes() == b"my own picture"
    assert bgm("analyze", str(cuts_video.path), "--plot", str(plot), "--force").returncode == 0
    assert plot.read_bytes()[:8] == drawn[:8] and [p.name for p in tmp_path.iterdir()] == [
        "analysis.png"
    ]


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


def _imports(*args: str) -> tuple[int, set[str]]:
    """`bgm ARGS` in a process of its own: its exit status and the modules it imported."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "services.cli", *args],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    return result.returncode, imported


def test_analysing_a_silent_video_loads_no_speech_model(motion_video: SyntheticVideo):
    """`bgm analyze` on a video without sound imports neither torch nor the voice-activity
    model: they had loaded with the tagger, 2.3 s of a 3.0 s run on a 1 s clip (0.7 s now).
    A server still loads them before it reports SERVING (TaggerBackend.warm_up)."""
    code, imported = _imports("analyze", str(motion_video.path))
    assert code == 0
    assert "numpy" in imported  # the listing is there
    assert not {"torch", "silero_vad"} & imported


def test_an_argument_error_imports_no_signal_processing(cuts_video: SyntheticVideo, tmp_path: Path):
    """`bgm score --bpm 0` is refused before scipy loads (0.8 s of imports): the score's
    delivery checks and mastering had been imported first, and an argument error took 2 s
    where `bgm --help` takes well under one (bench_cli)."""
    code, imported = _imports("score", str(cuts_video.path), "--bpm", "0", "-o",
                              str(tmp_path / "o.wav"))  # fmt: skip
    assert code == 2
    assert "services.gateway.controls" in imported  # the listing is there
    assert not {"scipy", "scipy.signal"} & imported


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


def test_a_config_key_given_twice_is_refused_on_one_line(
    tmp_path: Path, cuts_video: SyntheticVideo
):
    """A section given twice had silently replaced the first (its limits switched back to the
    defaults); a file that is not YAML had been five lines quoting it."""
    config = tmp_path / "bgm.yaml"
    for text, says in (
        ("limits:\n  max_tags: 8\nstudio: {}\nlimits:\n  max_music_s: 100\n",
         "'limits' is given twice (line 4, column 1)"),
        ("limits:\n  max_tags: 8\n  max_tags: 9\n", "'max_tags' is given twice (line 3"),
        ("limits: [\n", "is not valid YAML: expected the node content"),
    ):  # fmt: skip
        config.write_text(text)
        result = bgm("--config", str(config), "analyze", str(cuts_video.path))
        _one_line_refusal(result)
        assert says in result.stderr, result.stderr
    # Merged keys (YAML's `<<`) may still be replaced, as YAML means them to be.
    config.write_text("x-tags: &tags {max_tags: 8}\nlimits: {<<: *tags, max_tags: 9}\n")
    from services.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="x-tags"):  # an unknown section, not a twice-given key
        load_config(config)


def test_a_service_s_settings_change_its_defaults_key_by_key(tmp_path: Path):
    """serving.gateway naming only a host (as the TLS example in docs/services.md does) keeps the
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
    """Each YAML block of README.md and docs/*.md that is a bgm config (its keys are the
    config's sections) loads as one."""
    import re

    import yaml

    from services.config import BgmConfig

    root = Path(__file__).resolve().parent.parent
    examples = [
        block
        for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
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
    assert listing["negative_families"]["guitar"] == ["acoustic-guitar", "electric-guitar"]
    assert "--negative guitar takes out acoustic-guitar, electric-guitar" in result.stdout


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
    # `bgm sample` the same (it had been "[Errno 2] No such file or directory", no name).
    sample = bgm("sample", "/proc/bgm-sample.mp4")
    if os.access("/proc", os.W_OK):
        assert sample.returncode == 1, sample.stderr
        assert sample.stderr.startswith("error (INTERNAL): cannot write sample video "
                                        "bgm-sample.mp4: "), sample.stderr  # fmt: skip
    else:
        assert sample.returncode == 2 and "/proc is not writable" in sample.stderr, sample
    assert len(sample.stderr.strip().splitlines()) == 1


def _decoded(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit WAV's sound as one channel (the louder of the two at each sample)."""
    import wave

    with wave.open(str(path)) as file:
        rate, channels = file.getframerate(), file.getnchannels()
        samples = np.frombuffer(file.readframes(file.getnframes()), "<i2")
    return np.abs(samples.reshape(-1, channels) / 32768.0).max(axis=1), rate


def test_score_plays_the_key_leaves_out_the_negative_and_writes_the_rate_asked_for(
    cuts_video: SyntheticVideo, tmp_path: Path
):
    """--key, --negative and --sample-rate reach the music (no test had passed them to `bgm
    score`: a CLI that dropped all three passed every test)."""
    output, midi = tmp_path / "k.wav", tmp_path / "k.mid"
    result = bgm("score", str(cuts_video.path), "-o", str(output), "--genre", "rock",
                 "--key", "F#m", "--negative", "drums", "--sample-rate", "44100",
                 "--midi", str(midi))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "F# minor" in result.stdout
    audio, rate = _decoded(output)
    assert rate == 44100 and len(audio) == round(cuts_video.duration_s * rate)
    music = pretty_midi.PrettyMIDI(str(midi))
    # Rock's core band is drums, bass and guitar: its drums left out, the rest still play.
    assert music.instruments and not any(i.is_drum for i in music.instruments)
    assert [k.key_number for k in music.key_signature_changes][:1] == [18]  # F# minor
    # The summary names the band that plays (the tags' instruments are what was asked for).
    band = next(line for line in result.stdout.splitlines() if line.startswith("Band"))
    assert band.split(None, 1)[1].split(", ") == [i.name for i in music.instruments]


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
    stems = bgm("score", str(first), str(second), "-o", f"{out}/", "--stems",
                str(tmp_path / "stems"))  # fmt: skip
    assert stems.returncode == 2 and "one at a time with them" in stems.stderr
    # One video into a folder takes them (it had been refused as if it were several).
    one = bgm("score", str(first), "-o", f"{tmp_path / 'into'}/", "--format", "wav", "--midi",
              str(tmp_path / "into.mid"), "--stems", str(tmp_path / "into-stems"))  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert [p.name for p in (tmp_path / "into").iterdir()] == ["first.wav"]
    assert (tmp_path / "into.mid").is_file() and any((tmp_path / "into-stems").glob("*.wav"))

    part = bgm("score", str(first), "-o", str(tmp_path / "part.wav"), "--start", "2",
               "--end", "5", "--midi", str(tmp_path / "part.mid"))  # fmt: skip
    assert part.returncode == 0, part.stderr
    audio, rate = _decoded(tmp_path / "part.wav")
    # The whole video's length, the music from 2 s to 5 s and silence around it.
    assert len(audio) == round(cuts_video.duration_s * rate)
    sounding = np.flatnonzero(np.abs(audio) > 1e-4) / rate
    assert sounding[0] >= 2.0 - 1e-3 and sounding[-1] <= 5.0 + 1e-3
    assert sounding[0] < 2.1 and sounding[-1] > 4.5
    # The MIDI on the same timeline: its first note where the audio starts to sound (it had
    # started at 0, 2 s before the audio and the stems, in a DAW's session).
    notes = [n for i in pretty_midi.PrettyMIDI(str(tmp_path / "part.mid")).instruments
             for n in i.notes]  # fmt: skip
    assert abs(min(n.start for n in notes) - sounding[0]) < 0.005
    assert max(n.end for n in notes) <= 5.0 + 1e-3
    late = bgm("score", str(first), "-o", str(tmp_path / "late.wav"), "--end", "99")
    assert late.returncode == 2 and "(the video's length)" in late.stderr


def test_what_the_video_refuses_is_refused_before_the_models_load(
    cuts_video: SyntheticVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A part under a second, the original sound of a video without one, a VP9 picture
    into .mov: each had been refused only after the models loaded (2-2.7 s, more with a
    large bank), as the services refuse them."""
    from services.generator import backends as generator_backends
    from services.media.synth import Shot, write_video
    from services.tagger import backends as tagger_backends

    def loading(*_: object) -> None:
        raise AssertionError("the models were loaded")

    monkeypatch.setattr(tagger_backends, "create_tagger_backend", loading)
    monkeypatch.setattr(generator_backends, "create_generator_backend", loading)
    video, out = str(cuts_video.path), str(tmp_path / "out.wav")
    vp9 = write_video(tmp_path / "clip.webm", [Shot(1.5)], codec="libvpx-vp9", audio=False)
    for args, says in (
        (("score", video, "-o", out, "--start", "1", "--end", "1.5"), "at least 1 s"),
        (("score", str(vp9.path), "-o", out, "--keep-original-audio"), "no audio track to keep"),
        (("score", str(vp9.path), "-o", str(tmp_path / "out.mov")), "vp9 video stream into .mov"),
    ):
        result = bgm(*args)
        _one_line_refusal(result)
        assert says in result.stderr, (args, result.stderr)


def test_names_are_printed_as_they_are_not_as_markup(cuts_video: SyntheticVideo, tmp_path: Path):
    """A name holding what Rich reads as markup is printed as it is: `[bold]` had been taken
    away from the line, and a path through a folder named `[` (`.../[/x].mp4`) had crashed
    the command with a MarkupError traceback."""
    missing = tmp_path / "[bold]gone.mp4"
    for args in (("score", str(missing), "-o", str(tmp_path / "a.wav")),
                 ("client", "score", str(missing), "--server", "127.0.0.1:1", "-o",
                  str(tmp_path / "b.wav"))):  # fmt: skip
        result = bgm(*args)
        _one_line_refusal(result)
        assert "[bold]gone.mp4" in result.stderr, result.stderr
    (tmp_path / "[").mkdir()
    video, out = tmp_path / "[" / "x].mp4", tmp_path / "[" / "x] [red]out.wav"
    video.write_bytes(cuts_video.path.read_bytes())
    result = bgm("score", str(video), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Wrote       {out}" in result.stdout, result.stdout


def test_the_client_and_score_take_a_video_and_a_folder_alike(cuts_video: SyntheticVideo,
                                                               tmp_path: Path):  # fmt: skip
    """`bgm client score` as `bgm score`: a missing video is NOT_FOUND in the same words (it
    had been INVALID_ARGUMENT, "cannot read video ... no such file"), and -o FOLDER/ is made
    where it is missing (it had been refused: "folder ... does not exist"), and taken away
    again when the score fails."""
    missing = tmp_path / "gone.mp4"
    said = []
    for command in (("score", str(missing), "-o", str(tmp_path / "a.wav")),
                    ("client", "score", str(missing), "--server", "127.0.0.1:1", "-o",
                     str(tmp_path / "b.wav"))):  # fmt: skip
        result = bgm(*command)
        _one_line_refusal(result)
        said.append(result.stderr.strip())
    assert said[0] == said[1] == "error (NOT_FOUND): video not found: gone.mp4", said
    folder = tmp_path / "new" / "folder"
    result = bgm("client", "score", str(cuts_video.path), "--server", "127.0.0.1:1", "-o",
                 f"{folder}/", "--format", "flac")  # fmt: skip
    assert result.returncode != 0 and "UNAVAILABLE" in result.stderr, result.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("ends", ["mid-file", "without-result"])
def test_the_client_keeps_nothing_of_a_stream_that_ends_early(
    cuts_video: SyntheticVideo, tmp_path: Path, ends: str
):
    """A gateway whose stream ends OK part-way through a file, or without its result: the
    client had kept the part that came and exited 0."""
    from concurrent import futures

    import grpc

    from services.gen.bgm.v1 import gateway_pb2, gateway_pb2_grpc

    class Broken(gateway_pb2_grpc.GatewayServicer):
        def Score(self, request, context):
            chunk = gateway_pb2.FileChunk(name="scored.wav", kind=gateway_pb2.FILE_KIND_MAIN,
                                          data=b"RIFF" + bytes(1000), size=100_000,
                                          last=ends == "without-result")  # fmt: skip
            if ends == "without-result":
                chunk.size = len(chunk.data)
            yield gateway_pb2.ScoreResponse(event=gateway_pb2.ScoreEvent(file=chunk))

    server = grpc.server(futures.ThreadPoolExecutor(2))
    gateway_pb2_grpc.add_GatewayServicer_to_server(Broken(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        out = tmp_path / "out.wav"
        result = bgm("client", "score", str(cuts_video.path), "--server", f"127.0.0.1:{port}",
                     "-o", str(out))  # fmt: skip
    finally:
        server.stop(None)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    says = "before its last chunk" if ends == "mid-file" else "ended without a result"
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_tls_flags_ask_for_tls(cuts_video: SyntheticVideo):
    """--tls-cert without --tls-key had aborted the process inside gRPC (exit 134), and
    --tls-key or --tls-server-name alone had connected in plaintext, sending the token."""
    from services import cli

    video = str(cuts_video.path)
    for flags in (("--tls-cert", "c.pem"), ("--tls-key", "k.pem")):
        result = bgm("client", "score", video, "--server", "127.0.0.1:1", "-o", "x.wav", *flags)
        _one_line_refusal(result)
        assert "--tls-cert and --tls-key go together" in result.stderr
    args = cli.build_parser().parse_args(
        ["client", "score", video, "--server", "h:1", "-o", "x.wav", "--tls-server-name", "h"]
    )
    _, tls = cli._connection(args)
    assert tls is not None and tls.server_name == "h"


def test_connection_flags_are_checked_before_a_call(cuts_video: SyntheticVideo):
    """A port over 65535 had been called (99999 as 34463), a deadline of 1e300 s had expired
    at once, a token with a line break had been "error (INTERNAL): Invalid metadata", and a
    -bin metadata key a traceback inside gRPC."""
    import grpc

    from services import cli
    from services.gateway.client import error_details

    video = str(cuts_video.path)
    for flags, says in ((("--server", "127.0.0.1:99999"), "a port of 1..65535"),
                        # A scheme had been called, and failed as a "misformatted domain".
                        (("--server", "http://127.0.0.1:50051"), "no scheme or path"),
                        (("--timeout", "1e300"), "at most 1e+06 s")):  # fmt: skip
        result = bgm("client", "score", video, "-o", "x.wav", *flags)
        assert result.returncode == 2 and says in result.stderr, result.stderr
    result = bgm("client", "score", video, "-o", "x.wav", "--server", "127.0.0.1:1",
                 "--token", "ab\ncd")  # fmt: skip
    _one_line_refusal(result)
    assert "printable ASCII" in result.stderr
    args = cli.build_parser().parse_args(
        ["client", "score", video, "-o", "x.wav", "--metadata", "trace-bin=abc"]
    )
    assert cli._connection(args)[0] == (("trace-bin", b"abc"),)

    class BrokenDetails(grpc.RpcError):
        """A status whose details do not parse (they had crashed the client)."""

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.INTERNAL

        def details(self) -> str:
            return "boom"

        def trailing_metadata(self) -> tuple:
            return (("grpc-status-details-bin", b"\xff\xff not a status"),)

    details = error_details(BrokenDetails())
    assert (details.fields, details.reason, details.retry_after_s) == ([], "", None)


def _one_line_refusal(result) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def _as_a_user(*args: str) -> list[str]:
    """`bgm args` run so that a file's permissions hold for it: as root (this machine's
    tests), with no capabilities (root's overrides them)."""
    import sys

    command = [sys.executable, "-m", "services.launch", *args]
    if os.geteuid() == 0:
        return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--", *command]
    return command


def test_a_video_it_may_not_read_is_refused_in_one_line(cuts_video: SyntheticVideo, tmp_path: Path):
    """A video whose permissions keep it from being read, or that lies in a folder that may
    not be searched: PERMISSION_DENIED naming it, exit 2, as bad input. It had been the raw
    "[Errno 13] Permission denied" and exit 1, as for a failure of the command's own."""
    import subprocess

    unreadable = tmp_path / "unreadable.mp4"
    unreadable.write_bytes(cuts_video.path.read_bytes())
    unreadable.chmod(0)
    shut = tmp_path / "shut"
    shut.mkdir()
    (shut / "inside.mp4").write_bytes(cuts_video.path.read_bytes())
    shut.chmod(0o600)
    try:
        for video in (unreadable, shut / "inside.mp4"):
            for command in (["score", str(video), "-o", str(tmp_path / "out.wav")],
                            ["analyze", str(video)],
                            ["client", "score", str(video), "--server", "127.0.0.1:1", "-o",
                             str(tmp_path / "out.wav")]):  # fmt: skip
                result = subprocess.run(_as_a_user(*command), capture_output=True, text=True,
                                        timeout=120, cwd=Path(__file__).parent.parent)  # fmt: skip
                _one_line_refusal(result)
                said = result.stderr.strip()
                assert said.startswith("error (PERMISSION_DENIED): cannot read video "), said
                assert said.endswith(f"{video.name}: permission denied"), said
        assert not (tmp_path / "out.wav").exists()
    finally:
        shut.chmod(0o700)


def test_a_value_just_past_its_range_is_said_as_given(cuts_video: SyntheticVideo, tmp_path: Path):
    """A tempo just past 300 BPM or a loudness just past its range, said as given: rounded to
    six digits, "BPM 300 is outside 30..300" had named a value inside the range."""
    for option, value, says in (
        ("--bpm", "300.0000001", "BPM 300.0000001 is outside 30..300"),
        ("--lufs", "-4.9999999", "target -4.9999999 LUFS is outside"),
        # In one range's words for every count (-1 had been "must be at least 0").
        ("--candidates", "-1", "candidates must be 1..4, not -1"),
        ("--candidates", "0", "candidates must be 1..4, not 0"),
    ):
        result = bgm("score", str(cuts_video.path), "-o", str(tmp_path / "o.wav"), option, value)
        _one_line_refusal(result)
        assert says in result.stderr, result.stderr


def test_the_client_reads_a_config_named_after_its_command(cuts_video: SyntheticVideo,
                                                            tmp_path: Path):  # fmt: skip
    """`bgm client score ... --config F`, as every command takes it: it had been "unrecognized
    arguments", though the client reads the config (its request limits)."""
    config = tmp_path / "bgm.yaml"
    config.write_text("limits: {max_referenc_bytes: 5}\n")
    result = bgm("client", "score", str(cuts_video.path), "--server", "127.0.0.1:1", "-o",
                 str(tmp_path / "o.wav"), "--config", str(config))  # fmt: skip
    _one_line_refusal(result)
    assert "max_referenc_bytes" in result.stderr, result.stderr


def test_an_input_that_is_a_loop_of_links_is_said_so(cuts_video: SyntheticVideo, tmp_path: Path):
    """A video or reference that is a link leading round in a loop (a -> b -> a) had been
    "video not found"."""
    (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
    (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
    loop, output = str(tmp_path / "a.mp4"), str(tmp_path / "o.wav")
    for args in (("score", loop, "-o", output), ("analyze", loop),
                 ("score", str(cuts_video.path), "-o", output, "--reference", loop)):  # fmt: skip
        result = bgm(*args)
        _one_line_refusal(result)
        assert "a.mp4" in result.stderr and "leads round in a loop" in result.stderr, result


def test_an_input_that_never_ends_is_refused(cuts_video: SyntheticVideo, tmp_path: Path):
    """A FIFO or a device given where a file is read: refused at once. /dev/zero as the
    reference had filled memory at 1 GB/s, a FIFO as the reference, the config or the video
    to upload had hung."""
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    video, output = str(cuts_video.path), str(tmp_path / "o.wav")
    for args in (
        ("score", video, "-o", output, "--structure", "reference", "--reference", "/dev/zero"),
        ("score", video, "-o", output, "--structure", "reference", "--reference", str(fifo)),
        ("--config", str(fifo), "analyze", video),
        ("client", "score", str(fifo), "-o", output, "--server", "127.0.0.1:9"),
        ("client", "score", "/dev/zero", "-o", output, "--server", "127.0.0.1:9"),
    ):
        result = bgm_process(*args, timeout=60)
        _one_line_refusal(result)
        assert "not a file" in result.stderr, (args, result.stderr)


def test_the_command_line_holds_the_services_request_limits(cuts_video: SyntheticVideo,
                                                             tmp_path: Path):  # fmt: skip
    """`bgm score` refuses what every service refuses, before any work: a seed of -1 had
    failed in numpy after the whole job, 2**32 and a 100,000-character prompt been taken."""
    config = tmp_path / "bgm.yaml"
    config.write_text("limits: {max_seed: 10}\n")
    video, output = str(cuts_video.path), str(tmp_path / "o.wav")
    for args, field in (
        (("--seed", "-1"), "seed"),
        (("--seed", str(2**32)), "seed"),
        (("--prompt", "x" * 3000), "prompt"),
        (("--seed", "11", "--config", str(config)), "seed"),
    ):
        result = bgm("score", video, "-o", output, *args)
        _one_line_refusal(result)
        assert result.stderr.startswith(f"error (INVALID_ARGUMENT): {field}:"), result.stderr
    # Past what a protobuf integer holds: argparse's refusal (it had been a traceback in the
    # message's encoder), for the local score and the client alike.
    for command in (("score",), ("client", "score")):
        for option in ("--seed", "--candidates"):
            result = bgm(*command, video, "-o", output, option, str(2**63))
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert f"argument {option}: {2**63} is out of range" in result.stderr
    assert not Path(output).exists()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("tagger:\n  limits: {max_duration_s: .nan}\n", "tagger.limits.max_duration_s"),
        ("tagger:\n  limits: {max_width: 0}\n", "max_width"),
        ("tagger:\n  vision: {min_shot_s: .inf}\n", "tagger.vision.min_shot_s"),
        ("tagger:\n  hearing: {min_speech_s: .inf}\n", "tagger.hearing.min_speech_s"),
        ("tagger: {backend: nonsense}\n", "tagger.backend"),
        ("generator: {backend: nonsense}\n", "generator.backend"),
    ],
)
def test_a_config_value_out_of_reach_is_one_line(tmp_path: Path, cuts_video: SyntheticVideo,
                                                  text: str, named: str):  # fmt: skip
    """NaN had switched a limit off, infinity and an unknown backend ended in tracebacks, a
    limit of 0 blamed the video; and pydantic's report took four lines and a web address."""
    config = tmp_path / "bgm.yaml"
    config.write_text(text)
    result = bgm("--config", str(config), "analyze", str(cuts_video.path))
    _one_line_refusal(result)
    assert named in result.stderr and "pydantic.dev" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("text", "named"),
    [
        # gRPC had aborted the process (SIGABRT) on a client certificate without its key.
        (
            "gateway:\n  tagger_tls: {cert_file: /c.pem}\n",
            "gateway.tagger_tls: Value error, cert_file and key_file go together",
        ),
        # The service had started and refused every caller, the gateway too.
        (
            "serving:\n  tagger: {tls: {cert_file: /c, key_file: /k, client_names: [gateway]}}\n",
            "serving.tagger.tls: Value error, client_names needs client_ca_file",
        ),
        # The gateway had started open to anyone, without a word.
        (
            "auth: {api_keys_file: /keys.yaml}\n",
            "auth: Value error, api_keys_file given but not enabled",
        ),
        # The API's request had been read whole before its servicer refused it.
        (
            "auth: {enabled: true, api_keys_file: /k, open_methods: [/bgm.v1.Gateway/Score]}\n",
            "/bgm.v1.Gateway/Score is the API, which always needs a token",
        ),
        ("auth: {enabled: false, open_methods: [Health/Check]}\n", "not a full gRPC method name"),
        # OverflowError tracebacks at start-up, in every fetch; a deadline already past.
        ("serving: {max_connection_idle_s: 2500000}\n", "serving.max_connection_idle_s"),
        ("serving: {max_message_bytes: 4294967296}\n", "serving.max_message_bytes"),
        ("gateway:\n  sources: {timeout_s: .inf}\n", "gateway.sources.timeout_s"),
        ("gateway: {analyze_timeout_s: 1.0e10}\n", "gateway.analyze_timeout_s"),
        ("generator:\n  diffusion: {device: banana}\n", "generator.diffusion.device"),
    ],
)
def test_a_config_that_would_fail_only_later_is_refused_as_it_is_read(
    tmp_path: Path, cuts_video: SyntheticVideo, text: str, named: str
):
    config = tmp_path / "bgm.yaml"
    config.write_text(text)
    result = bgm("--config", str(config), "analyze", str(cuts_video.path))
    _one_line_refusal(result)
    assert named in result.stderr, result.stderr


def test_a_relative_folder_in_the_config_is_the_working_folder_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A relative staging folder had passed start-up and failed every request INTERNAL (a
    file URI is absolute)."""
    from services.config import load_config

    config = tmp_path / "bgm.yaml"
    config.write_text(
        "gateway: {staging_dir: staged, output_roots: [out]}\n"
        "tagger: {sources: {file_roots: [media]}}\nstudio: {folder: studio}\n"
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_config(config)
    assert loaded.gateway.staging_dir == tmp_path / "staged"
    assert loaded.gateway.output_roots == [tmp_path / "out"]
    assert loaded.tagger.sources.file_roots == [tmp_path / "media"]
    assert loaded.studio.folder == tmp_path / "studio"


def test_serve_all_refuses_a_gateway_that_would_miss_its_own_services(tmp_path: Path):
    """With the tagger's port moved and the gateway's address left at the default, `serve
    all` had started, reported NOT_SERVING, and would have called whatever listened there."""
    config = tmp_path / "bgm.yaml"
    config.write_text("serving: {tagger: {port: 53052}}\n")
    result = bgm("--config", str(config), "serve")
    _one_line_refusal(result)
    assert "gateway.tagger_address is 127.0.0.1:50052, but this process serves the tagger on " \
        "port 53052" in result.stderr, result.stderr  # fmt: skip


def test_a_config_file_that_is_not_text_is_one_line(tmp_path: Path, cuts_video: SyntheticVideo):
    config = tmp_path / "bgm.yaml"
    config.write_bytes(b"\xff\xfe\x00bad")
    result = bgm("--config", str(config), "analyze", str(cuts_video.path))
    _one_line_refusal(result)
    assert "not UTF-8" in result.stderr


def test_an_output_named_by_an_empty_string_is_refused(
    tmp_path: Path, cuts_video: SyntheticVideo, monkeypatch: pytest.MonkeyPatch
):
    """`-o ""` had written the piece into the current folder, as VIDEO.wav with --format wav."""
    video = str(cuts_video.path)
    monkeypatch.chdir(tmp_path)
    for args in (
        ("score", video, "-o", "", "--format", "wav"),
        ("score", video, "-o", str(tmp_path / "a.wav"), "--midi", ""),
        ("score", video, "-o", str(tmp_path / "a.wav"), "--stems", ""),
        ("analyze", video, "--plot", ""),
        ("sample", ""),
    ):
        result = bgm(*args)
        assert result.returncode == 2 and "an empty name" in result.stderr, (args, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_ports_are_ports(tmp_path: Path):
    """A port over 65535 had been taken, logged, and another port listened on; `serve --port`
    with all three services had been ignored."""
    for args in (
        ("serve", "tagger", "--port", "70000"),
        ("serve", "tagger", "--port", "-1"),
        ("serve", "gateway", "--metrics-port", "99999"),
        ("studio", "--port", "70000"),
    ):
        result = bgm(*args)
        assert result.returncode == 2 and "a port is 0..65535" in result.stderr, result.stderr
    result = bgm("serve", "--port", "59112")
    _one_line_refusal(result)
    assert "--port" in result.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path):
    """The service's port or its metrics port held by another program: one line that says
    so. gRPC's had been "Failed to bind ...; set GRPC_VERBOSITY=debug ..." after a line of
    its C core's log, the metrics' "[Errno 98] Address already in use", naming no port."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags, says in ((("--port", str(port), "--metrics-port", "0"), "cannot listen on"),
                            (("--port", "0", "--metrics-port", str(port)),
                             "cannot serve metrics on")):  # fmt: skip
            result = bgm_process("serve", "tagger", *flags, timeout=120)
            assert result.returncode == 1, result.stderr
            errors = [line for line in result.stderr.splitlines() if " bgm " not in line]
            assert errors == [f"error: {says} 127.0.0.1:{port}: the port is in use (another "
                              "program, or another bgm, listens on it)"], result.stderr  # fmt: skip
            # Nothing says it listens there (the metrics' line had come before the refusal).
            assert f"on 127.0.0.1:{port}\n" not in result.stderr, result.stderr
        # The studio's (uvicorn's own had been its log's "ERROR: [Errno 98] ...", exit 3).
        studio = bgm_process("studio", "--port", str(port), timeout=120)
        assert studio.returncode == 1 and studio.stderr.splitlines() == [
            f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another program, "
            "or another bgm, listens on it)"], studio.stderr  # fmt: skip
    # With --port 0 the port the system chose is the one logged (it had been 0).
    logged = re.search(r"bgm tagger on 127\.0\.0\.1:(\d+)", result.stderr)
    assert logged is not None and logged.group(1) != "0", result.stderr


def test_a_plot_never_replaces_the_video(cuts_video: SyntheticVideo, tmp_path: Path):
    """An animated GIF analysed with --plot naming itself had been replaced by the plot; a
    plot matplotlib cannot write ended in a traceback after the analysis."""
    gif = tmp_path / "clip.gif"
    gif.write_bytes(b"GIF89a not really")
    result = bgm("analyze", str(gif), "--plot", str(gif))
    _one_line_refusal(result)
    assert gif.read_bytes() == b"GIF89a not really"
    video = str(cuts_video.path)
    for plot in (video, str(tmp_path / "plot.txt"), str(tmp_path / "missing" / "p.png"),
                 str(tmp_path)):  # fmt: skip
        result = bgm("analyze", video, "--plot", plot)
        _one_line_refusal(result)
    assert cuts_video.path.stat().st_size > 0 and not (tmp_path / "plot.txt").exists()


def test_sample_keeps_an_existing_file(tmp_path: Path):
    path = tmp_path / "mine.mp4"
    path.write_bytes(b"my own video")
    result = bgm("sample", str(path))
    _one_line_refusal(result)
    assert path.read_bytes() == b"my own video"
    assert bgm("sample", str(path), "--force").returncode == 0
    assert path.stat().st_size > 10_000


def test_a_sample_stopped_half_way_leaves_what_it_would_replace(tmp_path: Path):
    """Ctrl-C while the sample is written: exit 130, and the folder as it was (a shorter
    video had been left, or with --force put in place of the whole one it replaced)."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "mine.mp4"
    path.write_bytes(b"my own video")
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "sample", str(path),
                                "--force"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".mine.partial-*.mp4")):  # its frames are being written
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode in (130, -signal.SIGINT), (process.returncode, stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.mp4"]
    assert path.read_bytes() == b"my own video"


def test_sigterm_stops_a_score_as_ctrl_c_does(cuts_video: SyntheticVideo, tmp_path: Path):
    """SIGTERM mid-job: one line, exit 130, nothing left where the output goes (it had left a
    partial file); Ctrl-C had printed a traceback of 30-70 lines."""
    import signal
    import subprocess
    import sys

    output = tmp_path / "out" / "o.mp4"
    output.parent.mkdir()
    for stop in (signal.SIGTERM, signal.SIGINT):
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "score", str(cuts_video.path), "-o",
             str(output), "--stems", str(tmp_path / "out" / "stems")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _until_it_catches_sigterm(process.pid)  # in main(), before any work is done
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
        # (After Ctrl-C, Python may end by SIGINT itself: a shell reports 130 for both.)
        assert process.returncode in (130, -signal.SIGINT), (stop, process.returncode, stderr)
        if stop == signal.SIGTERM:
            assert process.returncode == 130
        assert stderr.strip() == "interrupted", stderr
        assert list(output.parent.iterdir()) == []


def test_a_stopped_score_takes_away_the_folders_it_made(cuts_video: SyntheticVideo,
                                                        tmp_path: Path):  # fmt: skip
    """Stopped once it has made the -o folder (and its missing parents) and before it wrote
    into it: they go, where still empty, as its files do (they had been left behind)."""
    import signal
    import subprocess
    import sys
    import time

    made = tmp_path / "new" / "deeper"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.launch", "score", str(cuts_video.path), "-o",
         f"{made}/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not made.exists():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr.strip()) == (130, "interrupted")
    assert list(tmp_path.iterdir()) == []


# A command that stops itself with a signal while it runs code exec'd from a string (as
# dataclasses and scipy do on import) or imports a module, then runs on for 30 s.
_STOPS_ITSELF = """
import argparse, os, signal, sys, time
from services import cli

SIGNAL = "os.kill(os.getpid(), signal.SIG{stop})"
(Path := __import__("pathlib").Path)(sys.argv[1], "stops_itself.py").write_text(
    "import os, signal, time\\n" + SIGNAL + "\\ntime.sleep(0.3)\\n"
)
sys.path.insert(0, sys.argv[1])


def command(args):
    if "{where}" == "exec":
        exec(SIGNAL + "\\nfor _ in range(3_000_000): pass", dict(os=os, signal=signal))
    else:
        import stops_itself  # noqa: F401
    time.sleep(30)
    print("ran on")
    return 0


class Parser:
    def parse_args(self, argv):
        return argparse.Namespace(run=command)


cli.build_parser = Parser
sys.exit(cli.main([]))
"""


@pytest.mark.parametrize("where", ["exec", "import"])
@pytest.mark.parametrize("stop", ["TERM", "INT"])
def test_a_signal_inside_exec_or_an_import_still_exits_130(where: str, stop: str, tmp_path: Path):
    """A SIGTERM that came while code exec'd from a string ran (dataclasses and scipy do, on
    import) had ended `python -m services.cli` by SIGINT once main() returned: exit -2, not
    130 (8 runs in 70, stopped in their first second). Within an import the stop waits for
    the import to end, and still comes (the command does not run on)."""
    import subprocess
    import sys

    program = _STOPS_ITSELF.replace("{stop}", stop).replace("{where}", where)
    (tmp_path / "stopping_command.py").write_text(program)
    repository = Path(__file__).resolve().parents[1]
    # Run as `python -m services.cli` is: a script or `-c` exits by SystemExit's own path.
    finished = subprocess.run(
        [sys.executable, "-m", "stopping_command", str(tmp_path)],
        capture_output=True, text=True, timeout=25,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{repository}"},
    )  # fmt: skip
    assert finished.returncode == 130, (finished.returncode, finished.stderr)
    assert finished.stderr.strip() == "interrupted" and "ran on" not in finished.stdout


def test_an_interrupt_python_lost_still_stops_the_command(
    cuts_video: SyntheticVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A Ctrl-C or SIGTERM whose KeyboardInterrupt Python ignored (raised while an import ran
    one of its callbacks: "Exception ignored in ... _get_module_lock") had let the command
    run on to the end, exit 0, its output written: the next progress report stops it."""
    import contextlib
    import io
    import sys

    from services import cli

    monkeypatch.setattr(
        cli, "_interrupted", True
    )  # as the handler leaves it when its exception is lost
    output = tmp_path / "o.wav"
    result = bgm("score", str(cuts_video.path), "-o", str(output))
    assert result.returncode == 130 and result.stderr.strip() == "interrupted", result
    assert not output.exists()

    # Python's report of the interrupt it ignored is left out (five lines had come first).
    class LosesAnInterrupt:
        def __del__(self) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_interrupted", True)  # (bgm puts the flags back)
    sys.unraisablehook, unraisable = cli._unraisable, sys.unraisablehook
    try:
        with contextlib.redirect_stderr(io.StringIO()) as reported:
            LosesAnInterrupt()
    finally:
        sys.unraisablehook = unraisable
    assert reported.getvalue() == ""


# Put on the path as sitecustomize: services.cli's import takes 2 s more, and says when it
# starts (as on a cold disk, where its imports take seconds).
_SLOW_CLI_IMPORT = """
import importlib.abc, pathlib, sys, time

class SlowCli(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "services.cli":
            pathlib.Path(MARK).touch()
            time.sleep(2)
        return None

sys.meta_path.insert(0, SlowCli())
"""


def test_ctrl_c_while_bgm_loads_is_interrupted_not_a_traceback(tmp_path: Path):
    """The installed `bgm` command stopped while its own modules load (about half a second on
    this host): Ctrl-C had been a KeyboardInterrupt traceback and SIGTERM an exit by the
    signal with nothing said; now both are `interrupted`, 130, as later."""
    import signal
    import subprocess
    import sys
    import time

    command = Path(sys.executable).parent / "bgm"
    for stop in (signal.SIGINT, signal.SIGTERM):
        mark = tmp_path / f"loading-{stop.name}"
        (tmp_path / "sitecustomize.py").write_text(
            _SLOW_CLI_IMPORT.replace("MARK", repr(str(mark)))
        )
        process = subprocess.Popen(
            [str(command), "tags"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, (stop, process.returncode, stderr)
        assert stderr.strip() == "interrupted" and stdout == "", stderr


# The interpreter winding down slowly after the command: an object freed among the last
# (held by builtins), once Python has put the signals' default actions back, marks it and
# waits.
_SLOW_TEARDOWN = """
import builtins, pathlib, time

class WindingDown:
    def __del__(self, touch=pathlib.Path(MARK).touch, sleep=time.sleep):
        touch()
        sleep(5)

builtins.winding_down = WindingDown()
"""


def test_a_signal_after_the_command_finished_ends_it_with_its_status(tmp_path: Path):
    """Ctrl-C or SIGTERM once the command has printed its result, while the interpreter
    would wind down (0.3-0.7 s after a score here, the signals' handlers already put back):
    the command's own status and its output. It had ended the process by the signal (-2,
    -15) with nothing said, after a summary of written files; the process now ends once the
    command is done, without that wind-down."""
    import signal
    import subprocess
    import sys
    import time

    command = Path(sys.executable).parent / "bgm"
    for stop in (signal.SIGINT, signal.SIGTERM):
        mark = tmp_path / f"winding-down-{stop.name}"
        (tmp_path / "sitecustomize.py").write_text(_SLOW_TEARDOWN.replace("MARK", repr(str(mark))))
        process = subprocess.Popen(
            [str(command), "tags"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not mark.exists() and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=60)
        assert (process.returncode, stderr) == (0, ""), stop
        assert "Genres" in stdout


def _until_it_catches_sigterm(pid: int) -> None:
    import signal
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line for line in status.splitlines()
                          if line.startswith("SigCgt:")).split()[1], 16)  # fmt: skip
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("bgm never set its SIGTERM handler")


def test_a_flag_that_would_do_nothing_or_break_the_call_is_refused(
    cuts_video: SyntheticVideo, tmp_path: Path
):
    """--generator-model with the composer, --tagger-model with the vision tagger and --format
    with -o naming a file had been ignored; --metadata without '=' a traceback, with a space
    gRPC's INTERNAL; --timeout 0 or NaN sent as deadlines."""
    video, output = str(cuts_video.path), str(tmp_path / "o.wav")
    for args, says in (
        (("score", video, "-o", output, "--generator-model", str(tmp_path)), "--generator-model"),
        (("score", video, "-o", output, "--tagger-model", str(tmp_path)), "--tagger-model"),
        (("client", "score", video, "-o", output, "--metadata", "novalue"), "KEY=VALUE"),
        (("client", "score", video, "-o", output, "--metadata", "Bad Key=v"), "KEY=VALUE"),
        # -o FILE names its format: a --format that says otherwise had been passed over.
        (("score", video, "-o", output, "--format", "mp4"), "--format mp4 is for an -o folder"),
        (("client", "score", video, "-o", output, "--format", "mp3"), "o.wav names its own"),
    ):
        result = bgm(*args)
        _one_line_refusal(result)
        assert says in result.stderr, result.stderr
    for timeout in ("0", "-5", "nan"):
        result = bgm("client", "score", video, "-o", output, f"--timeout={timeout}")
        assert result.returncode == 2 and "a length of time over 0" in result.stderr


def test_a_name_longer_than_the_file_system_allows_is_bad_input(tmp_path: Path):
    # Path.exists() raises ENAMETOOLONG: it had been exit 1 and the raw errno.
    long = "x" * 300
    for args in (("score", str(tmp_path / f"{long}.mp4"), "-o", str(tmp_path / "o.wav")),
                 ("analyze", str(tmp_path / f"{long}.mp4"))):  # fmt: skip
        result = bgm(*args)
        _one_line_refusal(result)
        assert "longer than the file system allows" in result.stderr, result.stderr


def test_the_client_checks_where_its_files_go_before_the_server_works(
    cuts_video: SyntheticVideo, tmp_path: Path
):
    # A missing or read-only folder had failed once the piece had come, naming a temporary
    # file (here no server listens: the refusal comes before any call).
    result = bgm("client", "score", str(cuts_video.path), "-o", str(tmp_path / "no" / "o.wav"),
                 "--server", "127.0.0.1:9")  # fmt: skip
    _one_line_refusal(result)
    assert "does not exist" in result.stderr and "UNAVAILABLE" not in result.stderr


def test_an_output_that_is_no_plain_file_is_never_replaced(cuts_video: SyntheticVideo,
                                                          tmp_path: Path):  # fmt: skip
    """A device, a pipe or a symbolic link where an output goes is refused, --force or not:
    --force had replaced each with a file of music (a link to nothing had been replaced even
    without it), and /dev/null's refusal had asked for --force."""
    fifo, link, dangling = tmp_path / "fifo.wav", tmp_path / "link.wav", tmp_path / "gone.wav"
    os.mkfifo(fifo)
    (tmp_path / "kept.wav").write_bytes(b"mine")
    link.symlink_to(tmp_path / "kept.wav")
    dangling.symlink_to(tmp_path / "nowhere.wav")
    video = str(cuts_video.path)
    for args, kind in (
        (("-o", "/dev/null"), "a device"),
        (("-o", str(fifo)), "a pipe"),
        (("-o", str(link)), "a symbolic link"),
        (("-o", str(dangling)), "a symbolic link"),
        (("-o", str(tmp_path / "o.wav"), "--midi", str(fifo)), "a pipe"),
    ):
        for force in ((), ("--force",)):
            result = bgm_process("score", video, *args, *force, timeout=60)
            _one_line_refusal(result)
            assert kind in result.stderr and "--force" not in result.stderr, result.stderr
    result = bgm_process("analyze", video, "--plot", str(tmp_path / "link.png"), timeout=60)
    assert result.returncode == 0
    (tmp_path / "plot.png").symlink_to(tmp_path / "link.png")
    result = bgm_process("analyze", video, "--plot", str(tmp_path / "plot.png"), "--force",
                         timeout=60)  # fmt: skip
    _one_line_refusal(result)
    assert fifo.is_fifo() and link.is_symlink() and dangling.is_symlink()
    assert (tmp_path / "kept.wav").read_bytes() == b"mine" and not (tmp_path / "o.wav").exists()


def test_an_output_among_the_stems_is_refused(cuts_video: SyntheticVideo, tmp_path: Path):
    # -o stems/piano.wav --stems stems had written the mix, then the piano stem over it.
    stems = tmp_path / "stems"
    stems.mkdir()
    result = bgm("score", str(cuts_video.path), "-o", str(stems / "piano.wav"),
                 "--stems", str(stems))  # fmt: skip
    _one_line_refusal(result)
    assert "is in the stems folder" in result.stderr and list(stems.iterdir()) == []


def test_stems_replaced_with_force_are_the_new_pieces_only(cuts_video: SyntheticVideo,
                                                            tmp_path: Path):  # fmt: skip
    """--force replaces the stems: a rock piece's guitars had stayed beside an ambient piece's
    stems, which then no longer summed to its mix. Only bgm's stems: every other WAV in the
    folder (a user's own mix, a reference) had gone with them."""
    stems = tmp_path / "stems"
    video = str(cuts_video.path)
    rock = bgm("score", video, "-o", str(tmp_path / "a.wav"), "--stems", str(stems),
               "--genre", "rock")  # fmt: skip
    assert rock.returncode == 0, rock.stderr
    assert (stems / "electric-guitar.wav").exists()
    (stems / "my_own_mix.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    refused = bgm("score", video, "-o", str(tmp_path / "b.wav"), "--stems", str(stems))
    assert refused.returncode == 2 and "--force" in refused.stderr
    ambient = bgm("score", video, "-o", str(tmp_path / "b.wav"), "--stems", str(stems),
                  "--genre", "ambient", "--force")  # fmt: skip
    assert ambient.returncode == 0, ambient.stderr
    import soundfile

    mix, _ = soundfile.read(tmp_path / "b.wav")
    assert (stems / "my_own_mix.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()
    kept = sorted(set(stems.glob("*.wav")) - {stems / "my_own_mix.wav"})
    assert "electric-guitar.wav" not in {path.name for path in kept}
    summed = sum(soundfile.read(path)[0] for path in kept)
    # (The stems are the mix before the bus: close, not equal.)
    assert np.corrcoef(summed[:, 0], mix[:, 0])[0, 1] > 0.9


def test_bgm_in_the_test_process_leaves_its_signals_and_hooks_as_they_were():
    """The in-process `bgm` (bgm_command) puts back what the command sets for its process:
    left, its SIGINT handler and its report of ignored exceptions stood for every later test
    on the worker, and pytest's own report of an exception in a __del__ was silenced."""
    import signal
    import sys

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    hook = sys.unraisablehook
    assert bgm("tags").returncode == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert sys.unraisablehook is hook
