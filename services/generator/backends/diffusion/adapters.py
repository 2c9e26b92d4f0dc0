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
    # Where the window lies in its piece (seconds): for models with timing conditioning.
    start_s: float = 0.0
    piece_s: float = 0.0


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


def _initial_waveforms(requests: list[RenderRequest], device: str) -> Any:
    """The requests' initial audio as one (batch, channels, samples) tensor on `device`."""
    import torch

    waveforms = [r.initial_audio.T for r in requests if r.initial_audio is not None]
    return torch.from_numpy(np.ascontiguousarray(np.stack(waveforms))).to(device)


def _waveforms(audios: Any) -> list[np.ndarray]:
    """(batch, channels, samples) tensor -> per waveform float32 (samples, channels)."""
    array = audios.detach().float().cpu().numpy()
    return [np.ascontiguousarray(one.T).astype(np.float32) for one in array]


def _comma_prompt(parts: list[str], free_text: str) -> str:
    return ", ".join(p for p in ([free_text] if free_text else []) + parts if p)


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
        return _comma_prompt([*genres, *moods, intensity, *instruments, key,
                              f"{round(bpm)} BPM"], free_text)  # fmt: skip

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
            initial = {
                "initial_audio_waveforms": _initial_waveforms(requests, self.device),
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


class AudioLDM2Adapter:
    """AudioLDM2Pipeline (AudioLDM 2, e.g. audioldm2-music): a latent-diffusion U-Net over mel
    spectrograms conditioned on CLAP and T5 through a GPT-2, as in SONIQUE; trained on 10 s
    clips; mono 16 kHz (made stereo here). No initial audio."""

    family = "audioldm2"
    default_steps = 200
    default_guidance = 3.5
    takes_initial_audio = False
    # What its model card puts in every negative prompt.
    QUALITY_NEGATIVE = "Low quality."

    def __init__(self, pipeline: Any, device: str):
        self.pipeline = pipeline
        self.device = device
        vocoder = pipeline.vocoder.config
        # Lengths the pipeline makes exactly: whole latent frames of the spectrogram.
        self._frame_s = (pipeline.vae_scale_factor * float(np.prod(vocoder.upsample_rates))
                         / vocoder.sampling_rate)  # fmt: skip

    @property
    def window_s(self) -> float:
        return 10.24

    @property
    def max_window_s(self) -> float:
        # Longer calls run, but far past its training length the music loses its form.
        return 30.0

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vocoder.config.sampling_rate)

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
        # AudioLDM 2 was trained on captions: a sentence, not a tag list.
        sentence = f"{' '.join([intensity, *moods, *genres])} music"
        if instruments:
            sentence += f" with {' and '.join(instruments)}"
        sentence += f", {round(bpm)} bpm, in {key}"
        return f"{free_text}. {sentence}" if free_text else sentence

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        # Its GPT-2 writes conditioning over the padded T5 tokens of the whole batch, so only
        # identical prompts share a call without changing each other's music.
        return (round(request.seconds * self.sample_rate), request.prompt,
                request.negative_prompt)  # fmt: skip

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:
        seconds = float(np.ceil(requests[0].seconds / self._frame_s) * self._frame_s)
        negatives = [", ".join(filter(None, [r.negative_prompt, self.QUALITY_NEGATIVE]))
                     for r in requests]  # fmt: skip
        output = self.pipeline(
            prompt=[r.prompt for r in requests],
            negative_prompt=negatives,
            audio_length_in_s=seconds,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=_generators(requests),
            callback=lambda step, _t, _latents: on_step(step + 1, steps),
            callback_steps=1,
            output_type="np",
        )
        return [np.repeat(np.asarray(one, dtype=np.float32)[:, None], 2, axis=1)
                for one in output.audios]  # fmt: skip


