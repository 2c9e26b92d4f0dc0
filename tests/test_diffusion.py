"""The diffusion backend on tiny random pipelines built here, loaded like real checkpoints."""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.config import ComposerConfig, DiffusionConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment
from services.errors import BgmError, CancelledError, ConfigError, InvalidInputError
from services.generator.backends.diffusion.adapters import AceStepAdapter, StableAudioAdapter
from services.generator.backends.diffusion.backend import DiffusionGenerator
from services.generator.backends.diffusion.tiny import stable_audio
from services.generator.backends.diffusion.windows import plan_windows
from services.media.audio import decode_audio_bytes
from tests.bgm_command import Finished, bgm
from tests.hand_made_media import silent_flac
from tests.heartbeats import cancelling_at

LOOK = Look(0.5, 0.5, 0.5, 0.5)
# The composer's settings, for the structure a diffusion piece may start from.
COMPOSER = ComposerConfig()


@pytest.fixture(scope="module")
def tiny_stable_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stable_audio(tmp_path_factory.mktemp("models"), window_s=4.0)


@pytest.fixture(scope="module")
def generator(tiny_stable_audio: Path) -> DiffusionGenerator:
    return DiffusionGenerator(
        DiffusionConfig(model_path=tiny_stable_audio, steps=3, window_overlap_s=1.0), COMPOSER
    )


def brief(duration_s: float, rate: int = 48000, seed: int = 1) -> MusicBrief:
    tags = MusicTags(
        genres=["ambient"],
        moods=["calm"],
        instruments=["piano", "pads"],
        bpm=80,
        bpm_min=70,
        bpm_max=90,
        key="C major",
        energy=0.3,
    )
    segments = [Segment(0.0, min(5.0, duration_s), 0.2, LOOK, ["calm"])]
    if duration_s > 5.0:
        segments.append(Segment(5.0, duration_s, 0.8, LOOK, ["tense"]))
    cuts = [Cut(5.0, "hard", 1.0)] if duration_s > 5.0 else []
    return MusicBrief(
        tags=tags,
        segments=segments,
        cuts=cuts,
        duration_s=duration_s,
        sample_rate=rate,
        seed=seed,
        negative=["drums"],
    )


@pytest.mark.parametrize(("duration", "rate"), [(2.0, 48000), (3.3, 44100), (10.7, 48000)])
def test_length_is_exact_even_past_the_models_window(generator, duration, rate):
    music = generator.generate(brief(duration, rate))
    assert music.audio.shape == (round(duration * rate), 2)
    assert music.sample_rate == rate
    assert np.isfinite(music.audio).all() and np.abs(music.audio).max() > 0
    assert music.midi == b"" and music.stems == {}


