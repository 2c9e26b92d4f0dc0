"""One small adapter per diffusers pipeline family: its arguments, its limits, its prompts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# Called after each denoising step with (step, steps); may raise to cancel.
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RenderRequest:
    prompt: str
    negative_prompt: str
    seconds: float
    seed: int
    steps: int
    guidance_scale: float
    candidates: int
    # Audio (samples x channels, at the adapter's rate) the result starts from, e.g. the
    # composer's render of the same stretch; None = from noise alone.
    initial_audio: np.ndarray | None = None


class PipelineAdapter(Protocol):
    family: str
    default_steps: int
    default_guidance: float
    # Whether render() can start from initial audio (score-then-render).
    takes_initial_audio: bool

    @property
    def window_s(self) -> float: ...

    @property
    def sample_rate(self) -> int: ...

    def prompt(
        self,
        genres: list[str],
        moods: list[str],
        instruments: list[str],
        bpm: float,
        key: str,
        intensity: str,
        free_text: str,
    ) -> str: ...

    def render(self, request: RenderRequest, on_step: StepCallback) -> np.ndarray:
        """(candidates, samples, channels) float32 at `sample_rate`."""
        ...


class StableAudioAdapter:
    """StableAudioPipeline (Stable Audio Open 1.0): a DiT over Oobleck latents, T5 text,
    timing conditioning; up to ~47 s a call, stereo 44.1 kHz for the real checkpoint."""

    family = "stable-audio"
    default_steps = 100
    default_guidance = 7.0
    takes_initial_audio = True

    def __init__(self, pipeline: Any, device: str):
        self.pipeline = pipeline
        self.device = device

    @property
    def window_s(self) -> float:
        pipe = self.pipeline
        return float(pipe.transformer.config.sample_size * pipe.vae.hop_length
                     / pipe.vae.sampling_rate)  # fmt: skip

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vae.sampling_rate)

    def prompt(
        self,
        genres: list[str],
        moods: list[str],
        instruments: list[str],
        bpm: float,
        key: str,
        intensity: str,
        free_text: str,
    ) -> str:
        # Stable Audio was trained on comma-separated descriptions with the tempo in BPM.
        parts = [*genres, *moods, intensity, *instruments, key, f"{round(bpm)} BPM"]
        if free_text:
            parts.insert(0, free_text)
        return ", ".join(p for p in parts if p)

    def render(self, request: RenderRequest, on_step: StepCallback) -> np.ndarray:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        initial = {}
        if request.initial_audio is not None:
            waveform = torch.from_numpy(np.ascontiguousarray(request.initial_audio.T))
            initial = {
                "initial_audio_waveforms": waveform.unsqueeze(0).to(self.device),
                "initial_audio_sampling_rate": torch.tensor(self.sample_rate),
            }
        output = self.pipeline(
            **initial,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            audio_end_in_s=request.seconds,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_waveforms_per_prompt=request.candidates,
            generator=generator,
            callback=lambda step, _t, _latents: on_step(step + 1, request.steps),
            callback_steps=1,
        )
        audio = output.audios.detach().float().cpu().numpy()  # (candidates, channels, samples)
        return np.ascontiguousarray(audio.transpose(0, 2, 1)).astype(np.float32)


# Pipeline class name -> adapter. Others (AudioLDM2Pipeline, AceStepPipeline, ...) join here.
ADAPTERS: dict[str, Callable[[Any, str], PipelineAdapter]] = {
    "StableAudioPipeline": StableAudioAdapter,
}
