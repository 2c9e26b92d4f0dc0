"""Mastering: ducking under the original sound, loudness to a LUFS target, true-peak limit.

Loudness is measured with pyloudnorm (ITU-R BS.1770-4). True peak is the peak of the signal
oversampled four times, as BS.1770 specifies; a look-ahead limiter keeps it under the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, upfirdn

TRUE_PEAK_OVERSAMPLING = 4
# Ducking: the music drops by up to DUCK_DEPTH_DB where the original's short-term level rises
# from DUCK_THRESHOLD_DB to DUCK_THRESHOLD_DB + DUCK_RANGE_DB (speech sits well above it).
DUCK_THRESHOLD_DB = -45.0
DUCK_RANGE_DB = 12.0
DUCK_DEPTH_DB = 14.0


@dataclass(frozen=True)
class LoudnessReport:
    integrated_lufs: float
    true_peak_dbtp: float
    target_lufs: float
    true_peak_limit_dbtp: float
    # Total gain applied to the music, and whether the limiter had to act.
    gain_db: float
    limited: bool
    ducked: bool


def _db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-12)))


def _oversampling_filter() -> np.ndarray:
    # A 48-tap interpolation filter for 4x oversampling, as in BS.1770-4 Annex 2.
    return (firwin(48, 1.0 / TRUE_PEAK_OVERSAMPLING) * TRUE_PEAK_OVERSAMPLING).astype(np.float32)


_FILTER = _oversampling_filter()


def peak_envelope(audio: np.ndarray, block: int = 1 << 18) -> np.ndarray:
    """Per sample, the largest absolute value of the 4x oversampled signal around it.

    Worked out a block at a time (with the filter's reach of overlap), so a two-hour piece
    never needs its four-times-longer oversampled copy in memory."""
    reach = len(_FILTER)
    delay = (len(_FILTER) - 1) // 2
    envelope = np.abs(audio).max(axis=1).astype(np.float32)
    for start in range(0, len(audio), block):
        lo, hi = max(0, start - reach), min(len(audio), start + block + reach)
        for channel in range(audio.shape[1]):
            up = upfirdn(_FILTER, audio[lo:hi, channel], up=TRUE_PEAK_OVERSAMPLING)
            phases = np.abs(up[delay : delay + (hi - lo) * TRUE_PEAK_OVERSAMPLING]).reshape(
                hi - lo, TRUE_PEAK_OVERSAMPLING
            )[start - lo : start - lo + min(block, len(audio) - start)]
            target = envelope[start : start + len(phases)]
            # Column-wise maxima: much faster than a reduction along the short axis.
            for phase in range(TRUE_PEAK_OVERSAMPLING):
                np.maximum(target, phases[:, phase], out=target)
    return envelope


def true_peak(audio: np.ndarray) -> float:
    """Largest absolute value of the 4x oversampled signal (linear)."""
    return float(peak_envelope(audio).max()) if audio.size else 0.0


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    # BS.1770 gating needs at least one 400 ms block.
    if len(audio) < int(0.4 * rate):
        audio = np.concatenate([audio, np.zeros((int(0.4 * rate) - len(audio), 2), audio.dtype)])
    return float(pyloudnorm.Meter(rate).integrated_loudness(audio))


def _smooth(gain: np.ndarray, rate: int, attack_s: float, release_s: float) -> np.ndarray:
    """A smooth gain curve that never exceeds `gain`: each dip is reached `attack_s` early
    (look-ahead) and recovered from over about `release_s`."""
    look = max(1, int(attack_s * rate))
    held = minimum_filter1d(gain, size=2 * look + 1, mode="nearest")
    release = max(1, int(release_s * rate))
    reduction = maximum_filter1d(1.0 - held, size=release, mode="nearest")
    smoothed = 1.0 - uniform_filter1d(reduction, size=release, mode="nearest")
    return np.minimum(held, smoothed)


def ducking_gain(original: np.ndarray, rate: int, samples: int) -> np.ndarray:
    """Per-sample gain for the music: lowered where the original is loud (speech)."""
    hop = max(1, rate // 100)
    frames = len(original) // hop + 1
    padded = np.zeros((frames * hop, 2), np.float32)
    padded[: len(original)] = original
    power = np.mean(padded.reshape(frames, hop, 2) ** 2, axis=(1, 2))
    # Short-term level over ~300 ms.
    level = 10 * np.log10(np.convolve(power, np.ones(30) / 30, mode="same") + 1e-12)
    amount = np.clip((level - DUCK_THRESHOLD_DB) / DUCK_RANGE_DB, 0.0, 1.0)
    gain_db = -DUCK_DEPTH_DB * amount
    gain = 10 ** (gain_db / 20.0)
    # Duck quickly (50 ms) and come back slowly (500 ms).
    gain = _smooth(gain, 100, attack_s=0.05, release_s=0.5)
    return np.repeat(gain, hop)[:samples].astype(np.float32)


@dataclass(frozen=True)
class Mastered:
    audio: np.ndarray
    # Per-sample gain the music (and so each stem) received: ducking times loudness/limiter.
    music_gain: np.ndarray
    report: LoudnessReport


def master(
    music: np.ndarray,
    rate: int,
    target_lufs: float,
    true_peak_limit_db: float = -1.0,
    original: np.ndarray | None = None,
) -> Mastered:
    """Loudness-normalised, true-peak-limited audio of exactly the input's length; with
    `original`, the music is ducked under it and the two are mixed."""
    duck = ducking_gain(original, rate, len(music)) if original is not None else None
    audio = (
        music * duck[:, None] + original if duck is not None and original is not None else (music)
    )
    audio = audio.astype(np.float32)
    measured = integrated_loudness(audio, rate)
    if not np.isfinite(measured):
        # Digital silence: nothing to normalise.
        report = LoudnessReport(
            measured, _db(0.0), target_lufs, true_peak_limit_db, 0.0, False, duck is not None
        )
        return Mastered(audio, np.ones(len(audio), np.float32), report)
    # The oversampled peak envelope is measured once; gains are smooth, so the peak after a
    # gain is the envelope times that gain. A small margin covers what smoothing leaves.
    envelope = peak_envelope(audio)
    ceiling = 10 ** ((true_peak_limit_db - 0.1) / 20.0)
    gain_db = target_lufs - measured
    limited = False
    result = audio
    gain = np.ones(len(audio), np.float32)
    for _ in range(6):
        scale = 10 ** (gain_db / 20.0)
        needed = np.minimum(1.0, ceiling / np.maximum(envelope * scale, 1e-12))
        gain = np.full(len(audio), scale, dtype=np.float32)
        if needed.min() < 1.0:
            limited = True
            gain *= _smooth(needed, rate, attack_s=0.0015, release_s=0.08).astype(np.float32)
        result = (audio * gain[:, None]).astype(np.float32)
        measured = integrated_loudness(result, rate)
        if abs(measured - target_lufs) <= 0.05:
            break
        # Limiting lowered the loudness: raise the gain by what is missing and limit again.
        gain_db += target_lufs - measured
    report = LoudnessReport(
        integrated_lufs=round(float(measured), 2),
        true_peak_dbtp=round(_db(true_peak(result)), 2),
        target_lufs=target_lufs,
        true_peak_limit_dbtp=true_peak_limit_db,
        gain_db=round(gain_db, 2),
        limited=limited,
        ducked=duck is not None,
    )
    music_gain = gain * duck if duck is not None else gain
    return Mastered(result, music_gain.astype(np.float32), report)
