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
    """One waveform of one pipeline call: a window of one piece."""

    prompt: str
    negative_prompt: str
    seconds: float
    seed: int
    bpm: float
    key: str
    # Audio (samples x channels, at the adapter's rate) the result starts from: the
    # composer's render or the user's reference for the same stretch; None = noise alone.
    initial_audio: np.ndarray | None = None


class PipelineAdapter(Protocol):
    family: str
    default_steps: int
    default_guidance: float
    # Whether render() can start from initial audio (score-then-render).
    takes_initial_audio: bool

    @property
    def window_s(self) -> float:
        """The stretch one call makes by default (what the family was trained on)."""
        ...

    @property
    def max_window_s(self) -> float:
        """The longest stretch one call can make."""
        ...

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

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        """Requests with equal keys can share one pipeline call."""
        ...

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:
        """One pipeline call for requests with equal batch keys: per request, float32
        (samples, channels) at `sample_rate`, from its own seed whatever else is in the
        call."""
        ...


def _generators(requests: list[RenderRequest]) -> list[Any]:
    """One torch generator per waveform, so each one's noise depends on its seed alone."""
    import torch

    return [torch.Generator(device="cpu").manual_seed(r.seed) for r in requests]


def _waveforms(audios: Any) -> list[np.ndarray]:
    """(batch, channels, samples) tensor -> per waveform float32 (samples, channels)."""
    array = audios.detach().float().cpu().numpy()
    return [np.ascontiguousarray(one.T).astype(np.float32) for one in array]


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

    @property
    def max_window_s(self) -> float:
        return self.window_s

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        # The call's length (timing conditioning) and initial audio are per call.
        return (round(request.seconds * self.sample_rate), request.initial_audio is None)

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:
        import torch

        initial = {}
        if requests[0].initial_audio is not None:
            waveforms = np.stack([np.ascontiguousarray(r.initial_audio.T)
                                  for r in requests if r.initial_audio is not None])  # fmt: skip
            initial = {
                "initial_audio_waveforms": torch.from_numpy(waveforms).to(self.device),
                "initial_audio_sampling_rate": torch.tensor(self.sample_rate),
            }
        output = self.pipeline(
            **initial,
            prompt=[r.prompt for r in requests],
            negative_prompt=[r.negative_prompt for r in requests],
            audio_end_in_s=requests[0].seconds,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=_generators(requests),
            callback=lambda step, _t, _latents: on_step(step + 1, steps),
            callback_steps=1,
        )
        return _waveforms(output.audios)


# Pipeline class name -> adapter.
ADAPTERS: dict[str, Callable[[Any, str], PipelineAdapter]] = {
    "StableAudioPipeline": StableAudioAdapter,
}
