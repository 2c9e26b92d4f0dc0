"""The symbolic-diffusion backend (Diff-BGM) on a tiny random checkpoint saved in Diff-BGM's
own folder format, with tiny CLIP and BERT folders, loaded like real ones (issue 18)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
import yaml

from services import progress as progress_module
from services.config import ComposerConfig, SymbolicDiffusionConfig
from services.domain import Cut, GeneratedMusic, Look, MusicBrief, MusicTags, Segment
from services.errors import BgmError, CancelledError, ConfigError
from services.generator.backend import GenerationJob
from services.generator.backends.symbolic_diffusion.backend import SymbolicDiffusionGenerator
from services.generator.backends.symbolic_diffusion.checkpoint import (
    DiffBgm,
    load_diffbgm,
    save_diffbgm,
)
from services.generator.backends.symbolic_diffusion.rolls import roll_notes
from services.generator.backends.symbolic_diffusion.sampler import schedule
from services.generator.backends.symbolic_diffusion.tiny import (
    TINY_PARAMS,
    TinyDiffBgm,
    tiny_diffbgm,
)
from tests.bgm_command import bgm

LOOK = Look(0.5, 0.5, 0.5, 0.5)
# Diff-BGM's released params.json (the widths that matter for its weights).
RELEASED = {**TINY_PARAMS, "channels": 64, "attention_levels": [2, 3], "n_res_blocks": 2,
            "channel_multipliers": [1, 2, 4, 4], "n_heads": 4, "d_cond": 512}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyDiffBgm:
    return tiny_diffbgm(tmp_path_factory.mktemp("diffbgm"))


def config(tiny: TinyDiffBgm, **changes: object) -> SymbolicDiffusionConfig:
    settings = {"model_path": tiny.model, "image_model_path": tiny.image_model,
                "text_model_path": tiny.text_model, "steps": 3, **changes}  # fmt: skip
    return SymbolicDiffusionConfig(**settings)


@pytest.fixture(scope="module")
def generator(tiny: TinyDiffBgm) -> SymbolicDiffusionGenerator:
    return SymbolicDiffusionGenerator(config(tiny), ComposerConfig())


def thumbnail(hue: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (hue, 255 - hue, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


def brief(duration_s: float = 12.0, seed: int = 1, instruments: tuple[str, ...] = ("piano",
          "bass", "drums")) -> MusicBrief:  # fmt: skip
    tags = MusicTags(genres=["pop"], moods=["happy"], instruments=list(instruments), bpm=100,
                     bpm_min=90, bpm_max=110, key="C major", energy=0.6)  # fmt: skip
    cut = duration_s / 2
    segments = [
        Segment(0.0, cut, 0.4, LOOK, ["calm"], thumbnail(40), "a car on a road at night"),
        Segment(cut, duration_s, 0.8, LOOK, ["happy"], thumbnail(200), ""),
    ]
    return MusicBrief(tags=tags, segments=segments, cuts=[Cut(cut, "hard", 1.0)],
                      duration_s=duration_s, sample_rate=44100, seed=seed)  # fmt: skip


def md5(audio: np.ndarray) -> str:
    return hashlib.md5(audio.tobytes()).hexdigest()


def test_the_released_architecture_has_diff_bgms_weights_layout():
    """Its released params give the state dict its code saves: 562 tensors, 41,479,098
    numbers (its schedule counted once more as sigma2), the U-Net under ldm.eps_model."""
    state = DiffBgm(RELEASED).state_dict()
    assert len(state) == 562
    assert sum(t.numel() for t in state.values()) == 41_479_098 + 1000
    assert state["caption_enc.weight"].shape == (512, 768)
    assert state["ldm.eps_model.input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight"].shape == (
        256, 512)  # fmt: skip
    assert state["ldm.eps_model.output_blocks.5.0.skip_connection.weight"].shape == (256, 384, 1, 1)


def test_a_checkpoint_loads_strictly_and_bad_folders_are_explained(tiny, tmp_path):
    loaded = load_diffbgm(tiny.model, "weights_best.pt", "cpu", torch.float32)
    assert (loaded.early, loaded.late) == ("caption", "visual")
    saved = torch.load(tiny.model / "chkpts" / "weights_best.pt", weights_only=True)

    def folder_with(state: dict, params: dict | None = None) -> Path:
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        (folder / "chkpts").mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(params or TINY_PARAMS))
        torch.save({"model": state}, folder / "chkpts" / "weights_best.pt")
        return folder

    # Older training code saved modules inference never uses: skipped.
    legacy = {**saved["model"], "chord_enc.linear_mu.weight": torch.zeros(2, 2)}
    load_diffbgm(folder_with(legacy), "weights_best.pt", "cpu", torch.float32)
    cases = [
        (tmp_path / "nowhere", "does not exist"),
        (folder_with({**saved["model"], "mystery.weight": torch.zeros(1)}), "mystery.weight"),
        (folder_with({k: v for k, v in saved["model"].items() if "out.2" not in k}),
         "does not match its params.json"),
        (folder_with(saved["model"], {**TINY_PARAMS, "channels": 64}), "does not match"),
        (folder_with(saved["model"], {**TINY_PARAMS, "img_w": 64}), "2 x 128 x 128"),
        (folder_with(saved["model"], {"channels": 32}), "lacks in_channels"),
        (folder_with(saved["model"], {**TINY_PARAMS, "cond_type": "chord"}), "cond_type"),
        # Tracebacks from deep in torch, and sizes allocated before they were compared.
        (folder_with(saved["model"], {**TINY_PARAMS, "n_heads": 0}),
         "params.json does not describe a Diff-BGM model: ZeroDivisionError"),
        (folder_with(saved["model"], {**TINY_PARAMS, "channels": "32"}),
         "params.json does not describe a Diff-BGM model: TypeError"),
        (folder_with(saved["model"], {**TINY_PARAMS, "n_steps": 10**12}), "does not"),
    ]  # fmt: skip
    diffusers = tmp_path / "pipeline"
    diffusers.mkdir()
    (diffusers / "model_index.json").write_text("{}")
    cases.append((diffusers, "use generator.backend diffusion"))
    no_weights = folder_with(saved["model"])
    (no_weights / "chkpts" / "weights_best.pt").rename(no_weights / "chkpts" / "weights.pt")
    cases.append((no_weights, "no chkpts/weights_best.pt (it has weights.pt)"))
    damaged = folder_with(saved["model"])
    (damaged / "chkpts" / "weights_best.pt").write_bytes(b"not a checkpoint")
    cases.append((damaged, "not a readable torch checkpoint"))
    for folder, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_diffbgm(folder, "weights_best.pt", "cpu", torch.float32)
    with pytest.raises(ConfigError, match="CLIP"):
        SymbolicDiffusionGenerator(config(tiny, image_model_path=None), ComposerConfig())
    # Which of its three folders is missing, by its key (it had said only "model path").
    with pytest.raises(ConfigError, match=r"symbolic_diffusion\.image_model_path .* does not"):
        SymbolicDiffusionGenerator(config(tiny, image_model_path=tmp_path / "gone"),
                                   ComposerConfig())  # fmt: skip
    with pytest.raises(ConfigError, match="holds a clip_vision_model; supported: bert"):
        SymbolicDiffusionGenerator(config(tiny, text_model_path=tiny.image_model),
                                   ComposerConfig())  # fmt: skip


def test_schedules_follow_its_sampler():
    full = schedule(1000, 1000)
    # Its paint() loop: steps 998 down to 0 (the last step is never evaluated).
    assert full[0] == 998 and full[-1] == 0 and len(full) == 999
    short = schedule(1000, 50)
    assert len(short) == 50 and short[0] == 981 and short[-1] == 1


def test_the_piano_is_exact_in_length_seeded_and_on_the_plans_beats(generator):
    music = generator.generate(brief())
    assert music.audio.shape == (round(12.0 * 44100), 2)
    assert md5(generator.generate(brief()).audio) == md5(music.audio)
    assert md5(generator.generate(brief(seed=2)).audio) != md5(music.audio)
    plan = music.plan
    assert plan.meter == "4/4"
    assert plan.alignment.on_beat_count == plan.alignment.cut_count == 1
    midi = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    names = {i.name for i in midi.instruments}
    assert names == {"piano", "bass", "drums"}
    piano = next(i for i in midi.instruments if i.name == "piano")
    assert piano.notes
    # Every piano onset sits on the plan's sixteenth-note grid.
    beats = np.array(plan.beats_s)
    grid = np.concatenate([beats[:-1] + (beats[1:] - beats[:-1]) * k / 4 for k in range(4)])
    grid = np.append(grid, beats[-1])
    distances = [np.min(np.abs(grid - n.start)) for n in piano.notes]
    assert max(distances) < 0.002
    # The piano stops with the composer's final chord.
    assert max(n.start for n in piano.notes) <= plan.final_chord_s + 0.002
    assert all(not s.chords for s in plan.sections)


def test_piano_alone_when_the_brief_asks_only_for_piano(generator):
    music = generator.generate(dataclasses.replace(brief(8.0, instruments=("piano",)),
                                                   stems=True))  # fmt: skip
    assert set(music.stems) == {"piano"}
    midi = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    assert [i.name for i in midi.instruments] == ["piano"]
    assert np.allclose(sum(music.stems.values()), music.audio, atol=1e-4)


def test_it_offers_the_instruments_it_plays_and_refuses_the_rest(generator):
    """Its band is Diff-BGM's piano and the composer's bass and drums: it says so (it had
    offered every instrument, so strings were taken and not played), refuses a brief for
    another, and leaving the piano out, which it cannot."""
    assert generator.describe().instruments == ("piano", "bass", "drums")
    with pytest.raises(BgmError, match="strings") as refused:
        generator.generate(brief(instruments=("piano", "strings")))
    assert refused.value.field == "brief.tags.instruments"
    without_piano = dataclasses.replace(brief(instruments=("bass", "drums")), negative=["piano"])
    with pytest.raises(BgmError, match="cannot leave the piano out") as refused:
        generator.generate(without_piano)
    assert refused.value.field == "brief.negative"
    no_drums = dataclasses.replace(brief(8.0, instruments=("piano", "bass")), negative=["drums"])
    midi = pretty_midi.PrettyMIDI(io.BytesIO(generator.generate(no_drums).midi))
    assert "drums" not in {i.name for i in midi.instruments}


def test_a_user_s_key_is_the_key_its_piano_plays_in(generator):
    """Diff-BGM writes in a key of its own; a key the user fixed moves its piano there, and
    the plan names it (the plan had named the key Diff-BGM wrote in, the result the one
    asked for, the music neither)."""
    from services.generator.backends.composer.theory import Key

    def pitch_classes(music: GeneratedMusic, shift: int = 0) -> list[tuple[float, int]]:
        piano = pretty_midi.PrettyMIDI(io.BytesIO(music.midi)).instruments[0]
        return sorted({(round(n.start, 3), (n.pitch - shift) % 12) for n in piano.notes})

    free = generator.generate(brief(8.0, instruments=("piano",)))
    found = Key.parse(free.plan.key)
    asked = Key((found.tonic + 5) % 12, found.mode)
    tags = dataclasses.replace(brief(8.0, instruments=("piano",)).tags, key=asked.name)
    fixed = generator.generate(dataclasses.replace(brief(8.0, instruments=("piano",)),
                                                   tags=tags, key_is_fixed=True))  # fmt: skip
    assert fixed.plan.key == asked.name
    # The same piano, every note a fourth up (the tiny model's notes reach MIDI's edges, where
    # a note moved back an octave may land on another's key: they sound as one).
    assert pitch_classes(fixed, 5) == pitch_classes(free)


def test_roll_decoding_is_diff_bgms():
    roll = np.zeros((2, 128, 128), dtype=np.float32)
    roll[0, 0, 60] = 1.0  # onset at step 0
    roll[1, 1:4, 60] = 1.0  # sustained for three more steps
    roll[0, 8, 64] = 0.9
    roll[1, 9, 64] = 0.4  # below the threshold: a one-step note
    roll[1, 20, 67] = 1.0  # sustain without an onset: nothing
    notes = roll_notes(roll, first_beat=4, end_beat=100.0)
    assert [(n.pitch, n.start, n.end, n.velocity) for n in notes] == [
        (60, 4.0, 5.0, 80), (64, 6.0, 6.25, 80)]  # fmt: skip


def test_windows_batch_across_pieces_and_a_cancel_stops_only_its_piece(generator):
    alone = [generator.generate(brief(10.0, seed=s)).audio for s in (4, 5)]
    calls = []

    def cancelling(fraction: float) -> None:
        calls.append(fraction)
        if fraction > 0.1:
            raise CancelledError("the caller went away")

    results = generator.generate_batch([
        GenerationJob(brief(10.0, seed=4), lambda _: None),
        GenerationJob(brief(10.0, seed=9), cancelling),
        GenerationJob(brief(10.0, seed=5), lambda _: None),
    ])  # fmt: skip
    assert isinstance(results[1], BgmError) and results[1].status_code == "CANCELLED"
    assert [md5(r.audio) for r in (results[0], results[2])] == [md5(a) for a in alone]
    assert calls and max(calls) < 0.8


def test_the_progress_a_piece_reports_never_goes_back(generator, monkeypatch):
    """Planning, denoising and rendering report in that order with every heartbeat passed
    on (the render's heartbeats used to repeat the planning's fraction after the
    denoising's)."""
    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    fractions: list[float] = []
    generator.generate(brief(6.0), fractions.append)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def test_guidance_and_the_full_schedule(tiny, tmp_path):
    """Guidance runs a conditional and an unconditional branch; the full DDPM schedule (all
    steps but the last, as its sampler) runs on a model trained with 220 steps (a real one
    has 1000), so the switch at step 200 is crossed."""
    generator = SymbolicDiffusionGenerator(config(tiny, guidance_scale=5.0), ComposerConfig())
    guided = generator.generate(brief(6.0)).audio
    plain = SymbolicDiffusionGenerator(config(tiny), ComposerConfig()).generate(brief(6.0)).audio
    assert guided.shape == plain.shape and md5(guided) != md5(plain)
    params = {**TINY_PARAMS, "n_steps": 220}
    torch.manual_seed(0)
    short = save_diffbgm(DiffBgm(params), params, tmp_path / "short")
    steps: list[float] = []
    full = SymbolicDiffusionGenerator(config(tiny, model_path=short, steps=None),
                                      ComposerConfig())  # fmt: skip
    music = full.generate(brief(4.0), steps.append)
    assert music.audio.shape == (round(4.0 * 44100), 2)
    # One report per denoising step (219), then planning's and rendering's.
    assert 219 <= len(steps) < 219 + 40


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.media.synth import Shot, write_video

    folder = tmp_path_factory.mktemp("symbolic-media")
    return write_video(folder / "clip.mp4", [Shot(3.0, hue=0.2), Shot(3.0, hue=0.7)]).path


def generator_config(tiny: TinyDiffBgm, tmp_path: Path) -> Path:
    file = tmp_path / "bgm.yaml"
    file.write_text(yaml.safe_dump({"generator": {"backend": "symbolic-diffusion",
        "symbolic_diffusion": {"image_model_path": str(tiny.image_model),
                               "text_model_path": str(tiny.text_model), "steps": 2}}}))  # fmt: skip
    return file


def test_bgm_score_with_diff_bgm(tiny, clip_video, tmp_path):
    out, midi = tmp_path / "scored.mp4", tmp_path / "scored.mid"
    result = bgm("--config", str(generator_config(tiny, tmp_path)), "score", str(clip_video),
                 "--generator-model", str(tiny.model), "-o", str(out), "--midi", str(midi),
                 "--instrument", "piano", "--genre", "pop")  # fmt: skip
    assert result.returncode == 0, result.stderr
    from services.media.video import probe_video

    assert abs(probe_video(out).duration_s - 6.0) < 0.05
    assert "piano" in {i.name for i in pretty_midi.PrettyMIDI(str(midi)).instruments}
    bad = bgm("score", str(clip_video), "--generator", "symbolic-diffusion",
              "--generator-model", str(tmp_path), "-o", str(tmp_path / "x.wav"))  # fmt: skip
    assert bad.returncode != 0 and "not a Diff-BGM checkpoint folder" in bad.stderr


@pytest.mark.slow
def test_the_generator_server_runs_diff_bgm(tiny, tmp_path):
    import grpc

    from services.contract import brief_to_proto
    from services.devserver import start, stop
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc

    changes = {"generator": {"backend": "symbolic-diffusion", "symbolic_diffusion": {
        "model_path": str(tiny.model), "image_model_path": str(tiny.image_model),
        "text_model_path": str(tiny.text_model), "steps": 2}}}  # fmt: skip
    running = start(tmp_path, tmp_path, which="generator", changes=changes)
    try:
        with grpc.insecure_channel(running.generator) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            described = stub.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10)
            assert described.name == "symbolic-diffusion" and "midi" in described.outputs
            samples, midi = 0, b""
            for message in stub.Generate(
                generator_pb2.GenerateRequest(brief=brief_to_proto(brief(5.5))), timeout=120
            ):
                kind = message.WhichOneof("event")
                if kind == "audio":
                    samples += len(message.audio.pcm_f32le) // 8
                elif kind == "midi":
                    midi = message.midi
            assert samples == round(5.5 * 44100)
            assert midi
    finally:
        assert stop(running) == 0
