"""Mastering: ducking under the original sound, loudness to a LUFS target, true-peak limit.

Loudness is measured by ITU-R BS.1770-4 as pyloudnorm measures it (media/loudness.py). True
peak is the peak of the signal oversampled four times, as BS.1770 specifies; a look-ahead
limiter keeps it under the ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, upfirdn

from services.domain import SpeechInterval
from services.media.loudness import integrated_loudness

TRUE_PEAK_OVERSAMPLING = 4
OVERSAMPLING_TAPS = 129
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


def db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-12)))


def _oversampling_filter() -> np.ndarray:
    # The interpolation filter for 4x oversampling. BS.1770-4 Annex 2's example has 48 taps,
    # but a 48-tap design falls off above 17 kHz (at 48 kHz) and read a bright guitar strum
    # 0.2 dB under its true peak, so a "-1 dBTP" master measured -0.92 elsewhere. This one
    # is flat (within 0.01 dB) to 21 kHz, and of odd length, so its delay is whole samples.
    taps = firwin(OVERSAMPLING_TAPS, 1.0 / TRUE_PEAK_OVERSAMPLING, window=("kaiser", 8.0))
    return (taps * TRUE_PEAK_OVERSAMPLING).astype(np.float32)


_FILTER = _oversampling_filter()


# Samples of the peak envelope worked out between heartbeats (about 0.1 s of work).
PEAK_BLOCK = 1 << 16


def _nothing() -> None:
    pass


def peak_envelope(audio: np.ndarray, heartbeat: Callable[[], None] = _nothing) -> np.ndarray:
    """Per sample, the largest absolute value of the 4x oversampled signal around it.

    Worked out a block of PEAK_BLOCK samples at a time (with the filter's reach of overlap),
    so a two-hour piece never needs its four-times-longer oversampled copy in memory."""
    block = PEAK_BLOCK
    reach = len(_FILTER)
    delay = (len(_FILTER) - 1) // 2
    envelope = np.empty(len(audio), dtype=np.float32)
    for start in range(0, len(audio), block):
        heartbeat()
        np.abs(audio[start : start + block]).max(axis=1, out=envelope[start : start + block])
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


def streamed_true_peak(
    blocks: Iterable[np.ndarray], heartbeat: Callable[[], None] = _nothing
) -> float:
    """The largest 4x oversampled absolute value of consecutive blocks (samples x 2), each
    sample measured once, with the filter's reach of samples either side of it."""
    reach = len(_FILTER)
    peak = 0.0
    # Samples already counted (the context before) and those not yet counted.
    before = np.zeros((0, 2), np.float32)
    pending = np.zeros((0, 2), np.float32)
    for block in blocks:
        joined = np.concatenate([before, pending, block])
        counted_to = len(joined) - reach
        if counted_to > len(before):
            envelope = peak_envelope(joined, heartbeat)
            peak = max(peak, float(envelope[len(before) : counted_to].max()))
            before = joined[max(0, counted_to - reach) : counted_to]
            pending = joined[counted_to:]
        else:
            pending = joined[len(before) :]
    if len(pending):
        joined = np.concatenate([before, pending])
        peak = max(peak, float(peak_envelope(joined, heartbeat)[len(before) :].max()))
    return peak


def _smooth(gain: np.ndarray, rate: int, attack_s: float, release_s: float) -> np.ndarray:
    """A smooth gain curve that never exceeds `gain`: each dip is reached `attack_s` early
    (look-ahead) and recovered from over about `release_s`."""
    look = max(1, int(attack_s * rate))
    held = minimum_filter1d(gain, size=2 * look + 1, mode="nearest")
    release = max(1, int(release_s * rate))
    reduction = maximum_filter1d(1.0 - held, size=release, mode="nearest")
    smoothed = 1.0 - uniform_filter1d(reduction, size=release, mode="nearest")
    return np.minimum(held, smoothed)


def ducking_gain(
    original: np.ndarray, rate: int, samples: int, heartbeat: Callable[[], None] = _nothing
) -> np.ndarray:
    """Per-sample gain for the music: lowered where the original is loud (speech)."""
    hop = max(1, rate // 100)
    frames = -(-len(original) // hop)
    power = np.zeros(frames)
    # Ten seconds of 10 ms frames at a time: a chunk's squares (in float64) are its only
    # copy (a minute's, padded and squared, had been three: 2.2 times a two-minute sound).
    for start in range(0, frames, 1000):
        heartbeat()
        part = original[start * hop : (start + 1000) * hop]
        squares = np.square(part, dtype=np.float64)
        whole = len(part) // hop
        power[start : start + whole] = squares[: whole * hop].reshape(whole, -1).mean(axis=1)
        if len(part) > whole * hop:
            # The last frame, short, is averaged as if padded with silence.
            power[start + whole] = squares[whole * hop :].sum() / (hop * part.shape[1])
    # Short-term level over ~300 ms.
    level = 10 * np.log10(np.convolve(power, np.ones(30) / 30, mode="same") + 1e-12)
    amount = np.clip((level - DUCK_THRESHOLD_DB) / DUCK_RANGE_DB, 0.0, 1.0)
    gain = 10 ** (-DUCK_DEPTH_DB * amount / 20.0)
    # Duck quickly (50 ms) and come back slowly (500 ms).
    gain = _smooth(gain, 100, attack_s=0.05, release_s=0.5)
    return np.repeat(gain.astype(np.float32), hop)[:samples]


@dataclass(frozen=True)
class SpeechDucking:
    """Duck the music under speech (not under other loud sounds): down by `depth_db` from
    `lookahead_s` before each spoken stretch (so it has dipped by the first word), back over
    `release_s` after it; with `carve`, only the voice's band (VOICE_BAND_HZ) of the music
    dips, the rest plays on."""

    intervals: list[SpeechInterval]
    depth_db: float
    lookahead_s: float
    release_s: float
    carve: bool


# The band a voice's intelligibility lives in, carved out of the music under speech.
VOICE_BAND_HZ = (1000.0, 4000.0)
# The control rate of ducking curves (gain points per second).
DUCK_CONTROL_HZ = 100


def speech_gain(ducking: SpeechDucking, rate: int, samples: int) -> np.ndarray:
    """Per-sample gain (or, with carving, the voice band's gain) under ducking's speech."""
    hop = max(1, rate // DUCK_CONTROL_HZ)
    frames = -(-samples // hop)
    gain = np.ones(frames)
    floor = 10 ** (-ducking.depth_db / 20.0)
    for interval in ducking.intervals:
        first = max(0, int(interval.start_s * DUCK_CONTROL_HZ))
        last = min(frames, int(np.ceil(interval.end_s * DUCK_CONTROL_HZ)))
        gain[first:last] = floor
    gain = _smooth(gain, DUCK_CONTROL_HZ, ducking.lookahead_s, ducking.release_s)
    return np.repeat(gain.astype(np.float32), hop)[:samples]


def _carve(music: np.ndarray, band_gain: np.ndarray, depth_db: float, rate: int,
           heartbeat: Callable[[], None]) -> np.ndarray:  # fmt: skip
    """The music with its voice band cut where `band_gain` dips: a peaking cut of `depth_db`
    across VOICE_BAND_HZ (pedalboard), crossfaded in by how far the gain has dipped; a chunk
    at a time with the filter's state carried across."""
    from pedalboard import PeakFilter, Pedalboard

    low, high = VOICE_BAND_HZ
    centre = float(np.sqrt(low * high))
    # Two octaves wide at its half-depth points.
    board = Pedalboard([PeakFilter(cutoff_frequency_hz=centre, gain_db=-depth_db, q=0.7)])
    floor = 10 ** (-depth_db / 20.0)
    out = np.empty_like(music)
    for start in range(0, len(music), CHUNK):
        heartbeat()
        part = music[start : start + CHUNK]
        wet = board(np.ascontiguousarray(part.T), rate, reset=False).T
        dry = (band_gain[start : start + len(part), None] - floor) / max(1.0 - floor, 1e-9)
        out[start : start + len(part)] = dry * part + (1.0 - dry) * wet
    return out


# Limiter timing: gain falls LIMITER_ATTACK_S ahead of a peak, recovers over LIMITER_RELEASE_S.
LIMITER_ATTACK_S = 0.0015
LIMITER_RELEASE_S = 0.08
CHUNK = 1 << 20


def _limiter_gain(
    envelope: np.ndarray,
    scale: float,
    ceiling: float,
    rate: int,
    out: np.ndarray,
    heartbeat: Callable[[], None],
) -> bool:
    """Fill `out` with scale x the limiter's gain; True if the limiter had to act. Chunked,
    with enough overlap that the result equals the whole-array computation."""
    margin = int(LIMITER_ATTACK_S * rate) + int(LIMITER_RELEASE_S * rate) + 2
    acted = False
    for start in range(0, len(envelope), CHUNK):
        heartbeat()
        end = min(start + CHUNK, len(envelope))
        lo, hi = max(0, start - margin), min(len(envelope), end + margin)
        needed = np.minimum(1.0, ceiling / np.maximum(envelope[lo:hi] * scale, 1e-12))
        if needed.min() < 1.0:
            acted = True
            smooth = _smooth(needed, rate, LIMITER_ATTACK_S, LIMITER_RELEASE_S)
            out[start:end] = scale * smooth[start - lo : start - lo + end - start]
        else:
            out[start:end] = scale
    return acted


def _apply(
    audio: np.ndarray,
    gain: np.ndarray | None,
    out: np.ndarray,
    heartbeat: Callable[[], None],
    add: np.ndarray | None = None,
) -> None:
    """out = audio x gain (+ add), a chunk at a time; `out` may be `audio`."""
    for start in range(0, len(audio), CHUNK):
        heartbeat()
        part = slice(start, start + CHUNK)
        if gain is not None:
            np.multiply(audio[part], gain[part, None], out=out[part])
        elif out is not audio:
            out[part] = audio[part]
        if add is not None:
            out[part] += add[part]


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
    heartbeat: Callable[[], None] = _nothing,
    speech: SpeechDucking | None = None,
    in_place: bool = False,
) -> Mastered:
    """Loudness-normalised, true-peak-limited audio of exactly the input's length; with
    `original`, the music is ducked under it and the two are mixed: under its speech when
    `speech` is given (its intervals may be empty: no ducking), else by its level. Works a
    chunk at a time where it can: a two-hour piece costs a copy of itself and two of its
    length in mono (the peak envelope, the gain), not dozens; `in_place` writes the result
    over `music` (its caller lets it go), a copy fewer. `heartbeat` is called between chunks
    (it raises to cancel)."""
    duck = None
    if speech is not None and speech.intervals:
        curve = speech_gain(speech, rate, len(music))
        if speech.carve:
            music = _carve(music, curve, speech.depth_db, rate, heartbeat)
        else:
            duck = curve
    elif speech is None and original is not None:
        duck = ducking_gain(original, rate, len(music), heartbeat)
    ducked = duck is not None or bool(speech and speech.intervals)
    audio = music
    if duck is not None or original is not None:
        # In place, the mix is made over the music (a two-hour piece's copy, 2.8 GB, and a
        # gain of ones beside it when nothing ducked, 1.4 GB, had been made for it).
        audio = music if in_place else np.empty_like(music)
        _apply(music, duck, out=audio, heartbeat=heartbeat, add=original)
        # Mixed in: let the video's own sound go (a two-hour video's, 2.8 GB, had been held
        # through the limiter's rounds; the caller passes it without keeping it).
        original = None
    measured = integrated_loudness(audio, rate, heartbeat=heartbeat)
    if not np.isfinite(measured):
        # Digital silence: nothing to normalise.
        report = LoudnessReport(
            measured,
            db(0.0),
            target_lufs,
            true_peak_limit_db,
            0.0,
            False,
            ducked,
        )
        return Mastered(audio.copy(), np.ones(len(audio), np.float32), report)
    # The oversampled peak envelope is measured once; gains are smooth, so the peak after a
    # gain is the envelope times that gain. A small margin covers what smoothing leaves.
    envelope = peak_envelope(audio, heartbeat)
    gain, gain_db, measured, limited, peak = _loudness_and_peak(
        audio, envelope, rate, target_lufs - measured, target_lufs, true_peak_limit_db, heartbeat
    )
    # A mix made here (ducked, or with the original) is this function's own to overwrite.
    result = audio if in_place or audio is not music else np.empty_like(audio)
    _apply(audio, gain, out=result, heartbeat=heartbeat)
    report = LoudnessReport(
        integrated_lufs=round(float(measured), 2),
        true_peak_dbtp=round(db(peak), 2),
        target_lufs=target_lufs,
        true_peak_limit_dbtp=true_peak_limit_db,
        gain_db=round(gain_db, 2),
        limited=limited,
        ducked=ducked,
    )
    if duck is not None:
        gain *= duck
    return Mastered(result, gain, report)


def limit_again(
    mastered: Mastered, rate: int, ceiling_db: float, heartbeat: Callable[[], None] = _nothing
) -> Mastered:
    """The mastered audio limited again under a lower true-peak ceiling, in place, at the
    loudness it was mastered to: for a lossy encoder that went over the first ceiling.
    Lowering the whole piece instead had delivered it that much quieter than asked (-14.5
    LUFS for -14). `music_gain` (the stems' gain) takes the new gain too."""
    audio = mastered.audio
    target_lufs = mastered.report.integrated_lufs
    envelope = peak_envelope(audio, heartbeat)
    gain, gain_db, measured, limited, peak = _loudness_and_peak(
        audio, envelope, rate, 0.0, target_lufs, ceiling_db, heartbeat
    )
    _apply(audio, gain, out=audio, heartbeat=heartbeat)
    np.multiply(mastered.music_gain, gain, out=mastered.music_gain)
    report = replace(
        mastered.report,
        integrated_lufs=round(float(measured), 2),
        true_peak_dbtp=round(db(peak), 2),
        gain_db=round(mastered.report.gain_db + gain_db, 2),
        limited=mastered.report.limited or limited,
    )
    return Mastered(audio, mastered.music_gain, report)


def _loudness_and_peak(
    audio: np.ndarray,
    envelope: np.ndarray,
    rate: int,
    gain_db: float,
    target_lufs: float,
    ceiling_db: float,
    heartbeat: Callable[[], None],
) -> tuple[np.ndarray, float, float, bool, float]:
    """The per-sample gain that brings `audio` (starting from `gain_db`) to the target
    loudness under the true-peak ceiling; with the gain in dB it settled on, the loudness it
    gives, whether the limiter acted, and the true peak after it."""
    ceiling = 10 ** ((ceiling_db - 0.1) / 20.0)
    limited = False
    gain = np.empty(len(audio), dtype=np.float32)
    for _ in range(6):
        limited |= _limiter_gain(envelope, 10 ** (gain_db / 20.0), ceiling, rate, gain,
                                 heartbeat)  # fmt: skip
        measured = integrated_loudness(audio, rate, heartbeat=heartbeat, gain=gain)
        if abs(measured - target_lufs) <= 0.05:
            break
        # Limiting lowered the loudness: raise the gain by what is missing and limit again.
        gain_db += target_lufs - measured
    # The input's oversampled envelope times the (smooth) gain: the output's true peak
    # without oversampling it again. Tests check it against an independent measurement.
    peak = max(
        float(np.max(envelope[s : s + CHUNK] * gain[s : s + CHUNK]))
        for s in range(0, len(gain), CHUNK)
    )
    return gain, gain_db, float(measured), limited, peak