class AceStepAdapter:
    """AceStepPipeline (ACE-Step 1.5): a flow-matching DiT over Oobleck latents with a Qwen3
    text encoder; tempo, key and time signature are explicit inputs, not prompt words; up to
    10 minutes a call, stereo 48 kHz for the real checkpoint. Initial audio goes in through
    its "cover" task (source audio quantised to codes that keep its timing), which needs the
    checkpoint's audio tokenizer."""

    family = "ace-step"
    default_guidance = 7.0
    # The background music is instrumental; "[Instrumental]" is how ACE-Step was trained to
    # be told so.
    LYRICS = "[Instrumental]"
    # Every piece in 4/4: the composer and the brief's beat grid assume it.
    TIME_SIGNATURE = "4"

    def __init__(self, pipeline: Any, device: str):
        self.pipeline = pipeline
        self.device = device
        # Turbo checkpoints are distilled to 8 steps; base and SFT ones want more.
        self.default_steps = 8 if pipeline.is_turbo else 50
        self.takes_initial_audio = pipeline.audio_tokenizer is not None

    @property
    def window_s(self) -> float:
        # Four minutes a call keeps memory modest; the model makes up to ten.
        return 240.0

    @property
    def max_window_s(self) -> float:
        return 600.0

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.sample_rate)

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
        # A caption of style tags; tempo and key travel as metadata (see render).
        return _comma_prompt([*genres, *moods, intensity, *instruments], free_text)

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        # Tempo, key and length are per call. The prompt too: ACE-Step's cross-attention has
        # no padding mask, so a shorter prompt padded in a batch would change its music.
        return (round(request.seconds * self.sample_rate), round(request.bpm), request.key,
                request.prompt, request.initial_audio is None)  # fmt: skip

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:
        import torch

        first = requests[0]
        arguments: dict[str, Any] = {"audio_duration": first.seconds}
        if first.initial_audio is not None:
            arguments = {"task_type": "cover", "audio_duration": None,
                         "src_audio": _initial_waveforms(requests, self.device)}  # fmt: skip
        # Encoding the source audio samples from torch's global generator: seed it from the
        # request, without disturbing anyone else's use of it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(first.seed)
            output = self.pipeline(
                **arguments,
                prompt=[r.prompt for r in requests],
                lyrics=[self.LYRICS] * len(requests),
                vocal_language=["unknown"] * len(requests),
                bpm=round(first.bpm),
                keyscale=first.key,
                timesignature=self.TIME_SIGNATURE,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=_generators(requests),
                callback=lambda step, _t, _latents: on_step(step + 1, steps),
                callback_steps=1,
            )
        return _waveforms(output.audios)


class StableAudio3Adapter:
    """StableAudio3Pipeline (Stable Audio 3): a DiT over SAME latents with a T5Gemma text
    encoder and duration conditioning; the distilled checkpoints sample in 8 steps without
    guidance, the base ones in 100 with it; stereo 44.1 kHz. Initial audio goes in through
    StableAudio3AudioToAudioPipeline on the same components."""

    family = "stable-audio-3"
    takes_initial_audio = True
    # How much noise covers the initial audio (1 = none of it survives): enough to let the
    # model write its own sound, little enough to keep the structure's timing.
    STRUCTURE_NOISE = 0.7

    def __init__(self, pipeline: Any, device: str):
        self.pipeline = pipeline
        self.device = device
        distilled = bool(pipeline.scheduler.config.get("stochastic_sampling", False))
        self.default_steps = 8 if distilled else 100
        self.default_guidance = 1.0 if distilled else 7.0
        self._audio_to_audio: Any = None

    @property
    def window_s(self) -> float:
        return min(120.0, self.max_window_s)

    @property
    def max_window_s(self) -> float:
        # The duration conditioning saturates here (384 s for the medium model).
        return float(self.pipeline.duration_embedder.config.max_val)

    @property
    def sample_rate(self) -> int:
        return int(self.pipeline.vae.config.sampling_rate)

    # Described the way Stable Audio Open was: comma-separated tags, key and tempo.
    prompt = StableAudioAdapter.prompt

    def batch_key(self, request: RenderRequest) -> tuple[object, ...]:
        return (round(request.seconds * self.sample_rate), request.initial_audio is None)

    def render(
        self, requests: list[RenderRequest], steps: int, guidance: float, on_step: StepCallback
    ) -> list[np.ndarray]:

        def callback(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1, steps)
            return tensors

        common = {
            "prompt": [r.prompt for r in requests],
            "duration": requests[0].seconds,
            "num_inference_steps": steps,
            "generator": _generators(requests),
            "callback_on_step_end": callback,
        }
        if requests[0].initial_audio is None:
            output = self.pipeline(
                **common,
                guidance_scale=guidance,
                negative_prompt=[r.negative_prompt for r in requests] if guidance > 1 else None,
            )
        else:
            if self._audio_to_audio is None:
                from diffusers import StableAudio3AudioToAudioPipeline

                self._audio_to_audio = StableAudio3AudioToAudioPipeline.from_pipe(self.pipeline)
                self._audio_to_audio.set_progress_bar_config(disable=True)
            output = self._audio_to_audio(
                **common,
                audio=_initial_waveforms(requests, self.device),
                init_noise_level=self.STRUCTURE_NOISE,
            )
        return _waveforms(output.audios)


# Pipeline class name -> adapter.
ADAPTERS: dict[str, Callable[[Any, str], PipelineAdapter]] = {
    "StableAudioPipeline": StableAudioAdapter,
    "AudioLDM2Pipeline": AudioLDM2Adapter,
    "AceStepPipeline": AceStepAdapter,
    "StableAudio3Pipeline": StableAudio3Adapter,
}
