"""The timing plan: tempo, beats and bars that put the video's cuts on the music's grid.

Segment boundaries (the strong cuts) start sections. With a free tempo, each section gets a
whole number of beats, so every section starts exactly on a beat; its tempo may differ a little
from its neighbours' (a new scene, a new tempo), always inside the allowed BPM range. The
tempos are chosen together by dynamic programming over the sections: the cost is the size of
the tempo jumps between neighbours, each tempo's distance from the preferred BPM, and how far
the cuts inside sections (the weak ones) fall from a beat.

With a fixed (user) tempo, the grid is one constant tempo whose phase is chosen to put the most
(strength-weighted) cuts on beats; section starts snap to the nearest beat.

Bars are four beats from each section's start; where a section's beats do not divide into
fours, its last bar is shorter (2 or 3 beats) or longer (5), so that every section starts on a
downbeat: the strongest cuts land on bar lines.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

# Cost weights: tempo away from the preferred, a tempo jump between neighbouring sections, a
# weak cut off its beat (per unit strength, saturating at MISS_SCALE_S).
PREFERRED_WEIGHT = 30.0
SECTION_WEIGHT = 200.0
MISS_WEIGHT = 1.0
MISS_SCALE_S = 0.1
# An ending needs a final chord at least this long before the end (hold + release tail).
ENDING_TAIL_S = 1.6


@dataclass(frozen=True)
class HitPoint:
    time_s: float
    strength: float


@dataclass(frozen=True)
class SectionTiming:
    start_s: float
    end_s: float
    first_beat: int
    beat_count: int
    bpm: float


@dataclass(frozen=True)
class TimingPlan:
    beats_s: list[float]
    # Index into beats_s of every downbeat.
    bar_starts: list[int]
    sections: list[SectionTiming]
    base_bpm: float
    # Beat index of the final chord, or None when the piece fades out instead.
    final_beat: int | None

    def beat_time(self, beat: float) -> float:
        """Seconds at a fractional beat position (beats past the last extend its period)."""
        beats = self.beats_s
        index = math.floor(beat)
        if index < 0:
            return beats[0] + beat * (beats[1] - beats[0])
        if index >= len(beats) - 1:
            period = beats[-1] - beats[-2]
            return beats[-1] + (beat - (len(beats) - 1)) * period
        return beats[index] + (beat - index) * (beats[index + 1] - beats[index])


def _miss_cost(cuts: np.ndarray, strengths: np.ndarray, start: float, period: float) -> float:
    if cuts.size == 0:
        return 0.0
    offset = (cuts - start) / period
    distance = np.abs(offset - np.round(offset)) * period
    return float(
        MISS_WEIGHT * np.sum(strengths * np.minimum(distance, MISS_SCALE_S)) / MISS_SCALE_S
    )


def _section_options(
    start: float,
    end: float,
    inner: tuple[np.ndarray, np.ndarray],
    period_limits: tuple[float, float],
) -> list[tuple[float, float]]:
    """(period, miss cost) of each whole-beat fit of a section inside the BPM range."""
    low, high = period_limits
    length = end - start
    counts = range(max(1, math.ceil(length / high - 1e-9)), math.floor(length / low + 1e-9) + 1)
    options = [(length / c, _miss_cost(inner[0], inner[1], start, length / c)) for c in counts]
    if not options:
        # No whole number of beats fits the range (a very short section): the nearest count.
        period = length / max(1, round(length / math.sqrt(low * high)))
        options = [(period, _miss_cost(inner[0], inner[1], start, period))]
    return options


def _smoothest_periods(
    options: list[list[tuple[float, float]]], preferred_period: float
) -> list[float]:
    """One period per section, minimising tempo jumps between neighbours, distance from the
    preferred tempo and weak-cut misses (dynamic programming over the sections)."""
    costs = [
        PREFERRED_WEIGHT * math.log(period / preferred_period) ** 2 + miss
        for period, miss in options[0]
    ]
    back: list[list[int]] = []
    for i in range(1, len(options)):
        new_costs, pointers = [], []
        for period, miss in options[i]:
            steps = [
                costs[j] + SECTION_WEIGHT * math.log(period / options[i - 1][j][0]) ** 2
                for j in range(len(options[i - 1]))
            ]
            j = int(np.argmin(steps))
            pointers.append(j)
            new_costs.append(
                steps[j] + PREFERRED_WEIGHT * math.log(period / preferred_period) ** 2 + miss
            )
        costs = new_costs
        back.append(pointers)
    choice = int(np.argmin(costs))
    chosen = [choice]
    for pointers in reversed(back):
        choice = pointers[choice]
        chosen.append(choice)
    chosen.reverse()
    return [options[i][c][0] for i, c in enumerate(chosen)]


def plan_timing(
    duration_s: float,
    section_starts: list[float],
    cuts: list[HitPoint],
    bpm_range: tuple[float, float],
    preferred_bpm: float,
    fixed_bpm: float | None = None,
) -> TimingPlan:
    """Beats, bars and sections for a piece of `duration_s` (section_starts[0] must be 0)."""
    bounds = [*section_starts, duration_s]
    cut_times = np.array([c.time_s for c in cuts])
    cut_strengths = np.array([c.strength for c in cuts])
    if fixed_bpm is not None:
        return _fixed_plan(duration_s, section_starts, cut_times, cut_strengths, fixed_bpm)
    low_bpm, high_bpm = bpm_range
    period_limits = (60.0 / high_bpm, 60.0 / low_bpm)
    boundaries = np.round(section_starts, 6)
    options = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        mask = (cut_times > a + 1e-6) & (cut_times < b - 1e-6)
        mask &= ~np.isin(np.round(cut_times, 6), boundaries)
        inner = (cut_times[mask], cut_strengths[mask])
        if i < len(bounds) - 2:
            options.append(_section_options(a, b, inner, period_limits))
        else:
            # The last section ends with the piece, not on a cut: any period in range fits.
            candidates = np.linspace(period_limits[0], period_limits[1], 33)
            options.append([(float(p), _miss_cost(inner[0], inner[1], a, p)) for p in candidates])
    periods = _smoothest_periods(options, 60.0 / preferred_bpm)
    beats: list[float] = []
    sections = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        period = periods[i]
        if i < len(bounds) - 2:
            count = max(1, round((b - a) / period))
        else:  # the last section: beats until the end of the piece
            count = math.floor((b - a) / period - 1e-9) + 1
        sections.append(SectionTiming(a, b, len(beats), count, 60.0 / period))
        beats.extend(a + k * period for k in range(count))
    weights = [s.end_s - s.start_s for s in sections]
    base_bpm = float(np.average([s.bpm for s in sections], weights=weights))
    return _with_bars(beats, sections, duration_s, base_bpm)


def _fixed_plan(
    duration_s: float,
    section_starts: list[float],
    cut_times: np.ndarray,
    cut_strengths: np.ndarray,
    bpm: float,
) -> TimingPlan:
    period = 60.0 / bpm
    phases = {0.0} | {float(t % period) for t in cut_times}
    best_phase = min(
        sorted(phases), key=lambda phase: _miss_cost(cut_times, cut_strengths, phase, period)
    )
    count = math.floor((duration_s - best_phase) / period - 1e-9) + 1
    beats = [best_phase + k * period for k in range(count)]
    # Section starts snap to the nearest beat; the first section starts on the first beat.
    starts = sorted({0} | {round((s - best_phase) / period) for s in section_starts[1:]})
    starts = [s for s in starts if 0 <= s < len(beats)]
    sections = []
    for i, first in enumerate(starts):
        last = starts[i + 1] if i + 1 < len(starts) else len(beats)
        end = beats[last] if last < len(beats) else duration_s
        sections.append(SectionTiming(beats[first], end, first, last - first, bpm))
    return _with_bars(beats, sections, duration_s, bpm)


def _final_beat(beats: list[float], sections: list[SectionTiming], duration_s: float) -> int | None:
    """The beat of the final tonic chord: the last one that leaves room for its tail."""
    last = sections[-1]
    candidates = [
        b
        for b in range(last.first_beat, len(beats))
        if beats[b] + ENDING_TAIL_S <= duration_s + 1e-9
    ]
    if not candidates:
        # Too little room in the last section: end at the latest beat that leaves room at all.
        candidates = [b for b in range(len(beats)) if beats[b] + ENDING_TAIL_S <= duration_s]
        if not candidates or beats[candidates[-1]] < duration_s * 0.5:
            return None
    return candidates[-1]


def _bar_lengths(count: int) -> list[int]:
    """Fours, with the remainder as one shorter (2, 3) or longer (5) last bar."""
    if count <= 5:
        return [count]
    bars = [4] * (count // 4)
    remainder = count % 4
    if remainder == 1:
        bars[-1] = 5
    elif remainder:
        bars.append(remainder)
    return bars


def _with_bars(
    beats: list[float], sections: list[SectionTiming], duration_s: float, base_bpm: float
) -> TimingPlan:
    final = _final_beat(beats, sections, duration_s)
    bar_starts: list[int] = []
    for section in sections:
        end = section.first_beat + section.beat_count
        if final is not None and section.first_beat <= final < end:
            # The final chord starts its own bar.
            spans = [(section.first_beat, final), (final, end)]
        else:
            spans = [(section.first_beat, end)]
        for span_start, span_end in spans:
            position = span_start
            for length in _bar_lengths(span_end - span_start) if span_end > span_start else []:
                bar_starts.append(position)
                position += length
    return TimingPlan(
        beats_s=beats,
        bar_starts=sorted(set(bar_starts)),
        sections=sections,
        base_bpm=base_bpm,
        final_beat=final,
    )
