"""Pieces longer than a model's window: windows that overlap, joined at cuts where possible."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A stretch generated in one pipeline call; neighbours overlap by the planned overlap."""

    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def plan_windows(
    duration_s: float, limit_s: float, overlap_s: float, cuts_s: list[float]
) -> list[Window]:
    """Windows of at most `limit_s` covering the piece. Each join (the middle of an overlap)
    goes on the latest cut in the last 40 % of its window, else as late as the limit allows."""
    if duration_s <= limit_s:
        return [Window(0.0, duration_s)]
    if overlap_s >= limit_s / 2:
        raise ValueError(f"overlap {overlap_s:g} s is too long for a {limit_s:g} s window")
    half = overlap_s / 2
    windows = []
    start = 0.0
    while duration_s - start > limit_s:
        latest = start + limit_s - half
        candidates = [c for c in cuts_s if start + 0.6 * limit_s <= c <= latest]
        join = max(candidates) if candidates else latest
        windows.append(Window(start, join + half))
        start = join - half
    windows.append(Window(start, duration_s))
    return windows


def assemble(
    parts: list[np.ndarray], windows: list[Window], sample_rate: int, total_samples: int
) -> np.ndarray:
    """Overlap-add the windows' audio (each samples x channels at `sample_rate`) with
    equal-power crossfades over each overlap; exactly `total_samples` long."""
    channels = parts[0].shape[1]
    out = np.zeros((total_samples, channels), dtype=np.float32)
    for index, (audio, window) in enumerate(zip(parts, windows, strict=True)):
        first = round(window.start_s * sample_rate)
        length = min(len(audio), total_samples - first)
        gain = np.ones(length, dtype=np.float32)
        if index > 0:
            fade = round((windows[index - 1].end_s - window.start_s) * sample_rate)
            fade = min(fade, length)
            gain[:fade] = np.sin(np.linspace(0.0, np.pi / 2, fade, dtype=np.float32))
        if index + 1 < len(windows):
            fade = round((window.end_s - windows[index + 1].start_s) * sample_rate)
            fade = min(fade, length)
            gain[length - fade :] *= np.cos(np.linspace(0.0, np.pi / 2, fade, dtype=np.float32))
        out[first : first + length] += audio[:length] * gain[:, None]
    return out
