"""The `diffusion` generator backend: diffusers audio pipelines from a local path.

The pipeline loads once per process (one replica), through the same `from_pretrained` call a
real checkpoint takes. A piece longer than the model's window is generated in overlapping
windows joined by crossfades at cuts where the timeline allows; each window's prompt carries
the intensity of its segments. The result is resampled to the brief's rate and is exactly as
long as asked.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from services.config import ComposerConfig, DiffusionConfig
from services.domain import (
    GeneratedMusic,
    MusicBrief,
    MusicPlan,
    PlannedSection,
)
from services.errors import BgmError, ConfigError
from services.generator.backend import (
    GenerationJob,
    GeneratorInfo,
    JobResult,
    ProgressCallback,
    alone,
    cut_alignment,
    finish_jobs,
    kept,
    start_jobs,
    validate_brief,
)
from services.generator.backends import OUTPUTS, SAMPLE_RATES
from services.generator.backends.diffusion.adapters import (
    ADAPTERS,
    PipelineAdapter,
    RenderRequest,
)
from services.generator.backends.diffusion.sonique import load_sonique, sonique_config
from services.generator.backends.diffusion.windows import Window, assemble, plan_windows
from services.local_models import device_and_dtype, from_files, load_model, model_kind
from services.media.audio import decode_audio_bytes, fade_out, resample
from services.progress import Heartbeat
from services.vocabulary import load_vocabulary

VERSION = "0.1"
# A short fade at the very end: diffusion models write no cadence.
END_FADE_S = 1.0


def load_adapter(config: DiffusionConfig) -> PipelineAdapter:
    """The pipeline at `config.model_path`, behind its family's adapter, or a clear error."""
    device, dtype = device_and_dtype(
        config.device, config.dtype, prefer_bf16=False, key="generator.diffusion.device"
    )
    path = config.model_path
    sonique = sonique_config(path) if path is not None and path.is_dir() else None
    if sonique is not None:
        return load_sonique(sonique, device, dtype)
    path, class_name = model_kind(
        config.model_path, backend="diffusion",
        flag="--generator-model PATH or generator.diffusion.model_path",
        index="model_index.json", key="_class_name", supported=ADAPTERS)  # fmt: skip
    try:
        import diffusers
    except ImportError:
        # A plain install had ended here in a traceback.
        raise ConfigError("the diffusion generator needs the diffusion extra: "
                          "pip install 'bgm[diffusion]'") from None  # fmt: skip
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    models = _every_weight_loaded(path, dtype)
    pipeline = from_files(getattr(diffusers, class_name), path, dtype=dtype, **models)
    if config.scheduler:
        pipeline.scheduler = _scheduler(config.scheduler, pipeline.scheduler.config)
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return ADAPTERS[class_name](pipeline, device)


def _every_weight_loaded(path: Path, dtype: Any) -> dict[str, Any]:
    """The pipeline's models, each loaded from its folder with every weight its config asks
    for (load_model), and each tokenizer's vocabulary present; else a ConfigError. A
    tokenizer folder emptied had loaded an empty vocabulary without a word: music no prompt
    conditioned."""
    import diffusers
    import torch
    import transformers

    models = {}
    for name, spec in json.loads((path / "model_index.json").read_text()).items():
        # A component named as diffusers writes it, [library, class]; the pipeline's own load
        # (from_files) says what is wrong with any other.
        if name.startswith("_") or not (
            isinstance(spec, list) and len(spec) == 2 and all(isinstance(s, str) for s in spec)
        ):
            continue
        library, class_name = spec
        module = {"diffusers": diffusers, "transformers": transformers}.get(library) or getattr(
            diffusers.pipelines, library, None
        )
        component = getattr(module, class_name, None)
        vocabulary = getattr(component, "vocab_files_names", None)
        if vocabulary and not any((path / name / file).is_file() for file in vocabulary.values()):
            raise ConfigError(
                f"{path / name} holds no vocabulary ({' or '.join(vocabulary.values())})"
            )
        if not (isinstance(component, type) and issubclass(component, torch.nn.Module)):
            continue
        models[name] = load_model(component, path / name, dtype=dtype)
    return models


def _scheduler(name: str, checkpoint_config: Any) -> Any:
    """The named diffusers scheduler, built from the checkpoint's scheduler config."""
    import diffusers

    scheduler_class = getattr(diffusers, name, None)
    if not (isinstance(scheduler_class, type)
            and issubclass(scheduler_class, diffusers.SchedulerMixin)):  # fmt: skip
        raise ConfigError(f"{name!r} is not a diffusers scheduler class (for example "
                          "DPMSolverMultistepScheduler)")  # fmt: skip
    return scheduler_class.from_config(checkpoint_config)


# How each window's prompt names its segments' energy.
INTENSITIES = ("soft", "steady", "intense")
# A window this much under speech is asked to stay out of the voice's way, and rendered
# SPEECH_QUIETER_DB quieter (the mastering keeps the rest of the piece's level).
SPEECH_SHARE = 0.3
SPEECH_WORDS = "sparse, background"
SPEECH_QUIETER_DB = 6.0


