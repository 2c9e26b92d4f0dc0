"""The timing plan: one meter and a steady pulse whose beats meet the video's cuts.

Music changes at cuts and stays music while it does, so the pulse comes first:
- One meter for the whole piece; bars never change length.
- A user BPM is one exact, constant grid from the first sample. Its phase (in 64th notes, so
  the pickup can be written down, and a cut is put within half a 64th of a beat: 13 ms at
  140 BPM, where a 32nd had left 18 ms) and which beat is the downbeat are chosen to put the
  most cuts, the strong ones on bar lines, on beats (within ON_BEAT_S); the beats before the
  first downbeat are a pickup that the arrangement writes as one.
- Otherwise the tempo follows a conductor's map: the piece's tempo is chosen inside the tags'
  range, and the map may drift from it by at most the style's `tempo_flex` and change by at
  most MAX_BEAT_CHANGE from one beat to the next. Beat 0 is the first sample and a downbeat.
  Which cuts become anchors (a cut exactly on a beat, a strong one preferably on a downbeat)
  is decided by dynamic programming over the cuts (a beam search: each cut keeps its best few
  beat numbers); the beat times are then solved as a linear program: both limits exactly,
  as many anchors as they allow, the least tempo change (see conducted_beats). The search runs
  twice, through every cut and free to skip some, and the solved map that puts more cuts on
  its beats is kept.
Cuts that no grid can reach are not forgotten: the arrangement marks every cut at its exact
time. Sections of the form start on the bar line nearest each segment start (one shorter
than MIN_SECTION_BARS after the first joins a neighbour), and the arrangement hands the
texture over at the segment's cut itself (SectionTiming.cue_s).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from services.generator.backends.composer.production import ROOM_RING_S
from services.rules import ON_BEAT_S
from services.spans import merged_spans

# Largest tempo change from one beat to the next (a fraction of the period). At 2% (issue
# 13's limit) a map could glide 10% within 3 s to meet the cuts, a band heard rushing and
# dragging (bench_music: acoustic, folk and orchestral at worst, cinematic and ambient 8%); at
# 1% the worst is 4-6% (medians 2-4%), for 5 of its 814 cuts 1.5 s apart fewer on a librosa
# beat and 9 fewer on a madmom beat. On videos cut at random (bench_tempo.py) it costs more
# (pop's plans put 82% of those cuts on beats instead of 87%, acoustic's 75% instead of 84%)
# and halves their swings (medians within 3 s from 9.6% and 8.5% to 4.9%); a cut off the beat
# is still struck at its time.
MAX_BEAT_CHANGE = 0.01
# The map is solved this much inside the limit, so beat times rounded to microseconds in the
# delivered plan still keep it.
SOLVED_BEAT_CHANGE = 0.0095
# Search breadth: earlier cuts a cut may be reached from, and beat numbers kept per cut.
LOOK_BACK_CUTS = 6
# Cuts closer together than this are one event to the music: they cannot both fall on beats
# (the fastest beat, at 300 BPM, lasts 0.2 s) nor be heard as two hits, so the strongest
# stands for them. The plan's and the arrangement's cost then follow the piece's length, not
# how many cuts a brief packs into it (4,000 cuts in half a second had taken a minute to plan,
# and a brief may hold 20,000).
DISTINCT_HIT_S = 0.1
BEAM = 12
# The full search runs twice: once through every cut in turn, which finds the chains of anchors
# a smooth map keeps, and once free to skip cuts, which finds the ways round cuts that no tempo
# near the piece's reaches (a fast montage).
SEARCH_LOOK_BACKS = (1, LOOK_BACK_CUTS)
# Tempo buckets that keep search states apart (log ratio).
PERIOD_BUCKET = 0.005
# Score of a cut on a beat: BASE + strength; a strong cut on a downbeat earns BAR_BONUS more.
CUT_BASE_SCORE = 0.5
STRONG_CUT = 0.55
BAR_BONUS = 0.6
# Penalties: tempo change between anchor spans, drift from the piece's tempo, the piece's
# tempo away from the preferred one (per (log ratio / PREFERRED_SCALE)^2).
CHANGE_PENALTY = 150.0
DRIFT_PENALTY = 40.0
PREFERRED_PENALTY = 2.0
PREFERRED_SCALE = 0.15
PREFERRED_PER_CUTS = 8
# The tempo map's costs: a second of an anchor's miss against a period's total change
# (MISS_COST per unit of weight) and against its drift from the piece's tempo (DRIFT_COST).
MISS_COST = 100.0
DRIFT_COST = 0.05
# The map's program is solved this many beats at a time, each window looking this far past the
# beats it keeps: a program's time grows faster than its size (a two-hour piece's 13,800 beats
# took 10 s at once, and a cancel waited for them), a cancel is heard between windows (one of
# 256 beats takes 20-40 ms; one of 1,024 took 0.1-0.23 s), and the look-ahead is far longer
# than any anchor needs to be reached (the widest flex is crossed in 16 beats).
MAP_WINDOW_BEATS = 256
MAP_LOOK_AHEAD_BEATS = 64
# Candidate piece tempos are this far apart (log ratio); all are scored with a narrow search,
# the best again with the full ones.
TEMPO_STEP = 0.006
# Takes: a seed's piece may play at another tempo than the best, as another take of the cue
# (candidates are seeds in turn, and had all shared one tempo map): each take's tempo at least
# TAKE_CONTRAST (log ratio) from the takes before it, as many of its cuts on beats as the
# best's and its score within TAKE_MARGIN (of the best's score) of the best's. Seed 0 plays
# the best.
TAKE_CONTRAST = 0.05
TAKE_MARGIN = 0.05
# ... and within TAKE_REACH (log ratio) of the best's tempo: another take is the cue played
# a little faster or slower, not at the far end of the genre's range (lo-fi at 73 BPM where
# the best was 94 had been heard at two and a half times its tempo).
TAKE_REACH = 0.12
# An ending needs a final chord at least a short hold and the release's ring (the genre's
# space's, Space.ring_s) before the end: 1.25 s in a room or on a plate (a longer minimum put
# a 24 s piece's final chord a whole bar early, 4.8 s of one chord), or this fraction of the
# piece when it is very short.
ENDING_HOLD_S = 0.35
SHORT_TAIL_FRACTION = 0.35
# A piece shorter than this places its final chord as for a room's ring whatever its space: a
# hall's moved a 16 s cinematic piece's final chord a bar earlier, its strings holding a
# quarter of the piece. Where that chord has time for its hold and the hall's ring, it still
# rings that long (arrangement.release_tail_s).
LONG_RING_MIN_S = 30.0
# A section after the first is this many bars at least: a shorter one joins a neighbour
# (`_long_enough`; its cut is still struck). A section per segment of one bar had changed
# material and level bar by bar through a burst of short shots (a music review: five
# one-bar sections in a 97 s montage, the texture flipping every 2 s).
MIN_SECTION_BARS = 2
# Where several of the picture's changes share a section's bar line, its cue is the one that
# changes the picture most (in energy, 0..1), where that is this much more than the nearest
# one's; else the nearest. The nearest alone had handed electronic's breakdown over at a cut
# between two busy shots, 1.5 s before its calm shot, and its drop at a cut inside the busy
# shot after, 1.5 s after the picture turned busy (a music review).
CUE_CHANGE = 0.2


@dataclass(frozen=True)
class Meter:
    """A time signature: `beats` pulses per bar, each of `steps` grid steps (4 sixteenths
    for simple meters, 3 eighths for compound ones), a beat lasting `quarters` quarter notes."""

    name: str
    beats: int
    steps: int
    quarters: float
    numerator: int
    denominator: int


METERS = {
    meter.name: meter
    for meter in (
        Meter("4/4", 4, 4, 1.0, 4, 4),
        Meter("3/4", 3, 4, 1.0, 3, 4),
        Meter("6/8", 2, 3, 1.5, 6, 8),
    )
}


@dataclass(frozen=True)
class HitPoint:
    time_s: float
    strength: float
    # A segment boundary: the music's form changes here.
    boundary: bool = False

    @property
    def strong(self) -> bool:
        """A cut that wants a downbeat and a big hit."""
        return self.boundary or self.strength >= STRONG_CUT


@dataclass(frozen=True)
class SectionTiming:
    start_s: float
    end_s: float
    first_beat: int
    beat_count: int
    bpm: float
    # Where the picture changes that the section follows (the segment's start; its bar line
    # may lie up to half a bar from it): the arrangement hands the texture over there.
    cue_s: float = 0.0


@dataclass(frozen=True)
class TimingPlan:
    beats_s: list[float]
    meter: Meter
    # Beat index of the first downbeat: beats before it are a pickup (0 without one).
    first_downbeat: int
    sections: list[SectionTiming]
    # The piece's tempo; the map stays within the style's flex of it.
    base_bpm: float
    # Beat index of the final chord, or None when the piece fades out instead.
    final_beat: int | None
    # Seconds the final chord's release is left to ring before the end, where the piece leaves
    # them (its space's; the final chord is placed for a room's in a piece under
    # LONG_RING_MIN_S).
    ring_s: float

    # Cached: the composer asks for every section.
    @functools.cached_property
    def bar_starts(self) -> list[int]:
        return list(range(self.first_downbeat, len(self.beats_s), self.meter.beats))

    @property
    def lead_beats(self) -> float:
        """The part of a beat between the first sample and beat 0 (0 when beat 0 is the
        first sample)."""
        beats = self.beats_s
        period = beats[1] - beats[0] if len(beats) > 1 else 60.0 / self.base_bpm
        return beats[0] / period

    @property
    def pickup_beats(self) -> float:
        """Beats (fractional) between the first sample and the first downbeat."""
        return self.first_downbeat + self.lead_beats

    def beat_time(self, beat: float) -> float:
        """Seconds at a fractional beat position (outside the beats, the nearest period)."""
        beats = self.beats_s
        if len(beats) == 1:
            return beats[0] + beat * 60.0 / self.base_bpm
        index = math.floor(beat)
        if index < 0:
            return beats[0] + beat * (beats[1] - beats[0])
        if index >= len(beats) - 1:
            return beats[-1] + (beat - (len(beats) - 1)) * (beats[-1] - beats[-2])
        return beats[index] + (beat - index) * (beats[index + 1] - beats[index])

    # Cached: searching the list itself would convert it to an array on every call.
    @functools.cached_property
    def _beats_array(self) -> np.ndarray:
        return np.asarray(self.beats_s)

    def beat_at(self, seconds: float) -> float:
        """The fractional beat position of a time (the inverse of beat_time)."""
        beats = self.beats_s
        if len(beats) == 1:
            return (seconds - beats[0]) * self.base_bpm / 60.0
        index = int(np.searchsorted(self._beats_array, seconds, side="right")) - 1
        index = max(0, min(index, len(beats) - 2))
        return index + (seconds - beats[index]) / (beats[index + 1] - beats[index])


def plan_timing(
    duration_s: float,
    segment_starts: list[float],
    cuts: list[HitPoint],
    bpm_range: tuple[float, float],
    preferred_bpm: float,
    meter: Meter,
    tempo_flex: float,
    heartbeat: Callable[[], None],
    ring_s: float,
    fixed_bpm: float | None = None,
    take: int = 0,
    changes: dict[float, float] | None = None,
) -> TimingPlan:
    """Beats, bars and sections for a piece of `duration_s`, at the tempo of `take` (see
    TAKE_CONTRAST; a seed), its final chord leaving `ring_s` for its release to ring out;
    `changes`: how much the picture changes at each segment start (CUE_CHANGE; none known,
    each as much); `heartbeat` is called often while the search runs (it raises to cancel)."""
    cuts = sorted((c for c in cuts if 0.0 < c.time_s < duration_s), key=lambda c: c.time_s)
    if fixed_bpm is not None:
        beats, first_downbeat = _fixed_grid(duration_s, cuts, 60.0 / fixed_bpm, meter, heartbeat)
        base_bpm = fixed_bpm
    else:
        beats, base_period = _tempo_map(duration_s, cuts, bpm_range, preferred_bpm, meter,
                                        tempo_flex, heartbeat, take)  # fmt: skip
        first_downbeat = _bar_phase(cuts, beats, meter, heartbeat)
        # The piece's tempo as a listener hears it: the map's median.
        base_bpm = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 1 else 60.0 / base_period
    bar_starts = list(range(first_downbeat, len(beats), meter.beats))
    sections = _sections(beats, bar_starts, segment_starts, changes or {}, duration_s,
                         heartbeat)  # fmt: skip
    placed_for_s = ring_s if duration_s >= LONG_RING_MIN_S else min(ring_s, ROOM_RING_S)
    return TimingPlan(
        beats_s=beats,
        meter=meter,
        first_downbeat=first_downbeat,
        sections=sections,
        base_bpm=base_bpm,
        final_beat=_final_beat(beats, bar_starts, duration_s, placed_for_s),
        ring_s=ring_s,
    )


# ---- a user's constant tempo ------------------------------------------------------------


def _cut_score(cut: HitPoint, beat: int, meter: Meter, first_downbeat: int) -> float:
    score = CUT_BASE_SCORE + cut.strength
    if cut.strong and (beat - first_downbeat) % meter.beats == 0:
        score += BAR_BONUS
    return score


def _fixed_grid(
    duration_s: float,
    cuts: list[HitPoint],
    period: float,
    meter: Meter,
    heartbeat: Callable[[], None],
) -> tuple[list[float], int]:
    """Beats of one constant tempo and the first downbeat: the phase (a whole number of
    64th notes, so the pickup can be notated) and the downbeat chosen for the cuts."""
    step = period / (16 * meter.quarters)
    phases = round(period / step)
    times = np.array([c.time_s for c in cuts])
    best: tuple[float, int, int] = (-1.0, 0, 0)
    for phase_steps in range(phases):
        phase = phase_steps * step
        if phase >= duration_s:
            break  # the grid starts inside the piece (a slow tempo's period can outlast it)
        count = _beat_count(phase, period, duration_s)
        if times.size:
            position = (times - phase) / period
            beat = np.round(position).astype(int)
            # A cut meets one of the grid's beats, not one at or past the piece's end.
            on = (np.abs(position - beat) * period <= ON_BEAT_S) & (beat < count)
        else:
            beat, on = np.zeros(0, dtype=int), np.zeros(0, dtype=bool)
        # The first downbeat is one of the grid's beats: a short piece may have too few.
        for downbeat in range(min(meter.beats, count)):
            heartbeat()
            score = sum(
                _cut_score(cut, int(b), meter, downbeat)
                for cut, b, hit in zip(cuts, beat, on, strict=True)
                if hit
            )
            # Ties go to the earliest phase and downbeat: music on the first sample.
            if score > best[0] + 1e-9:
                best = (score, phase_steps, downbeat)
    _, phase_steps, downbeat = best
    return _grid(phase_steps * step, period, duration_s), downbeat


def _grid(phase: float, period: float, duration_s: float) -> list[float]:
    """Beats of one constant tempo from `phase` to the end."""
    return [phase + k * period for k in range(_beat_count(phase, period, duration_s))]


def _beat_count(phase: float, period: float, duration_s: float) -> int:
    return math.floor((duration_s - phase) / period - 1e-9) + 1


# ---- a conductor's tempo map ------------------------------------------------------------


_Key = tuple[int, int]


@dataclass(frozen=True)
class _State:
    score: float
    # The previous anchor: its cut's index (-1: the first sample) and its state's key.
    previous: tuple[int, _Key] | None
    period: float
    beats: int


def distinct_hits(cuts: list[HitPoint]) -> list[HitPoint]:
    """The cuts (in time order) as the music meets them: of cuts closer together than
    DISTINCT_HIT_S, only the strongest (the first of equals)."""
    kept: list[HitPoint] = []
    cluster_start = -math.inf
    for cut in cuts:
        if cut.time_s - cluster_start >= DISTINCT_HIT_S:
            cluster_start = cut.time_s
            kept.append(cut)
        elif (cut.strong, cut.strength) > (kept[-1].strong, kept[-1].strength):
            kept[-1] = cut
    return kept


def _anchor_search(
    cuts: list[HitPoint],
    times: np.ndarray,
    period: float,
    flex: float,
    meter: Meter,
    look_back: int,
    beam: int,
    heartbeat: Callable[[], None],
) -> tuple[float, list[tuple[int, int]]]:
    """The best (cut, beat) anchors for a piece tempo of `period`, and their score."""
    low, high = period / (1 + flex), period * (1 + flex)
    origin = _State(0.0, None, period, 0)
    # Per cut: states keyed by (beat, tempo bucket), so paths that reach one beat at
    # different tempos (and so with different futures) are kept apart.
    states: list[dict[_Key, _State]] = []
    reached: list[int] = []
    best_score, best_end = 0.0, (-1, (0, 0))
    for j, cut in enumerate(times):
        heartbeat()
        options: dict[_Key, _State] = {}
        start = max(0, j - look_back)
        if not reached or reached[-1] < start:
            # Nothing reached in the window: reach back to the latest cut that was.
            start = reached[-1] if reached else 0
        sources = [(i, key, s) for i in range(start, j) for key, s in states[i].items()]
        if j < look_back or not reached:
            sources.append((-1, (0, 0), origin))
        for i, key, state in sources:
            begin = 0.0 if i < 0 else float(times[i])
            length = float(cut) - begin
            for count in range(max(1, math.ceil(length / high)), math.floor(length / low) + 1):
                new_period = length / count
                change = abs(math.log(new_period / state.period))
                if i >= 0 and change > MAX_BEAT_CHANGE * (state.beats + count) / 2:
                    continue
                beat = key[0] + count
                score = state.score + _cut_score(cuts[j], beat, meter, 0)
                score -= CHANGE_PENALTY * change**2 if i >= 0 else 0.0
                score -= DRIFT_PENALTY * math.log(new_period / period) ** 2 * count / 8
                # Cuts passed over that still fall on a beat of this span.
                for m in range(i + 1, j):
                    position = (float(times[m]) - begin) / new_period
                    if abs(position - round(position)) * new_period <= ON_BEAT_S:
                        score += _cut_score(cuts[m], key[0] + round(position), meter, 0)
                new_key = (beat, round(math.log(new_period) / PERIOD_BUCKET))
                if new_key not in options or score > options[new_key].score:
                    options[new_key] = _State(score, (i, key), new_period, count)
        kept = dict(sorted(options.items(), key=lambda item: -item[1].score)[:beam])
        states.append(kept)
        if kept:
            reached.append(j)
            key, state = max(kept.items(), key=lambda item: item[1].score)
            if state.score > best_score:
                best_score, best_end = state.score, (j, key)
    path: list[tuple[int, int]] = []
    node: tuple[int, _Key] | None = best_end
    while node is not None and node[0] >= 0:
        path.append((node[0], node[1][0]))
        node = states[node[0]][node[1]].previous
    return best_score, [(-1, 0), *reversed(path)]


def conducted_beats(
    anchors: list[tuple[int, float, float]],
    period: float,
    flex: float,
    duration_s: float,
    heartbeat: Callable[[], None],
) -> tuple[list[float], np.ndarray]:
    """Beat times of the smoothest map through (beat, time, weight) anchors, and how far each
    anchor's beat lands from its time.

    A linear program over the beat times (beat 0 at the first sample): every period within
    the flex of `period`, each within SOLVED_BEAT_CHANGE of the one before (both linear in the
    times), minimising the weighted misses of the anchors first, then the total tempo change
    and the drift. Being exact, it keeps every anchor the limits allow; missing in L1 leaves
    most anchors exactly on their beats and the unreachable ones far off. It is solved
    MAP_WINDOW_BEATS at a time (`heartbeat` between windows), each window going on from the
    last two beats the one before kept.
    """
    low, high = period / (1 + flex) * (1 + 1e-4), period * (1 + flex) * (1 - 1e-4)
    last_beat = max((a[0] for a in anchors), default=0)
    last_time = max((a[1] for a in anchors), default=0.0)
    count = last_beat + math.ceil(max(0.0, duration_s - last_time) / low) + 2
    beat = np.array([a[0] for a in anchors], dtype=int)
    at = np.array([a[1] for a in anchors], dtype=float)
    weight = np.array([a[2] for a in anchors], dtype=float)
    times = np.empty(count)
    start, pinned = 0, np.zeros(1)
    while True:
        heartbeat()
        end = min(count, start + MAP_WINDOW_BEATS)
        inside = (beat >= start) & (beat < end)
        window = _conducted_window(end - start, pinned, beat[inside] - start, at[inside],
                                   weight[inside], period, low, high)  # fmt: skip
        if end == count:
            times[start:] = window
            break
        keep = end - MAP_LOOK_AHEAD_BEATS
        times[start:keep] = window[: keep - start]
        start = keep - 2
        pinned = times[start:keep]
    beats = [float(t) for t in times[times < duration_s - 1e-9]]
    return beats, np.abs(times[beat] - at)


def _conducted_window(
    count: int,
    pinned: np.ndarray,
    beat: np.ndarray,
    at: np.ndarray,
    weight: np.ndarray,
    period: float,
    low: float,
    high: float,
) -> np.ndarray:
    """conducted_beats' program for `count` beats, the first ones `pinned` to their times."""
    spans, changes = count - 1, count - 2
    # Variables: the times (count), |period - piece period| per span, |change| per beat,
    # the miss per anchor.
    drift_at, change_at, miss_at = count, count + spans, count + spans + changes
    size = miss_at + len(beat)
    k = np.arange(spans)
    j = np.arange(changes)
    s = np.arange(len(beat))
    # Each block of rows: the columns, their coefficients, the bounds (A_ub @ x <= b_ub).
    rows: list[tuple[tuple[np.ndarray, ...], tuple[float, ...], np.ndarray]] = [
        # low <= t[k+1] - t[k] <= high
        ((k + 1, k), (1.0, -1.0), np.full(spans, high)),
        ((k + 1, k), (-1.0, 1.0), np.full(spans, -low)),
        # |t[k+1] - t[k] - period| <= drift[k]
        ((k + 1, k, drift_at + k), (1.0, -1.0, -1.0), np.full(spans, period)),
        ((k + 1, k, drift_at + k), (-1.0, 1.0, -1.0), np.full(spans, -period)),
        # (1 - c) p[j] <= p[j+1] <= (1 + c) p[j], with p[j] = t[j+1] - t[j]
        (
            (j + 2, j + 1, j),
            (1.0, -2.0 - SOLVED_BEAT_CHANGE, 1.0 + SOLVED_BEAT_CHANGE),
            np.zeros(changes),
        ),
        (
            (j + 2, j + 1, j),
            (-1.0, 2.0 - SOLVED_BEAT_CHANGE, -1.0 + SOLVED_BEAT_CHANGE),
            np.zeros(changes),
        ),
        # |p[j+1] - p[j]| <= change[j]
        ((j + 2, j + 1, j, change_at + j), (1.0, -2.0, 1.0, -1.0), np.zeros(changes)),
        ((j + 2, j + 1, j, change_at + j), (-1.0, 2.0, -1.0, -1.0), np.zeros(changes)),
        # |t[beat] - time| <= miss
        ((beat, miss_at + s), (1.0, -1.0), at),
        ((beat, miss_at + s), (-1.0, -1.0), -at),
    ]
    matrix_rows: list[np.ndarray] = []
    matrix_cols: list[np.ndarray] = []
    values: list[np.ndarray] = []
    bounds_ub: list[np.ndarray] = []
    first = 0
    for columns, coefficients, bound in rows:
        height = len(bound)
        for column, coefficient in zip(columns, coefficients, strict=True):
            matrix_rows.append(np.arange(first, first + height))
            matrix_cols.append(column)
            values.append(np.full(height, coefficient))
        bounds_ub.append(bound)
        first += height
    matrix = sparse.csr_array(
        (np.concatenate(values), (np.concatenate(matrix_rows), np.concatenate(matrix_cols))),
        shape=(first, size),
    )
    cost = np.zeros(size)
    cost[drift_at:change_at] = DRIFT_COST / period
    cost[change_at:miss_at] = 1.0 / period
    cost[miss_at:] = MISS_COST * weight / period
    bounds: list[tuple[float | None, float | None]] = [(float(t), float(t)) for t in pinned]
    bounds += [(None, None)] * (count - len(pinned)) + [(0.0, None)] * (size - count)
    solved = linprog(cost, A_ub=matrix, b_ub=np.concatenate(bounds_ub), bounds=bounds,
                     method="highs")  # fmt: skip
    if solved.status != 0:
        raise RuntimeError(f"the tempo map has no solution: {solved.message}")
    return solved.x[:count]