def test_same_seed_same_audio_other_seed_other_audio(generator):
    first = generator.generate(brief(6.0, seed=4)).audio
    again = generator.generate(brief(6.0, seed=4)).audio
    other = generator.generate(brief(6.0, seed=5)).audio
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_windows_join_without_clicks(generator):
    music = generator.generate(brief(10.7))
    rate = music.sample_rate
    step = np.abs(np.diff(music.audio, axis=0)).max(axis=1)
    typical = np.quantile(step, 0.999)
    for section in music.plan.sections[1:]:
        join = round(section.start_s * rate)
        around = step[max(0, join - rate // 2) : join + rate]
        assert around.max() <= 2 * typical + 1e-6


def test_window_joins_go_on_cuts_when_they_can():
    windows = plan_windows(20.0, 8.0, 1.0, [6.0, 13.5])
    assert all(w.seconds <= 8.0 + 1e-9 for w in windows)
    assert windows[0].start_s == 0.0 and windows[-1].end_s == 20.0
    joins = [(a.end_s + b.start_s) / 2 for a, b in itertools.pairwise(windows)]
    assert joins[0] == pytest.approx(6.0)  # the cut, not the window's limit
    for a, b in itertools.pairwise(windows):
        assert a.end_s - b.start_s == pytest.approx(1.0)


def test_progress_per_step_and_cancellation(generator):
    seen: list[float] = []
    generator.generate(brief(6.0), progress=seen.append)
    assert len(seen) >= 2 * 3 and seen == sorted(seen) and seen[-1] == 1.0

    class Stop(Exception):
        pass

    after_cancel: list[float] = []

    def cancel(fraction: float) -> None:
        if after_cancel or fraction > 0.2:
            after_cancel.append(fraction)
            raise Stop

    with pytest.raises(Stop):
        generator.generate(brief(10.7), progress=cancel)
    assert len(after_cancel) == 1  # nothing ran past the cancelling step


def test_prompt_carries_tags_tempo_and_intensity(generator):
    adapter = generator.adapter
    text = adapter.prompt(["ambient"], ["calm"], ["piano"], 80.4, "C major", "soft", "")
    assert text == "ambient, calm, soft, piano, C major, 80 BPM"


def test_bad_model_paths_are_explained(tmp_path, tiny_stable_audio):
    with pytest.raises(ConfigError, match="needs a model path"):
        DiffusionGenerator(DiffusionConfig(), COMPOSER)
    with pytest.raises(ConfigError, match="does not exist"):
        DiffusionGenerator(DiffusionConfig(model_path=tmp_path / "nowhere"), COMPOSER)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no model_index\.json"):
        DiffusionGenerator(DiffusionConfig(model_path=tmp_path / "empty"), COMPOSER)
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    with pytest.raises(ConfigError, match="holds a DDPMPipeline; supported: AceStepPipeline"):
        DiffusionGenerator(DiffusionConfig(model_path=other), COMPOSER)
    broken = tmp_path / "broken"
    broken.mkdir()
    index = json.loads((tiny_stable_audio / "model_index.json").read_text())
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="incomplete or damaged"):
        DiffusionGenerator(DiffusionConfig(model_path=broken), COMPOSER)


def test_a_model_folder_short_of_its_weights_or_vocabulary_is_refused(tmp_path, tiny_stable_audio):
    """diffusers and transformers fill a weight the folder lacks with random values and an
    emptied tokenizer with an empty vocabulary, and only log it: such folders had loaded and
    made noise, or music no prompt conditioned. A damaged file's many kinds of error had ended
    start-up in tracebacks."""

    def folder_where(change) -> Path:
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_stable_audio, folder)
        change(folder)
        return folder

    def layer_more(folder: Path) -> None:
        config = json.loads((folder / "transformer" / "config.json").read_text())
        config["num_layers"] += 1
        (folder / "transformer" / "config.json").write_text(json.dumps(config))

    def no_vocabulary(folder: Path) -> None:
        for file in (folder / "tokenizer").iterdir():
            file.unlink()

    def truncated(folder: Path) -> None:
        weights = folder / "text_encoder" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])

    for change, message in [
        (layer_more, "transformer lacks weights its config asks for"),
        (no_vocabulary, "tokenizer holds no vocabulary"),
        (truncated, "text_encoder is incomplete or damaged: SafetensorError"),
    ]:
        with pytest.raises(ConfigError, match=message):
            DiffusionGenerator(DiffusionConfig(model_path=folder_where(change)), COMPOSER)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")
def test_a_gpu_config_on_a_machine_without_one_is_refused_naming_its_key(tiny_stable_audio):
    message = r"generator\.diffusion\.device is cuda:1, but this machine has no CUDA devices"
    with pytest.raises(ConfigError, match=message):
        DiffusionGenerator(DiffusionConfig(model_path=tiny_stable_audio, device="cuda:1"), COMPOSER)


def test_bad_briefs_are_refused(generator):
    bad = brief(4.0)
    with pytest.raises(BgmError, match="sample rate"):
        generator.generate(MusicBrief(**{**bad.__dict__, "sample_rate": 16000}))


