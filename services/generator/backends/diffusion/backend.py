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
from typing import Any

import numpy as np

from services.config import DiffusionConfig
from services.domain import (
    CutAlignment,
    GeneratedMusic,
    MusicBrief,
    MusicPlan,
    PlannedSection,
)
from services.errors import ConfigError, InvalidInputError
from services.generator.backend import GeneratorInfo, ProgressCallback, validate_brief
from services.generator.backends.diffusion.adapters import (
    ADAPTERS,
    PipelineAdapter,
    RenderRequest,
)
from services.generator.backends.diffusion.windows import Window, assemble, plan_windows
from services.media.audio import resample
from services.tagger.vocabulary import load_vocabulary

VERSION = "0.1"
# A short fade at the very end: diffusion models write no cadence.
END_FADE_S = 1.0


def _device_and_dtype(config: DiffusionConfig) -> tuple[str, Any]:
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if config.dtype == "auto":
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, config.dtype)
    return device, dtype


def load_adapter(config: DiffusionConfig) -> PipelineAdapter:
    """The pipeline at `config.model_path`, behind its family's adapter, or a clear error."""
    path = config.model_path
    if path is None:
        raise ConfigError("the diffusion backend needs a model path (--generator-model PATH or "
                          "generator.diffusion.model_path)")  # fmt: skip
    if not path.is_dir():
        raise ConfigError(f"diffusion model path {path} does not exist or is not a folder")
    index = path / "model_index.json"
    if not index.is_file():
        raise ConfigError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    try:
        class_name = json.loads(index.read_text())["_class_name"]
    except (ValueError, KeyError):
        raise ConfigError(f"{index} is unreadable or names no pipeline class") from None
    if class_name not in ADAPTERS:
        raise ConfigError(f"{path} holds a {class_name}; supported pipelines: "
                          f"{', '.join(sorted(ADAPTERS))}")  # fmt: skip
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    device, dtype = _device_and_dtype(config)
    try:
        pipeline = getattr(diffusers, class_name).from_pretrained(
            str(path), torch_dtype=dtype, local_files_only=True
        )
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is incomplete or damaged: {error}") from None
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return ADAPTERS[class_name](pipeline, device)


def _intensity(energy: float) -> str:
    return "soft" if energy < 0.3 else "intense" if energy > 0.65 else "steady"


class DiffusionGenerator:
    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.vocabulary = load_vocabulary()
        self.adapter = load_adapter(config)
        # Loaded on the first request that asks for the composer's structure.
        self._composer: Any = None

    def describe(self) -> GeneratorInfo:
        return GeneratorInfo(
            name="diffusion",
            version=f"{VERSION} ({self.adapter.family})",
            max_duration_s=self.config.max_duration_s,
            sample_rates=(44100, 48000),
            outputs=("audio", "plan"),
            genres=tuple(self.vocabulary.genres),
            instruments=tuple(self.vocabulary.instruments),
        )

    def _prompt(self, brief: MusicBrief, window: Window) -> str:
        tags = brief.tags
        inside = [s for s in brief.segments
                  if s.start_s < window.end_s and s.end_s > window.start_s]  # fmt: skip
        energy = float(np.mean([s.energy for s in inside])) if inside else tags.energy
        moods = list(dict.fromkeys([*tags.moods[:2], *(m for s in inside for m in s.moods)]))
        return self.adapter.prompt(tags.genres, moods[:3], tags.instruments, tags.bpm, tags.key,
                                   _intensity(energy), "")  # fmt: skip

    def _composer_structure(self, brief: MusicBrief) -> np.ndarray:
        """The composer's cut-aligned render of the same brief, at the model's rate: the
        structure each window starts from, so the composer's timing survives."""
        if not self.adapter.takes_initial_audio:
            raise InvalidInputError(
                f"structure 'composer' needs a pipeline that starts from initial audio; "
                f"{self.adapter.family} does not"
            )
        from services.config import ComposerConfig
        from services.generator.backends.composer.backend import ComposerGenerator

        if self._composer is None:
            self._composer = ComposerGenerator(ComposerConfig())
        score = self._composer.generate(dataclasses.replace(brief, stems=False))
        rate = self.adapter.sample_rate
        return resample(score.audio, score.sample_rate, rate, round(brief.duration_s * rate))

    def generate(
        self, brief: MusicBrief, progress: ProgressCallback | None = None
    ) -> GeneratedMusic:
        validate_brief(brief, self.describe(), self.vocabulary)
        report = progress or (lambda fraction: None)
        adapter = self.adapter
        # The overlap is at most a quarter of the model's window.
        overlap = min(self.config.window_overlap_s, adapter.window_s / 4)
        windows = plan_windows(brief.duration_s, adapter.window_s, overlap,
                               [c.time_s for c in brief.cuts])  # fmt: skip
        steps = self.config.steps or adapter.default_steps
        guidance = (self.config.guidance_scale if self.config.guidance_scale is not None
                    else adapter.default_guidance)  # fmt: skip
        structure = self._composer_structure(brief) if brief.structure == "composer" else None
        parts = []
        for index, window in enumerate(windows):
            request = RenderRequest(
                prompt=self._prompt(brief, window),
                negative_prompt=", ".join(brief.negative),
                seconds=window.seconds,
                # Each window its own seed, all fixed by the request's.
                seed=brief.seed * 1009 + index,
                steps=steps,
                guidance_scale=guidance,
                candidates=1,
                initial_audio=None
                if structure is None
                else structure[
                    round(window.start_s * adapter.sample_rate) : round(
                        window.start_s * adapter.sample_rate
                    )
                    + round(window.seconds * adapter.sample_rate)
                ],
            )

            def on_step(step: int, total: int, index: int = index) -> None:
                report((index + step / total) / len(windows))

            audio = adapter.render(request, on_step)[0]
            samples = round(window.seconds * brief.sample_rate)
            parts.append(resample(audio, adapter.sample_rate, brief.sample_rate, samples))
        total = round(brief.duration_s * brief.sample_rate)
        music = assemble(parts, windows, brief.sample_rate, total)
        fade = min(total, round(END_FADE_S * brief.sample_rate))
        music[total - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
        _release_memory()
        report(1.0)
        return GeneratedMusic(audio=music, sample_rate=brief.sample_rate, stems={}, midi=b"",
                              plan=_plan(brief, windows))  # fmt: skip


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
    distances = [float(np.min(np.abs(np.array(beats) - c.time_s))) * 1000 for c in brief.cuts]
    sections = [
        PlannedSection(start_s=w.start_s, end_s=w.end_s, role="main", bpm=bpm,
                       first_beat=int(w.start_s / period), beat_count=int(w.seconds / period),
                       energy=brief.tags.energy, intensity=0,
                       instruments=list(brief.tags.instruments), chords=[])
        for w in windows
    ]  # fmt: skip
    return MusicPlan(
        bpm=bpm,
        key=brief.tags.key,
        beats_s=[round(b, 6) for b in beats],
        bars_s=[round(b, 6) for b in bars],
        sections=sections,
        alignment=CutAlignment(
            cut_count=len(distances),
            on_beat_count=sum(d <= 5.0 for d in distances),
            on_bar_count=0,
            median_ms=round(float(np.median(distances)), 3) if distances else 0.0,
            worst_ms=round(max(distances), 3) if distances else 0.0,
        ),
        ending="fade",
        final_chord_s=brief.duration_s,
        genre=brief.tags.genres[0],
        instruments=list(brief.tags.instruments),
    )