def _tempo_map(
    duration_s: float,
    cuts: list[HitPoint],
    bpm_range: tuple[float, float],
    preferred_bpm: float,
    meter: Meter,
    flex: float,
    heartbeat: Callable[[], None],
    take: int = 0,
) -> tuple[list[float], float]:
    """Beat times of the take's tempo map (the best for take 0), and the piece's (base)
    period."""
    # Anywhere in the genre's range, as a film composer picks the click that puts the hits on
    # beats; away from the tempo the picture asks for only where the cuts pay for it.
    low_bpm, high_bpm = bpm_range
    preferred = 60.0 / preferred_bpm
    steps = max(0, math.floor(math.log(high_bpm / low_bpm) / TEMPO_STEP))
    candidates = [60.0 / (low_bpm * math.exp(i * TEMPO_STEP)) for i in range(steps + 1)]
    candidates = sorted(set(candidates) | {preferred})
    times = np.array([c.time_s for c in cuts])
    if not cuts:
        # Nothing to meet: the picture's tempo, steady (no program to solve).
        return _grid(0.0, preferred, duration_s), preferred

    # The pull towards the preferred tempo grows with the number of cuts: each cut's chance of
    # falling near some beat grows with the tempo, which must not win by itself.
    pull = PREFERRED_PENALTY * max(1.0, len(cuts) / PREFERRED_PER_CUTS)

    def total(period: float, score: float) -> float:
        return score - pull * (math.log(period / preferred) / PREFERRED_SCALE) ** 2

    scored = []
    for candidate in candidates:
        score, found = _anchor_search(cuts, times, candidate, flex, meter, 3, 2, heartbeat)
        scored.append((total(candidate, score), len(found), candidate))
    scored.sort(reverse=True)
    best, anchored, best_period = scored[0]
    takes: list[float] = []
    for score, reached, period in scored:
        if score < best - TAKE_MARGIN * abs(best):
            break
        # Another take puts as many cuts on beats as the best (one that scored as well by
        # bar lines had missed a cut by 270 ms, and the ranking delivered it).
        if (
            reached >= anchored
            and abs(math.log(period / best_period)) <= TAKE_REACH
            and all(abs(math.log(period / other)) >= TAKE_CONTRAST for other in takes)
        ):
            takes.append(period)
    period = takes[take % len(takes)]
    searched: dict[tuple[tuple[int, int], ...], float] = {}
    for look_back in SEARCH_LOOK_BACKS:
        score, found = _anchor_search(cuts, times, period, flex, meter, look_back, BEAM,
                                      heartbeat)  # fmt: skip
        anchors = tuple(found)
        searched[anchors] = max(score, searched.get(anchors, score))
    # A search scores each span as if its beats were even, but the solved map is smooth and may
    # keep fewer cuts on beats than the search counted: the map kept is the one that really
    # puts the most on beats (the search's own score breaks ties).
    maps = []
    for anchors, score in searched.items():
        beats = _solved_map(cuts, times, anchors, period, flex, duration_s, heartbeat)
        maps.append((_map_score(cuts, times, beats, meter), score, beats))
    _, _, beats = max(maps, key=lambda item: item[:2])
    return beats, period