def test_bgm_score_with_the_diffusion_generator(tiny_stable_audio, clip_for_diffusion, tmp_path):
    def score(*extra: str) -> Finished:
        return bgm("score", str(clip_for_diffusion), "--generator", "diffusion",
                   "--generator-model", str(tiny_stable_audio), *extra)  # fmt: skip

    out = tmp_path / "scored.wav"
    result = score("-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "ending: fade" in result.stdout
    assert out.stat().st_size > 1000

    melody = tmp_path / "melody.wav"
    melody.write_bytes(reference_wav(tmp_path))
    ranked = score("-o", str(tmp_path / "ranked.wav"), "--candidates", "2", "--structure",
                   "reference", "--reference", str(melody))  # fmt: skip
    assert ranked.returncode == 0, ranked.stderr
    assert "Ranked 1" in ranked.stdout and "Ranked 2" in ranked.stdout
    assert sorted(re.findall(r"candidate \d of 2", ranked.stdout)) == [
        "candidate 1 of 2",
        "candidate 2 of 2",
    ]
    assert "(delivered)" in ranked.stdout

    missing = score("-o", str(tmp_path / "x.wav"), "--structure", "reference", "--reference",
                    str(tmp_path / "nowhere.wav"))  # fmt: skip
    assert missing.returncode != 0 and "cannot read the reference audio" in missing.stderr


def test_bgm_score_refuses_what_it_cannot_make_before_it_loads_the_model(tmp_path):
    """MIDI, stems and a rate it does not make are refused naming the flag, before the model
    loads (a real checkpoint takes minutes): here the model folder does not exist, and the
    refusal is the flags'. It had loaded every model first, then said "the diffusion
    generator makes no midi" (and of the rate, "sample rate 32000 is not supported")."""
    from services.media.synth import Shot, write_video

    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0)]).path
    asked = {("--midi", str(tmp_path / "m.mid")): "makes no midi: leave out --midi",
             ("--stems", str(tmp_path / "s")): "makes no stems: leave out --stems",
             ("--sample-rate", "32000"): "makes no 32000 Hz: --sample-rate 44100"}  # fmt: skip
    for (flag, value), says in asked.items():
        model = ("--generator", "diffusion", "--generator-model", str(tmp_path / "nowhere"))
        refused = bgm("score", str(clip), "-o", str(tmp_path / "x.wav"), *model, flag, value)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr
        assert not (tmp_path / "x.wav").exists()


@pytest.fixture(scope="module")
def clip_for_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.media.synth import Shot, write_video

    folder = tmp_path_factory.mktemp("diffusion-media")
    return write_video(folder / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.0, hue=0.7)]).path


@pytest.mark.slow
def test_the_generator_server_runs_the_diffusion_backend(tiny_stable_audio, tmp_path):
    import grpc

    from services.contract import brief_to_proto
    from services.devserver import start, stop
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc

    running = start(
        tmp_path,
        tmp_path,
        which="generator",
        extra_args=("--generator", "diffusion", "--generator-model", str(tiny_stable_audio)),
    )
    try:
        with grpc.insecure_channel(running.generator) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            described = stub.Describe(generator_pb2.GeneratorDescribeRequest(), timeout=10)
            assert described.name == "diffusion"
            samples = 0
            for message in stub.Generate(
                generator_pb2.GenerateRequest(brief=brief_to_proto(brief(5.5))), timeout=120
            ):
                if message.WhichOneof("event") == "audio":
                    samples += len(message.audio.pcm_f32le) // 8
            assert samples == round(5.5 * 48000)
    finally:
        assert stop(running) == 0


def test_score_then_render_starts_each_window_from_the_composers_piece(generator):
    import dataclasses

    free = generator.generate(brief(10.7, seed=2)).audio
    guided = generator.generate(dataclasses.replace(brief(10.7, seed=2), structure="composer"))
    again = generator.generate(dataclasses.replace(brief(10.7, seed=2), structure="composer"))
    assert guided.audio.shape == free.shape
    assert np.array_equal(guided.audio, again.audio)
    assert not np.allclose(guided.audio, free)


def test_stems_asked_of_it_directly_are_refused(generator):
    """It makes no stems: a brief that asks for them (from a caller of the generator other
    than the gateway, which refuses them first) is refused, where they had been left out
    without a word."""
    import dataclasses

    with pytest.raises(InvalidInputError, match="makes no stems") as refused:
        generator.generate(dataclasses.replace(brief(5.0), stems=True))
    assert refused.value.field == "brief.stems" and refused.value.error_reason == "NOT_OFFERED"