def speech_share(brief: MusicBrief, start_s: float, end_s: float) -> float:
    """The share of [start_s, end_s] someone speaks in (the brief's speech)."""
    spoken = sum(max(0.0, min(i.end_s, end_s) - max(i.start_s, start_s)) for i in brief.speech)
    return spoken / max(end_s - start_s, 1e-9)


def _intensity(energy: float) -> str:
    soft, steady, intense = INTENSITIES
    return soft if energy < 0.3 else intense if energy > 0.65 else steady


class DiffusionGenerator:
    def __init__(self, config: DiffusionConfig, composer: ComposerConfig):
        self.config = config
        # The composer's settings (its bank, its limits) for the structure it plays.
        self.composer_config = composer
        self.vocabulary = load_vocabulary()
        self.adapter = load_adapter(config)
        self.steps = config.steps or self.adapter.default_steps
        self.guidance = (config.guidance_scale if config.guidance_scale is not None
                         else self.adapter.default_guidance)  # fmt: skip
        # Loaded on the first request that asks for the composer's structure.
        self._composer: Any = None

    def describe(self) -> GeneratorInfo:
        return GeneratorInfo(
            name="diffusion",
            version=f"{VERSION} ({self.adapter.family})",
            max_duration_s=self.config.max_duration_s,
            sample_rates=SAMPLE_RATES,
            outputs=OUTPUTS["diffusion"],
            genres=tuple(self.vocabulary.genres),
            instruments=tuple(self.vocabulary.instruments),
            structures=("free", "composer", "reference")
            if self.adapter.takes_initial_audio
            else ("free",),
            batches=True,
        )

    def _prompt(self, brief: MusicBrief, window: Window) -> str:
        tags = brief.tags
        inside = [s for s in brief.segments
                  if s.start_s < window.end_s and s.end_s > window.start_s]  # fmt: skip
        energy = float(np.mean([s.energy for s in inside])) if inside else tags.energy
        moods = list(dict.fromkeys([*tags.moods[:2], *(m for s in inside for m in s.moods)]))
        intensity, words = _intensity(energy), brief.prompt
        if speech_share(brief, window.start_s, window.end_s) >= SPEECH_SHARE:
            intensity = INTENSITIES[0]
            words = ", ".join(w for w in (SPEECH_WORDS, brief.prompt) if w)
        return self.adapter.prompt(tags.genres, moods[:3], tags.instruments, tags.bpm, tags.key,
                                   intensity, words)  # fmt: skip

    def _composer_structure(self, job: GenerationJob) -> np.ndarray:
        """The composer's cut-aligned render of the same brief, at the model's rate: the
        structure each window starts from, so the composer's timing survives. The job's
        progress stays at 0 meanwhile, and hears a cancel (an hour's piece takes over a
        minute)."""
        from services.generator.backends.composer.backend import ComposerGenerator

        if self._composer is None:
            # With the configured bank and limits (the defaults had stood in for them).
            self._composer = ComposerGenerator(self.composer_config)
        brief = job.brief
        score = self._composer.generate(dataclasses.replace(brief, stems=False),
                                        lambda _: job.progress(0.0))  # fmt: skip
        rate = self.adapter.sample_rate
        return resample(score.audio, score.sample_rate, rate, round(brief.duration_s * rate))

    def _reference_structure(self, job: GenerationJob) -> np.ndarray:
        """The user's reference recording at the model's rate, looped to the piece's length:
        no more of it is decoded than that."""
        brief = job.brief
        rate = self.adapter.sample_rate
        reference = decode_audio_bytes(brief.reference_audio, rate, brief.duration_s,
                                       Heartbeat(job.progress))  # fmt: skip
        total = round(brief.duration_s * rate)
        return np.tile(reference, (-(-total // len(reference)), 1))[:total]

    def _start(self, job: GenerationJob) -> _Piece:
        brief = job.brief
        validate_brief(brief, self.describe(), self.vocabulary)
        adapter = self.adapter
        window = min(self.config.window_s or adapter.window_s, adapter.max_window_s)
        # The overlap is at most a quarter of the window.
        overlap = min(self.config.window_overlap_s, window / 4)
        windows = plan_windows(brief.duration_s, window, overlap,
                               [c.time_s for c in brief.cuts])  # fmt: skip
        structure = None
        if brief.structure == "composer":
            structure = self._composer_structure(job)
        elif brief.structure == "reference":
            structure = self._reference_structure(job)
        rate = adapter.sample_rate
        requests = []
        for index, stretch in enumerate(windows):
            first = round(stretch.start_s * rate)
            requests.append(RenderRequest(
                prompt=self._prompt(brief, stretch),
                negative_prompt=", ".join(brief.negative),
                seconds=stretch.seconds,
                # Each window its own seed, all fixed by the request's.
                seed=brief.seed * 1009 + index,
                bpm=brief.tags.bpm,
                key=brief.tags.key,
                initial_audio=None if structure is None
                else structure[first : first + round(stretch.seconds * rate)],
                start_s=stretch.start_s,
                piece_s=brief.duration_s,
            ))  # fmt: skip
        return _Piece(job, windows, requests)

    def tracks(self, brief: MusicBrief) -> int:
        # No stems; a structure to start from is held beside the piece.
        return 2 if brief.structure in ("composer", "reference") else 1

    def generate(
        self, brief: MusicBrief, progress: ProgressCallback | None = None
    ) -> GeneratedMusic:
        return alone(self, brief, progress)

    def generate_batch(self, jobs: Sequence[GenerationJob]) -> list[JobResult]:
        """Every window of every job, rendered in as few pipeline calls as the windows' batch
        keys and `max_batch` allow; a cancelled job drops out, the others go on."""
        started = start_jobs(jobs, self._start)
        pieces = [p for p in started if isinstance(p, _Piece)]
        groups: dict[tuple[object, ...], list[tuple[_Piece, int]]] = {}
        for piece in pieces:
            for index, request in enumerate(piece.requests):
                groups.setdefault(self.adapter.batch_key(request), []).append((piece, index))
        size = self.config.max_batch
        for members in groups.values():
            for first in range(0, len(members), size):
                live = [m for m in members[first : first + size] if m[0].error is None]
                if live:
                    self._render_call(live)
        results = finish_jobs(started, self._finish)
        _release_memory()
        return results

    def _render_call(self, members: list[tuple[_Piece, int]]) -> None:
        """One pipeline call; progress goes to each piece in it."""
        adapter = self.adapter
        in_call = Counter(piece for piece, _ in members)

        def on_step(step: int, total: int) -> None:
            for piece, count in in_call.items():
                piece.report((piece.windows_done + count * step / total) / len(piece.windows))
            if all(piece.error is not None for piece in in_call):
                raise _Abandoned

        try:
            audios = adapter.render([piece.requests[i] for piece, i in members], self.steps,
                                    self.guidance, on_step)  # fmt: skip
        except _Abandoned:
            return
        for (piece, index), audio in zip(members, audios, strict=True):
            brief, window = piece.job.brief, piece.windows[index]
            samples = round(window.seconds * brief.sample_rate)
            part = resample(audio, adapter.sample_rate, brief.sample_rate, samples)
            if speech_share(brief, window.start_s, window.end_s) >= SPEECH_SHARE:
                part *= 10 ** (-SPEECH_QUIETER_DB / 20)
            piece.parts[index] = part
        for piece, count in in_call.items():
            piece.windows_done += count

    def _finish(self, piece: _Piece) -> GeneratedMusic:
        brief = piece.job.brief
        total = round(brief.duration_s * brief.sample_rate)
        # Every window is rendered: a call is abandoned only when all its pieces were cancelled.
        parts = cast(list[np.ndarray], piece.parts)
        music = assemble(parts, piece.windows, brief.sample_rate, total)
        fade_out(music, round(END_FADE_S * brief.sample_rate))
        piece.report(1.0)
        if piece.error is not None:
            raise piece.error
        return GeneratedMusic(audio=music, sample_rate=brief.sample_rate, stems={}, midi=b"",
                              plan=_plan(brief, piece.windows))  # fmt: skip


class _Abandoned(Exception):
    """Every piece in a pipeline call was cancelled: stop the call."""


class _Piece:
    """A job being generated: its windows, their requests and audio, and whether it was
    cancelled."""

    def __init__(self, job: GenerationJob, windows: list[Window], requests: list[RenderRequest]):
        self.job = job
        self.windows = windows
        self.requests = requests
        self.parts: list[np.ndarray | None] = [None] * len(windows)
        self.windows_done = 0
        self.error: BgmError | None = None

    def report(self, fraction: float) -> None:
        if self.error is not None:
            return
        try:
            self.job.progress(fraction)
        except BgmError as error:
            self.error = kept(error)


def _release_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _plan(brief: MusicBrief, windows: list[Window]) -> MusicPlan:
    """The nominal grid the model was asked for (the tempo is in the prompt; a diffusion model
    places no beat exactly), and one section per window."""
    bpm = float(brief.tags.bpm)
    period = 60.0 / bpm
    beats = list(np.arange(0.0, brief.duration_s, period))
    bars = beats[::4]
    # A window under speech says how it made room (the summary had said the music played on).
    room = f"prompted {SPEECH_WORDS!r}, {SPEECH_QUIETER_DB:g} dB quieter, under speech"
    sections = [
        PlannedSection(start_s=w.start_s, end_s=w.end_s, role="main", bpm=bpm,
                       first_beat=int(w.start_s / period), beat_count=int(w.seconds / period),
                       energy=brief.tags.energy, intensity=0,
                       instruments=list(brief.tags.instruments), chords=[],
                       thinning=room if speech_share(brief, w.start_s, w.end_s) >= SPEECH_SHARE
                       else "")
        for w in windows
    ]  # fmt: skip
    return MusicPlan(
        bpm=bpm,
        key=brief.tags.key,
        beats_s=[round(b, 6) for b in beats],
        bars_s=[round(b, 6) for b in bars],
        sections=sections,
        alignment=cut_alignment(beats, bars, brief.cuts),
        ending="fade",
        final_chord_s=brief.duration_s,
        genre=brief.tags.genres[0],
        instruments=list(brief.tags.instruments),
    )
