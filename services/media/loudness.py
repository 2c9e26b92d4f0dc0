"""Integrated loudness by ITU-R BS.1770-4, as pyloudnorm measures it, for the parts of the
platform that set levels: the composer's balance and the gateway's mastering."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
from pyloudnorm.iirfilter import IIRfilter
from scipy.signal import sosfilt


def _nothing() -> None:
    pass


def integrated_loudness(
    audio: np.ndarray,
    rate: int,
    chunk_s: float = 20.0,
    heartbeat: Callable[[], None] = _nothing,
    gain: np.ndarray | None = None,
) -> float:
    """Integrated loudness (LUFS) by ITU-R BS.1770-4, as pyloudnorm measures it, 20 s at a
    time: pyloudnorm's own K-weighting filters carry their state from chunk to chunk, and the
    gating is pyloudnorm's. Memory stays small for a two-hour piece (pyloudnorm itself would
    copy it several times over); tests check both agree. With `gain` (one per sample), the
    loudness of the audio times it, without a copy of the whole."""
    stages = [
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, rate, "high_pass"),
    ]
    # Both stages in one pass (second-order sections): twice as fast as one lfilter a stage,
    # the same to within 1e-12.
    sections = np.array([np.concatenate([stage.b, stage.a]) / stage.a[0] for stage in stages])
    passband = math.prod(stage.passband_gain for stage in stages)
    hop = round(0.1 * rate)
    samples, channels = audio.shape
    hops = -(-samples // hop)
    energy = np.zeros((channels, hops))
    chunk = hop * max(1, round(chunk_s * 10))
    for channel in range(channels):
        state = np.zeros((len(stages), 2))
        for start in range(0, samples, chunk):
            heartbeat()
            signal = audio[start : start + chunk, channel].astype(np.float64)
            if gain is not None:
                signal *= gain[start : start + chunk]
            signal, state = sosfilt(sections, signal, zi=state)
            signal *= passband
            squared = np.square(signal)
            padded = np.zeros(-(-len(squared) // hop) * hop)
            padded[: len(squared)] = squared
            first = start // hop
            energy[channel, first : first + len(padded) // hop] = padded.reshape(-1, hop).sum(1)
    heartbeat()
    if _blocks(samples, rate) < 1:
        # Shorter than one 400 ms block: measured played over and over.
        if not samples:
            return float("-inf")
        repeats = math.ceil(0.4 * rate / samples)
        whole = audio if gain is None else audio * gain[:, None]
        return integrated_loudness(np.tile(whole, (repeats, 1)), rate, chunk_s, heartbeat)
    return _gated(energy, samples, rate)


def gated_level(chunks: Iterable[np.ndarray], rate: int) -> float:
    """BS.1770's gated level (dB), without its K-weighting, of audio given as chunks played
    one after another (channels x samples, as the synthesizer's and the mixer's blocks are,
    measured where they lie); -inf where silent or shorter than a block. Several times
    cheaper than the loudness, for comparing a signal with a part of itself, where the
    weighting would about cancel."""
    hop = round(0.1 * rate)
    energies, samples = [], 0
    left: np.ndarray | None = None  # the samples short of a hop, carried to the next chunk
    for chunk in chunks:
        samples += chunk.shape[1]
        if left is not None and left.shape[1]:
            chunk = np.concatenate([left, chunk], axis=1)
        full = chunk.shape[1] // hop * hop
        hops = chunk[:, :full].reshape(chunk.shape[0], -1, hop)
        energies.append(np.einsum("chs,chs->ch", hops, hops, dtype=np.float64))
        left = chunk[:, full:]
    if left is not None and left.shape[1]:
        energies.append(np.square(left, dtype=np.float64).sum(axis=1, keepdims=True))
    if _blocks(samples, rate) < 1:
        return float("-inf")
    return _gated(np.concatenate(energies, axis=1), samples, rate)


def _blocks(samples: int, rate: int) -> int:
    """The 400 ms blocks BS.1770 gates in `samples` (100 ms apart)."""
    return round((samples / rate - 0.4) / 0.1) + 1


def _gated(energy: np.ndarray, samples: int, rate: int) -> float:
    """BS.1770's gating of 400 ms blocks (75 % overlap) over `energy` (channels x 100 ms
    hops, summed squares) of `samples` samples, at least a block."""
    channels = energy.shape[0]
    block_hops = 4
    blocks = _blocks(samples, rate)
    padded_energy = np.concatenate([energy, np.zeros((channels, block_hops))], axis=1)
    window = np.lib.stride_tricks.sliding_window_view(padded_energy, block_hops, axis=1)
    z = window[:, :blocks].sum(axis=2) / (0.4 * rate)
    # Channel weights: 1.0 for left and right.
    with np.errstate(divide="ignore"):
        block_loudness = -0.691 + 10.0 * np.log10(z.sum(axis=0))
        gated = block_loudness >= -70.0
        if not gated.any():
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(z[:, gated].mean(axis=1).sum()) - 10.0
        gated = (block_loudness > relative) & (block_loudness > -70.0)
        if not gated.any():
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(z[:, gated].mean(axis=1).sum()))