def test_the_composer_s_structure_is_the_configured_composer_s(tiny_stable_audio, tmp_path):
    """The structure a piece starts from is played by the composer as configured (its
    defaults had stood in: a configured bank, here one that does not exist, was never
    used)."""
    missing = tmp_path / "no-such-bank.sf2"
    generator = DiffusionGenerator(DiffusionConfig(model_path=tiny_stable_audio, steps=2),
                                   ComposerConfig(soundfont_path=missing))  # fmt: skip
    import dataclasses

    with pytest.raises(BgmError, match=r"no-such-bank\.sf2"):
        generator.generate(dataclasses.replace(brief(5.0), structure="composer"))


def test_the_audio_a_piece_starts_from_counts_against_the_limit(generator):
    """The composer's piece (or a reference) a diffusion piece starts from is held beside
    it, a second track of its length: 10 s within a 15 s limit alone, refused with it."""
    import dataclasses

    from services.config import RequestLimits
    from services.edge import check_work
    from services.errors import ResourceExhaustedError

    limits = RequestLimits(max_music_s=15.0)
    free = brief(10.0)
    check_work(free.duration_s, 1, limits, generator.tracks(free))
    guided = dataclasses.replace(free, structure="composer")
    with pytest.raises(ResourceExhaustedError, match=r"x 2 tracks each: .* the audio it starts"):
        check_work(guided.duration_s, 1, limits, generator.tracks(guided))


def test_a_batch_gives_each_request_its_own_audio_in_shared_calls(generator, monkeypatch):
    import dataclasses

    from services.errors import CancelledError
    from services.generator.backend import GenerationJob

    calm = brief(6.0, seed=3)
    tense = dataclasses.replace(
        brief(6.0, seed=8),
        tags=dataclasses.replace(calm.tags, genres=["cinematic"], moods=["tense"], bpm=84),
    )
    short = brief(3.3, rate=44100, seed=5)
    alone = [generator.generate(b).audio for b in (calm, tense, short)]

    calls: list[int] = []
    render = generator.adapter.render

    def counted(requests, *args):
        calls.append(len(requests))
        return render(requests, *args)

    monkeypatch.setattr(generator.adapter, "render", counted)
    noop = lambda fraction: None  # noqa: E731
    results = generator.generate_batch([GenerationJob(b, noop) for b in (calm, tense, short)])
    for result, expected in zip(results, alone, strict=True):
        assert result.audio.shape == expected.shape
        np.testing.assert_allclose(result.audio, expected, atol=1e-4)
    assert not np.allclose(results[0].audio, results[1].audio)
    # The two 6 s pieces share their windows' calls (two windows each); the 3.3 s one is alone.
    assert sorted(calls) == [1, 2, 2]

    def cancel_early(fraction: float) -> None:
        if fraction > 0.1:
            raise CancelledError("the caller cancelled the request")

    calls.clear()
    cancelled, kept = generator.generate_batch(
        [GenerationJob(calm, cancel_early), GenerationJob(tense, noop)]
    )
    assert isinstance(cancelled, CancelledError)
    np.testing.assert_allclose(kept.audio, alone[1], atol=1e-4)


def test_candidates_come_ranked_and_each_is_its_seeds_piece(generator):
    from services.generator.candidates import candidate_jobs, ranked

    seen: list[float] = []
    base = brief(6.0, seed=20)
    results = generator.generate_batch(candidate_jobs(base, 3, seen.append))
    musics, ranking = ranked(base, results, lambda: None)
    assert len(musics) == 3 and sorted(s.rank for s in ranking) == [1, 2, 3]
    assert sorted(s.candidate for s in ranking) == [0, 1, 2]
    assert [s.score for s in ranking] == sorted((s.score for s in ranking), reverse=True)
    assert seen == sorted(seen) and seen[-1] == 1.0
    import dataclasses

    second = generator.generate(dataclasses.replace(base, seed=21)).audio
    np.testing.assert_allclose(musics[1].audio, second, atol=1e-4)


def reference_wav(tmp_path: Path, hz: float = 1.0) -> bytes:
    """A 2.5 s "melody" slow enough to survive the tiny model's 8 Hz rate."""
    from services.media.audio import write_audio_file

    rate = 48000
    t = np.arange(round(2.5 * rate)) / rate
    melody = 0.4 * np.sin(2 * np.pi * hz * t)
    path = tmp_path / "hummed.wav"
    write_audio_file(path, np.repeat(melody[:, None], 2, axis=1).astype(np.float32), rate)
    return path.read_bytes()


