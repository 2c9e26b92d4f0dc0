"""SONIQUE's model through the diffusion backend: a tiny random SONIQUE folder built here (its
best_model.json shrunk, its checkpoint, its CLAP checkpoint, the hub files laion-clap reads),
loaded as a real one is. These run in the SONIQUE environment (./dev.sh sonique; ./dev.sh test
runs them there); the last test runs in the main one."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.config import ComposerConfig, DiffusionConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment
from services.errors import ConfigError
from services.generator.backends.diffusion.backend import DiffusionGenerator
from tests.bgm_command import bgm

HAS_SAT = importlib.util.find_spec("stable_audio_tools") is not None
sonique_env = pytest.mark.sonique
LOOK = Look(0.5, 0.5, 0.5, 0.5)


def brief(duration_s: float, rate: int = 48000, seed: int = 1) -> MusicBrief:
    tags = MusicTags(genres=["rock"], moods=["tense"], instruments=["drums", "electric-guitar"],
                     bpm=140, bpm_min=130, bpm_max=150, key="E minor", energy=0.7)  # fmt: skip
    segments = [Segment(0.0, min(5.0, duration_s), 0.4, LOOK, ["tense"])]
    if duration_s > 5.0:
        segments.append(Segment(5.0, duration_s, 0.9, LOOK, ["epic"]))
    return MusicBrief(tags=tags, segments=segments,
                      cuts=[Cut(5.0, "hard", 1.0)] if duration_s > 5.0 else [],
                      duration_s=duration_s, sample_rate=rate, seed=seed,
                      negative=["piano"])  # fmt: skip


@pytest.fixture(scope="module")
def tiny_sonique(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.generator.backends.diffusion.tiny.sonique import sonique

    return sonique(tmp_path_factory.mktemp("sonique"), window_s=4.0)


@pytest.fixture(scope="module")
def generator(tiny_sonique: Path) -> DiffusionGenerator:
    return DiffusionGenerator(
        DiffusionConfig(model_path=tiny_sonique, steps=3, window_overlap_s=1.0), ComposerConfig()
    )


@sonique_env
def test_it_samples_with_its_own_defaults_and_gives_mono_as_two_channels(generator):
    # Length, seeds, windows, batches, cancellation and score-then-render: test_diffusion.py's
    # family tests, which run SONIQUE's family in this environment.
    info = generator.describe()
    assert info.version.endswith("(sonique)")
    assert info.structures == ("free", "composer", "reference")
    assert (generator.adapter.default_steps, generator.adapter.default_guidance) == (300, 6.0)
    assert generator.steps == 3  # configured
    music = generator.generate(brief(2.0, 48000, seed=6))
    assert music.audio.shape == (96000, 2)
    assert np.array_equal(music.audio[:, 0], music.audio[:, 1])


@sonique_env
def test_prompts_are_in_its_tag_form_and_the_negative_prompt_guides(generator, monkeypatch):
    adapter = generator.adapter
    text = adapter.prompt(["Rock"], ["tense"], ["drums", "electric-guitar"], 139.6, "E minor",
                          "intense", "")  # fmt: skip
    assert text == "drums, electric-guitar, rock, tense, intense, 140 bpm"
    calls: list[list[dict]] = []
    conditioner = adapter.model.conditioner
    original = conditioner.forward

    def spy(rows, device):
        calls.append(rows)
        return original(rows, device)

    monkeypatch.setattr(conditioner, "forward", spy)
    with_negative = generator.generate(brief(3.0)).audio
    assert [row["prompt"] for row in calls[-1]] == ["piano"]
    assert calls[-2][0]["prompt"].endswith("140 bpm")
    assert (calls[-2][0]["seconds_start"], calls[-2][0]["seconds_total"]) == (0, 3)
    without = generator.generate(dataclasses.replace(brief(3.0), negative=[])).audio
    assert not np.allclose(with_negative, without)


@sonique_env
@pytest.mark.parametrize("initial", [False, True])
def test_a_window_is_what_stable_audio_tools_makes_for_its_seed(generator, initial):
    import torch
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    from services.generator.backends.diffusion.adapters import RenderRequest

    adapter = generator.adapter
    size = round(adapter.window_s * adapter.sample_rate)
    melody = np.random.default_rng(0).standard_normal((size, 1)).astype(np.float32) / 10
    request = RenderRequest("piano, calm, 90 bpm", "drums", adapter.window_s, 1234, 90, "C major",
                            initial_audio=melody if initial else None, piece_s=3.0)  # fmt: skip
    ours = adapter.render([request], 4, 6.0, lambda step, steps: None)[0]
    timing = {"seconds_start": 0, "seconds_total": 3}
    theirs = generate_diffusion_cond(
        adapter.model, steps=4, cfg_scale=6.0, sample_size=size, seed=1234, device="cpu",
        conditioning=[{"prompt": request.prompt, **timing}],
        negative_conditioning=[{"prompt": "drums", **timing}],
        sampler_type="dpmpp-2m-sde", sigma_min=0.03, sigma_max=50, scale_phi=0.4,
        init_audio=(adapter.sample_rate, torch.from_numpy(melody.T)) if initial else None,
        init_noise_level=1.0)  # fmt: skip
    assert np.array_equal(ours[:, 0], theirs[0, 0].numpy())


@sonique_env
def test_windows_say_where_they_lie_in_the_piece(generator):
    from services.generator.backends.diffusion.adapters import RenderRequest

    adapter = generator.adapter

    def timing(start_s: float, piece_s: float, seconds: float = 4.0) -> tuple[int, int]:
        request = RenderRequest("", "", seconds, 1, 120, "C major", start_s=start_s,
                                piece_s=piece_s)  # fmt: skip
        row = adapter._timing(request)
        return row["seconds_start"], row["seconds_total"]

    assert timing(0.0, 3.0, 3.0) == (0, 3)  # one window: as SONIQUE's code conditions it
    assert timing(6.0, 10.7) == (6, 11)
    # Past the 512 s its timing knows: the first window starts, the last ends, others middle.
    assert timing(0.0, 3600.0) == (0, 512)
    assert timing(1800.0, 3600.0) == (254, 512)
    assert timing(3596.0, 3600.0) == (508, 512)


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


@sonique_env
def test_bad_folders_are_explained(tiny_sonique, tmp_path):
    def refused(folder: Path, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            DiffusionGenerator(DiffusionConfig(model_path=folder), ComposerConfig())

    no_ckpt = _copy(tiny_sonique, tmp_path / "no-ckpt")
    (no_ckpt / "best_model.ckpt").unlink()
    refused(no_ckpt, r"needs one checkpoint beside best_model\.json .* found none")
    two = _copy(no_ckpt, tmp_path / "two")
    for name in ("a.ckpt", "b.ckpt"):
        shutil.copy(tiny_sonique / "best_model.ckpt", two / name)
    refused(two, "found a.ckpt, b.ckpt")

    damaged = _copy(tiny_sonique, tmp_path / "damaged")
    (damaged / "best_model.ckpt").write_bytes(b"not a checkpoint")
    refused(damaged, r"best_model\.ckpt is damaged or not a stable-audio-tools checkpoint")

    foreign = _copy(tiny_sonique, tmp_path / "foreign")
    config = json.loads((foreign / "best_model.json").read_text())
    config["model"]["diffusion"]["config"]["channels"] = 64
    (foreign / "best_model.json").write_text(json.dumps(config))
    refused(foreign, r"best_model\.ckpt does not fit its model config: \d+ of \d+ weights")

    no_clap = _copy(tiny_sonique, tmp_path / "no-clap")
    shutil.rmtree(no_clap / "ckpts")
    refused(no_clap, r"the CLAP checkpoint ckpts/clap/clap\.ckpt is missing")

    no_hub = _copy(tiny_sonique, tmp_path / "no-hub")
    shutil.rmtree(no_hub / "hf-cache" / "models--facebook--bart-base")
    refused(no_hub, "needs these Hugging Face files in .*: facebook/bart-base/vocab.json")

    other = _copy(tiny_sonique, tmp_path / "other")
    (other / "best_model.json").write_text(json.dumps({**config, "model_type": "autoencoder"}))
    refused(other, "holds a stable-audio-tools autoencoder model")
    unbuildable = {**config, "model": {**config["model"], "diffusion": {"type": "nope"}}}
    (other / "best_model.json").write_text(json.dumps(unbuildable))
    refused(other, "does not build a model")
    (other / "best_model.json").write_text("{not json")
    refused(other, "is not a stable-audio-tools model config")


@sonique_env
@pytest.mark.slow
def test_bgm_score_and_the_generator_server_run_sonique(tiny_sonique, tmp_path):
    import grpc

    from services.contract import brief_to_proto
    from services.devserver import start, stop
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc
    from services.media.synth import Shot, write_video

    clip = write_video(tmp_path / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.5, hue=0.7)]).path
    out = tmp_path / "scored.wav"
    scored = bgm("score", str(clip), "-o", str(out), "--generator", "diffusion",
                 "--generator-model", str(tiny_sonique), "--structure", "composer",
                 "--negative", "piano")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    import soundfile

    audio, rate = soundfile.read(out)
    assert len(audio) == round(4.5 * rate)

    running = start(tmp_path, tmp_path, which="generator",
                    extra_args=("--generator", "diffusion", "--generator-model",
                                str(tiny_sonique)))  # fmt: skip
    try:
        with grpc.insecure_channel(running.generator) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            described = stub.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10)
            assert described.name == "diffusion" and described.version.endswith("(sonique)")
            samples = 0
            for message in stub.Generate(
                generator_pb2.GenerateRequest(brief=brief_to_proto(brief(5.5))), timeout=120
            ):
                if message.WhichOneof("event") == "audio":
                    samples += len(message.audio.pcm_f32le) // 8
            assert samples == round(5.5 * 48000)
    finally:
        assert stop(running) == 0


@pytest.mark.skipif(HAS_SAT, reason="the main environment's refusal (no stable-audio-tools)")
def test_the_main_environment_says_where_sonique_runs(tmp_path):
    folder = tmp_path / "sonique"
    (folder / "ckpts" / "clap").mkdir(parents=True)
    (folder / "ckpts" / "clap" / "clap.ckpt").write_bytes(b"")
    (folder / "best_model.ckpt").write_bytes(b"")
    from services.generator.backends.diffusion.tiny.sonique import tiny_config

    (folder / "best_model.json").write_text(json.dumps(tiny_config()))
    with pytest.raises(ConfigError, match=r"needs stable-audio-tools .*\./dev\.sh sonique"):
        DiffusionGenerator(DiffusionConfig(model_path=folder), ComposerConfig())
