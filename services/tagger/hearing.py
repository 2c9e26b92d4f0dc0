"""The tagger listens to the video's own sound: where someone speaks (Silero VAD, whose
weights ship inside its PyPI package; the model runs on the CPU, a minute of audio in well
under a second) and the short-term level, read a block at a time so a two-hour track never
sits in memory whole."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.config import HearingConfig
from services.domain import LevelCurve, SpeechInterval
from services.media.audio import mono_blocks

# Silero VAD's rate (it also takes 8 kHz).
VAD_RATE = 16000
# Audio is read and judged in blocks this long; speech across a block's edge is joined.
BLOCK_S = 60.0
# The level given to digital silence.
SILENCE_DB = -120.0


@dataclass(frozen=True)
class Hearing:
    speech: list[SpeechInterval]
    loudness: LevelCurve


class Listener:
    """The VAD model, one per thread that listens: the model keeps its recurrent state
    between frames, so two analyses at once must not share one (a lock would make one
    caller's two-hour video hold up another's)."""

    def __init__(self, config: HearingConfig):
        self.config = config
        self._models = threading.local()

    def load(self) -> None:
        """Load the model now (a server does before it serves: a broken install fails at
        start-up, not on the first request). Otherwise it loads when first needed: a command
        that scores a silent video, or replaces its sound, never pays for torch and the model
        (1.5 s of every `bgm analyze` and `bgm score`)."""
        self._model()

    def _model(self) -> Any:
        model = getattr(self._models, "model", None)
        if model is None:
            from silero_vad import load_silero_vad

            model = self._models.model = load_silero_vad()
        return model

    def hear(self, path: Path, seconds: float, heartbeat: Callable[[], None]) -> Hearing:
        """Speech and sound level over the first `seconds` of the file's audio."""
        import torch
        from silero_vad import get_speech_timestamps

        config = self.config
        hop = round(VAD_RATE / config.loudness_hz)
        speech: list[SpeechInterval] = []
        levels: list[float] = []
        offset = 0.0
        tail = np.zeros(0, np.float32)
        for block in mono_blocks(path, VAD_RATE, BLOCK_S, seconds, heartbeat):
            found = get_speech_timestamps(
                torch.from_numpy(block), self._model(), threshold=config.vad_threshold,
                sampling_rate=VAD_RATE, min_speech_duration_ms=round(config.min_speech_s * 1000),
                min_silence_duration_ms=round(config.min_silence_s * 1000),
                return_seconds=False, progress_tracking_callback=lambda _: heartbeat(),
            )  # fmt: skip
            for stretch in found:
                start = offset + stretch["start"] / VAD_RATE
                end = offset + stretch["end"] / VAD_RATE
                if speech and start - speech[-1].end_s <= config.min_silence_s:
                    speech[-1] = SpeechInterval(speech[-1].start_s, end)
                else:
                    speech.append(SpeechInterval(start, end))
            joined = np.concatenate([tail, block])
            whole = len(joined) // hop * hop
            frames = joined[:whole].reshape(-1, hop)
            rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
            levels += [float(v) for v in 20 * np.log10(np.maximum(rms, 10 ** (SILENCE_DB / 20)))]
            tail = joined[whole:]
            offset += len(block) / VAD_RATE
        return Hearing(
            [SpeechInterval(round(i.start_s, 3), round(i.end_s, 3)) for i in speech],
            LevelCurve(config.loudness_hz, [round(v, 2) for v in levels]),
        )