def test_a_reference_melody_is_the_structure(generator, tmp_path):
    import dataclasses

    from services.errors import InvalidInputError

    reference = reference_wav(tmp_path)
    free = generator.generate(brief(10.7, seed=2)).audio
    asked = dataclasses.replace(brief(10.7, seed=2), structure="reference",
                                reference_audio=reference)  # fmt: skip
    guided = generator.generate(asked).audio
    assert guided.shape == free.shape
    assert np.array_equal(guided, generator.generate(asked).audio)
    assert not np.allclose(guided, free)
    other = dataclasses.replace(asked, reference_audio=reference_wav(tmp_path, hz=3.0))
    assert not np.allclose(generator.generate(other).audio, guided)
    with pytest.raises(InvalidInputError, match="not readable audio"):
        generator.generate(dataclasses.replace(asked, reference_audio=b"not audio at all"))
    with pytest.raises(InvalidInputError, match="go together"):
        generator.generate(dataclasses.replace(asked, reference_audio=b""))


def test_a_reference_is_decoded_no_further_than_the_piece_and_hears_a_cancel():
    """A few kilobytes of FLAC can hold hours of silence: decoded whole, 20 minutes of it had
    taken 5.7 s and 1.6 GB, and a 16 MiB reference would hold days. The reference is looped
    to the piece's length, so no more of it is decoded, and the decoding hears a cancel."""
    ten_minutes = silent_flac(600.0)
    calls: list[int] = []
    audio = decode_audio_bytes(ten_minutes, 44100, 5.0, functools.partial(calls.append, 1))
    assert len(audio) == 5 * 44100
    # FLAC frames of 65,535 samples at 48 kHz, 1.37 s each.
    assert len(calls) <= 5
    heartbeat, heard = cancelling_at(2)
    with pytest.raises(CancelledError):
        decode_audio_bytes(ten_minutes, 44100, 600.0, heartbeat)
    assert len(heard) == 2


def test_the_composers_piece_a_diffusion_piece_starts_from_hears_a_cancel(generator, monkeypatch):
    """An hour's composer piece takes over a minute to render: a cancel during it stops it
    (the composer had been called without the job's progress, so it rendered on)."""
    import dataclasses

    from services.generator.backends.composer.backend import ComposerGenerator

    monkeypatch.setattr(ComposerGenerator, "render",
                        lambda *args: pytest.fail("rendered after the cancel"))  # fmt: skip

    def cancelled(fraction: float) -> None:
        raise CancelledError("the caller cancelled the request")

    with pytest.raises(CancelledError):
        generator.generate(dataclasses.replace(brief(10.7), structure="composer"), cancelled)


def test_the_composer_refuses_a_reference_structure(tmp_path):
    import dataclasses

    from services.config import ComposerConfig
    from services.errors import InvalidInputError
    from services.generator.backends.composer.backend import ComposerGenerator

    composer = ComposerGenerator(ComposerConfig())
    asked = dataclasses.replace(brief(4.0), structure="reference",
                                reference_audio=reference_wav(tmp_path))  # fmt: skip
    with pytest.raises(InvalidInputError, match="cannot follow structure 'reference'"):
        composer.generate(asked)