def _solved_map(
    cuts: list[HitPoint],
    times: np.ndarray,
    anchors: tuple[tuple[int, int], ...],
    period: float,
    flex: float,
    duration_s: float,
    heartbeat: Callable[[], None],
) -> list[float]:
    """Beat times through the search's (cut, beat) anchors, with the cuts that land near a
    beat anyway put on it and the anchors the limits put out of reach let go."""

    def point(cut: int, beat: int) -> tuple[int, float, float]:
        return beat, float(times[cut]), 1.0 + _anchor_weight(cuts[cut])

    points = [point(cut, beat) for cut, beat in anchors if cut >= 0]
    beats, misses = conducted_beats(points, period, flex, duration_s, heartbeat)
    # Cuts the search passed over that landed near a beat anyway: anchored too, so the map
    # puts them on it rather than a few milliseconds off (a cut's hit and the beat's notes
    # would flam).
    anchored_cuts = {cut for cut, _ in anchors}
    anchored_beats = {beat for beat, _, _ in points}
    grid = np.asarray(beats if len(beats) > 1 else [0.0, duration_s])
    nearest = _nearest_beats(grid, times)
    near = [
        point(cut, int(nearest[cut]))
        for cut in range(len(cuts) if len(beats) > 1 else 0)
        if cut not in anchored_cuts
        and int(nearest[cut]) not in anchored_beats
        and 0 < abs(grid[nearest[cut]] - times[cut]) <= ON_BEAT_S
    ]
    if near:
        points = sorted(points + near)
        beats, misses = conducted_beats(points, period, flex, duration_s, heartbeat)
    if np.any(misses > ON_BEAT_S):
        # Anchors the limits put out of reach still bend the map towards them: plan without.
        reachable = [p for p, miss in zip(points, misses, strict=True) if miss <= ON_BEAT_S]
        beats, _ = conducted_beats(reachable, period, flex, duration_s, heartbeat)
    return beats


