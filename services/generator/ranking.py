"""Rank generated candidates by how well they fit their video, whatever backend made them.

Three measures of the audio against the brief (Diff-BGM's point: rhythm and dynamics are what
tie music to the picture): a pulse at the asked tempo, onsets on the cuts, and loudness that
rises and falls with the segments' energy. Each is 0..1; the score is their mean.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import maximum_filter1d

from services.domain import CandidateScore, GeneratedMusic, MusicBrief
from services.media.audio import resample

ANALYSIS_RATE = 11025
FRAME = 1024
HOP = 128  # 11.6 ms
# Onsets within this distance of a cut count as on it.
CUT_TOLERANCE_S = 0.06
# A pulse within this fraction of the asked period counts as the asked tempo.
TEMPO_TOLERANCE = 0.03
# Segments whose energies span less than this say nothing about loudness.
MIN_ENERGY_SPREAD = 0.1
FRAMES_PER_BLOCK = 8192


def _nothing() -> None:
    """The heartbeat of a caller that does not cancel."""


def rank(
    brief: MusicBrief, candidates: list[GeneratedMusic], heartbeat: Callable[[], None] = _nothing
) -> list[CandidateScore]:
    """One score per candidate, best first (ties keep the candidates' order). `heartbeat` is
    called as each is measured (it raises to cancel: two hours of music take about 15 s)."""
    measured = [_measure(brief, music, heartbeat) for music in candidates]
    order = sorted(range(len(measured)), key=lambda index: -_mean(measured[index]))
    return [
        CandidateScore(
            candidate=index,
            rank=position + 1,
            score=round(_mean(measured[index]), 4),
            tempo_fit=measured[index][0],
            cut_accent=measured[index][1],
            energy_follow=measured[index][2],
        )
        for position, index in enumerate(order)
    ]


def _mean(measures: tuple[float, float | None, float | None]) -> float:
    present = [m for m in measures if m is not None]
    return float(np.mean(present))


def _measure(
    brief: MusicBrief, music: GeneratedMusic, heartbeat: Callable[[], None]
) -> tuple[float, float | None, float | None]:
    heartbeat()
    mono = np.asarray(music.audio, dtype=np.float32).mean(axis=1, keepdims=True)
    samples = round(len(mono) * ANALYSIS_RATE / music.sample_rate)
    mono = resample(mono, music.sample_rate, ANALYSIS_RATE, samples, heartbeat)[:, 0]
    envelope = onset_envelope(mono, heartbeat)
    return (
        round(tempo_fit(envelope, brief.tags.bpm), 4),
        _rounded(cut_accent(envelope, [cut.time_s for cut in brief.cuts])),
        _rounded(energy_follow(mono, [(s.start_s, s.end_s, s.energy) for s in brief.segments])),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def onset_envelope(mono: np.ndarray, heartbeat: Callable[[], None] = _nothing) -> np.ndarray:
    """Spectral flux (rises in log magnitude, summed over bins) per hop of `mono` at
    ANALYSIS_RATE; computed in blocks so long pieces stay small in memory, calling
    `heartbeat` before each."""
    if len(mono) < FRAME + HOP:
        return np.zeros(1, dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(mono, FRAME)[::HOP]
    window = np.hanning(FRAME).astype(np.float32)
    flux = np.zeros(len(frames), dtype=np.float32)
    previous = None
    for start in range(0, len(frames), FRAMES_PER_BLOCK):
        heartbeat()
        block = frames[start : start + FRAMES_PER_BLOCK] * window
        magnitude = np.log1p(100.0 * np.abs(np.fft.rfft(block, axis=1))).astype(np.float32)
        if previous is not None:
            magnitude = np.vstack([previous, magnitude])
        rises = np.maximum(np.diff(magnitude, axis=0), 0.0).sum(axis=1)
        flux[start + (1 if previous is None else 0) : start + len(block)] = rises
        previous = magnitude[-1:]
    return flux


def tempo_fit(envelope: np.ndarray, bpm: float) -> float:
    """The envelope's autocorrelation at the beat period (or twice it, a half-time feel)."""
    centred = envelope - envelope.mean()
    count = len(centred)
    spectrum = np.fft.rfft(centred, 2 * count)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:count]
    if autocorrelation[0] <= 0.0:
        return 0.0
    autocorrelation /= autocorrelation[0]
    period = 60.0 / bpm * ANALYSIS_RATE / HOP
    best = 0.0
    for multiple in (1, 2):
        low = int(np.floor(period * multiple * (1 - TEMPO_TOLERANCE)))
        high = int(np.ceil(period * multiple * (1 + TEMPO_TOLERANCE)))
        if high < count:
            best = max(best, float(autocorrelation[low : high + 1].max()))
    return float(np.clip(best, 0.0, 1.0))


def cut_accent(envelope: np.ndarray, cuts_s: list[float]) -> float | None:
    """Per cut, where the strongest onset near it stands among the strongest onsets near
    every moment of the piece (0.5 = no more than chance), averaged over the cuts."""
    per_second = ANALYSIS_RATE / HOP
    frames = [round(c * per_second) for c in cuts_s if round(c * per_second) < len(envelope)]
    if not frames or len(envelope) < 2:
        return None
    reach = round(CUT_TOLERANCE_S * per_second)
    nearby = maximum_filter1d(envelope, size=2 * reach + 1, mode="nearest")
    ordered = np.sort(nearby)
    standings = []
    for frame in frames:
        below = np.searchsorted(ordered, nearby[frame], side="left")
        equal = np.searchsorted(ordered, nearby[frame], side="right") - below
        standings.append((below + 0.5 * equal) / len(ordered))
    return float(np.mean(standings))


def energy_follow(mono: np.ndarray, segments: list[tuple[float, float, float]]) -> float | None:
    """Correlation of each segment's loudness (dB) with its energy, mapped to 0..1."""
    energies = np.array([energy for _, _, energy in segments])
    if len(segments) < 2 or np.ptp(energies) < MIN_ENERGY_SPREAD:
        return None
    levels = []
    for start_s, end_s, _ in segments:
        part = mono[round(start_s * ANALYSIS_RATE) : round(end_s * ANALYSIS_RATE)]
        rms = float(np.sqrt(np.mean(np.square(part)))) if len(part) else 0.0
        levels.append(20.0 * np.log10(rms + 1e-6))
    if np.ptp(levels) < 1e-6:
        return 0.5
    correlation = float(np.corrcoef(energies, levels)[0, 1])
    return (correlation + 1.0) / 2.0