def test_scheduler_override_and_unknown_scheduler(tiny_stable_audio):
    config = DiffusionConfig(
        model_path=tiny_stable_audio, steps=2, scheduler="DPMSolverMultistepScheduler"
    )
    swapped = DiffusionGenerator(config, COMPOSER)
    assert isinstance(swapped.adapter, StableAudioAdapter)
    assert type(swapped.adapter.pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert swapped.generate(brief(2.0)).audio.shape == (96000, 2)
    with pytest.raises(ConfigError, match="not a diffusers scheduler"):
        DiffusionGenerator(
            DiffusionConfig(model_path=tiny_stable_audio, scheduler="Nope"), COMPOSER
        )


# Every family through the same backend: its adapter's arguments, limits and prompts.
# SONIQUE's runs in its own environment (./dev.sh test runs these tests there with -m sonique).
FAMILIES = ["stable-audio", "stable-audio-3", "audioldm2", "ace-step",
            pytest.param("sonique", marks=pytest.mark.sonique)]  # fmt: skip


class TinyModels(dict):
    """Family -> its tiny model's folder, built on first use."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, family: str) -> Path:
        from services.generator.backends.diffusion.tiny import BUILDERS

        self[family] = BUILDERS[family](self.folder)
        return self[family]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="module", params=FAMILIES)
def family_generator(request, family_models) -> DiffusionGenerator:
    # A 4 s window so that a 10.7 s piece takes several calls in every family.
    return DiffusionGenerator(
        DiffusionConfig(
            model_path=family_models[request.param], steps=3, window_s=4.0, window_overlap_s=1.0
        ),
        COMPOSER,
    )


def test_every_family_loads_from_its_folder_and_fits_the_length(family_generator):
    assert family_generator.describe().version.endswith(f"({family_generator.adapter.family})")
    for duration, rate in ((2.0, 48000), (10.7, 44100)):
        music = family_generator.generate(brief(duration, rate, seed=6))
        assert music.audio.shape == (round(duration * rate), 2)
        assert np.isfinite(music.audio).all() and np.abs(music.audio).max() > 0
        assert (len(music.plan.sections) > 1) == (duration > 4.0)
    again = family_generator.generate(brief(10.7, 44100, seed=6)).audio
    assert np.array_equal(music.audio, again)
    assert not np.allclose(family_generator.generate(brief(10.7, 44100, seed=7)).audio, again)


def test_every_family_joins_windows_without_clicks(family_generator):
    music = family_generator.generate(brief(10.7))
    step = np.abs(np.diff(music.audio, axis=0)).max(axis=1)
    typical = np.quantile(step, 0.999)
    for section in music.plan.sections[1:]:
        join = round(section.start_s * music.sample_rate)
        around = step[max(0, join - music.sample_rate // 2) : join + music.sample_rate]
        assert around.max() <= 2 * typical + 1e-6


def test_every_family_batches_candidates_and_cancels_between_steps(family_generator):
    from services.errors import CancelledError
    from services.generator.backend import GenerationJob
    from services.generator.candidates import candidate_jobs, ranked

    base = brief(6.0, seed=30)
    results = family_generator.generate_batch(candidate_jobs(base, 2, lambda f: None))
    musics, ranking = ranked(base, results, lambda: None)
    import dataclasses

    for index in (0, 1):
        alone = family_generator.generate(dataclasses.replace(base, seed=30 + index)).audio
        np.testing.assert_allclose(musics[index].audio, alone, atol=1e-4)
    assert len(ranking) == 2

    reports: list[float] = []

    def cancel(fraction: float) -> None:
        reports.append(fraction)
        if fraction > 0.2:
            raise CancelledError("the caller cancelled the request")

    [result] = family_generator.generate_batch([GenerationJob(brief(10.7), cancel)])
    assert isinstance(result, CancelledError)
    assert reports[-1] < 0.5  # stopped at the step that cancelled, not at the end


def test_every_family_renders_over_the_composer_if_it_takes_initial_audio(family_generator):
    import dataclasses

    guided_brief = dataclasses.replace(brief(10.7, seed=2), structure="composer")
    takes = family_generator.describe().structures == ("free", "composer", "reference")
    assert takes == (family_generator.adapter.family != "audioldm2")
    if not takes:
        return  # refused with a clear error: test_audioldm2_gets_a_caption_and_refuses_...
    free = family_generator.generate(brief(10.7, seed=2)).audio
    guided = family_generator.generate(guided_brief).audio
    assert guided.shape == free.shape
    assert np.array_equal(guided, family_generator.generate(guided_brief).audio)
    assert not np.allclose(guided, free)


def test_ace_step_gets_tempo_key_and_meter_as_arguments(family_models, monkeypatch):
    generator = DiffusionGenerator(
        DiffusionConfig(model_path=family_models["ace-step"], steps=2), COMPOSER
    )
    assert isinstance(generator.adapter, AceStepAdapter)
    pipeline = generator.adapter.pipeline
    seen: list[dict] = []
    original = type(pipeline).__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "__call__", spy)
    generator.generate(brief(3.0))
    [call] = seen
    assert (call["bpm"], call["keyscale"], call["timesignature"]) == (80, "C major", "4")
    assert call["lyrics"] == ["[Instrumental]"]
    assert "BPM" not in call["prompt"][0] and "ambient" in call["prompt"][0]


def test_audioldm2_gets_a_caption_and_refuses_a_structure_it_cannot_take(family_models):
    import dataclasses

    from services.errors import InvalidInputError

    generator = DiffusionGenerator(
        DiffusionConfig(model_path=family_models["audioldm2"], steps=2), COMPOSER
    )
    caption = generator.adapter.prompt(["ambient"], ["calm"], ["piano", "pads"], 80.2, "C major",
                                       "soft", "")  # fmt: skip
    assert caption == "soft calm ambient music with piano and pads, 80 bpm, in C major"
    assert generator.describe().structures == ("free",)
    with pytest.raises(InvalidInputError, match="cannot follow structure 'composer'"):
        generator.generate(dataclasses.replace(brief(3.0), structure="composer"))


def test_the_users_free_text_leads_the_prompt(generator, monkeypatch):
    import dataclasses

    seen: list[str] = []
    render = generator.adapter.render

    def spy(requests, *args):
        seen.extend(r.prompt for r in requests)
        return render(requests, *args)

    monkeypatch.setattr(generator.adapter, "render", spy)
    generator.generate(dataclasses.replace(brief(3.0), prompt="cosy baking vlog"))
    assert seen == ["cosy baking vlog, ambient, calm, soft, piano, pads, C major, 80 BPM"]


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("generator: {diffusion: {max_batch: 0}}", "max_batch"),
        ("generator: {diffusion: {window_s: -4}}", "window_s"),
        ("generator: {batching: {max_jobs: 0}}", "max_jobs"),
        ("generator: {batching: {wait_s: 10}}", "wait_s"),
    ],
)
def test_bad_diffusion_and_batching_settings_are_refused(tmp_path, yaml_text, field):
    from services.config import load_config

    path = tmp_path / "bgm.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=field):
        load_config(path)


def test_windows_under_speech_ask_for_room_and_play_quieter(generator, monkeypatch):
    import dataclasses

    from services.domain import SpeechInterval
    from services.generator.backends.diffusion.windows import Window

    spoken = dataclasses.replace(brief(10.0), speech=[SpeechInterval(0.5, 4.5)])
    talk, rest = Window(0.0, 5.0), Window(5.0, 10.0)
    assert "sparse, background" in generator._prompt(spoken, talk)
    assert "sparse" not in generator._prompt(spoken, rest)
    assert "sparse" not in generator._prompt(brief(10.0), talk)
    from services.generator.backends.diffusion import backend

    music = generator.generate(spoken)
    quiet = music.audio
    # Its plan says so, window by window (bgm score's summary had said the music played on).
    under = [s.thinning for s in music.plan.sections if s.start_s < 4.5]
    assert under and all("6 dB quieter, under speech" in t for t in under)
    assert not any(s.thinning for s in music.plan.sections if s.start_s >= 5.0)
    monkeypatch.setattr(backend, "SPEECH_QUIETER_DB", 0.0)
    loud = generator.generate(spoken).audio
    first = slice(0, int(3.0 * 48000))
    ratio = np.sqrt(np.mean(quiet[first] ** 2) / np.mean(loud[first] ** 2))
    assert ratio == pytest.approx(10 ** (-6 / 20), rel=0.02)


def test_without_the_diffusion_extra_the_install_is_named(tmp_path, monkeypatch):
    """A plain `pip install` has no diffusers: the generator says which extra to install
    (it had ended in a ModuleNotFoundError traceback)."""
    import sys

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableAudioPipeline"}))
    monkeypatch.setitem(sys.modules, "diffusers", None)  # importing it raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'bgm\[diffusion\]'"):
        DiffusionGenerator(DiffusionConfig(model_path=folder), COMPOSER)