def _nearest_beats(grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The index of each time's nearest beat, at once (the grid is sorted): the one after
    or the one before."""
    after = np.clip(np.searchsorted(grid, times), 1, len(grid) - 1)
    return np.where(grid[after] - times < times - grid[after - 1], after, after - 1)


def _map_score(
    cuts: list[HitPoint],
    times: np.ndarray,
    beats: list[float],
    meter: Meter,
    first_downbeat: int = 0,
) -> float:
    """The search's score of the cuts a solved map puts on its beats, its bars from
    `first_downbeat`."""
    if len(beats) < 2:
        return 0.0
    grid = np.asarray(beats)
    nearest = _nearest_beats(grid, times)
    return sum(
        _cut_score(cut, int(beat), meter, first_downbeat)
        for cut, beat, time in zip(cuts, nearest, times, strict=True)
        if abs(grid[beat] - time) <= ON_BEAT_S
    )


def _bar_phase(
    cuts: list[HitPoint], beats: list[float], meter: Meter, heartbeat: Callable[[], None]
) -> int:
    """The first downbeat of a solved map: the beat of the first bar's that puts the most
    strong cuts on bar lines, as a film composer starts the bars where the picture changes
    (the beats before it are a pickup; a tie keeps the first beat). With every bar from the
    first sample, a pop cue at 116 BPM had had none of its four cuts on a bar line, and its
    sections began half a bar from them."""
    if not cuts:
        return 0
    times = np.array([c.time_s for c in cuts])
    phases = range(min(meter.beats, len(beats)))
    scores = []
    for phase in phases:
        heartbeat()
        scores.append(_map_score(cuts, times, beats, meter, phase))
    return max(phases, key=lambda phase: scores[phase] - 1e-9 * phase)


def _anchor_weight(cut: HitPoint) -> float:
    return cut.strength + (1.0 if cut.boundary else 0.0)


# ---- form and ending ----------------------------------------------------------------------


def _sections(
    beats: list[float],
    bar_starts: list[int],
    segment_starts: list[float],
    changes: dict[float, float],
    duration_s: float,
    heartbeat: Callable[[], None],
) -> list[SectionTiming]:
    """A section per video segment, starting on the bar line nearest the segment's start
    (the first at the first sample, pickup included), with that start as its cue (of
    several, CUE_CHANGE chooses by `changes`); one shorter than MIN_SECTION_BARS after the
    first joins a neighbour (`_long_enough`).
    `heartbeat` is called per segment and section: with the bar phase's scores, a 25-minute
    piece's 5,000 segments had taken 40-50 ms unasked, on top of the tempo map's last
    window."""
    bar_times = np.array([beats[b] for b in bar_starts])
    firsts = {bar_starts[0]} if bar_starts else {0}
    # Each bar line's segment starts.
    near: dict[int, list[float]] = {}
    for start in segment_starts:
        heartbeat()
        if start > 0.0 and bar_times.size:
            first = bar_starts[int(np.argmin(np.abs(bar_times - start)))]
            firsts.add(first)
            near.setdefault(first, []).append(start)
    ordered = _long_enough(sorted(firsts), bar_starts)
    bar_beats = bar_starts[1] - bar_starts[0] if len(bar_starts) > 1 else 1
    sections = []
    for i, first in enumerate(ordered):
        heartbeat()
        last = ordered[i + 1] if i + 1 < len(ordered) else len(beats)
        # Its cue: of the segment starts of its bar lines (those of a short section it took
        # in too) within a bar of its own, the nearest, or the biggest change (CUE_CHANGE).
        bar_s = beats[min(first + bar_beats, len(beats) - 1)] - beats[first]
        starts = [start for bar in range(first, last, bar_beats) for start in near.get(bar, ())
                  if abs(start - beats[first]) <= bar_s]  # fmt: skip
        start_s = 0.0 if i == 0 else beats[first]
        cue_s = start_s
        if i and starts:
            nearest = min(starts, key=lambda start: abs(start - beats[first]))
            most = max(starts, key=lambda start: changes.get(start, 0.0))
            gain = changes.get(most, 0.0) - changes.get(nearest, 0.0)
            cue_s = most if gain >= CUE_CHANGE else nearest
        end_s = beats[last] if last < len(beats) else duration_s
        begin = 0 if i == 0 else first
        span = beats[max(0, begin - 1) : last + 1]
        bpm = 60.0 / float(np.mean(np.diff(span))) if len(span) > 1 else 60.0
        sections.append(SectionTiming(start_s, end_s, begin, last - begin, bpm, cue_s))
    return sections


def _long_enough(firsts: list[int], bar_starts: list[int]) -> list[int]:
    """Section starts (bar lines) where no section after the first lasts under
    MIN_SECTION_BARS: the shortest joins its shorter neighbour (the one before on a tie), as
    the tagger merges short shots (spans.merged_spans), so a run of one-bar sections pairs
    up (a run joining the section before it had made a video with a cut every 2.5 s one 30 s
    section). The first, its pickup's, may be shorter: the opening follows the first shot."""
    if not bar_starts or len(firsts) < 2:
        return firsts
    bar = {beat: index for index, beat in enumerate(bar_starts)}
    bounds = [bar[first] for first in firsts] + [len(bar_starts)]

    def shorter(span: tuple[float, float], neighbours: list[tuple[float, float]]) -> int:
        return min(range(len(neighbours)), key=lambda k: neighbours[k][1] - neighbours[k][0])

    kept = merged_spans(bounds, MIN_SECTION_BARS, shorter, keep_first=True)
    return [bar_starts[int(start)] for start, _ in kept]


def _final_beat(
    beats: list[float], bar_starts: list[int], duration_s: float, ring_s: float
) -> int | None:
    """The beat of the final tonic chord: the last bar line (else beat) leaving room for its
    hold and its release's `ring_s`, so a short piece still ends on a chord."""
    tail = min(ENDING_HOLD_S + ring_s, SHORT_TAIL_FRACTION * duration_s)
    for options in (bar_starts, range(len(beats))):
        fitting = [b for b in options if b > 0 and beats[b] + tail <= duration_s + 1e-9]
        if fitting and beats[fitting[-1]] >= duration_s * 0.5:
            return fitting[-1]
    return None
