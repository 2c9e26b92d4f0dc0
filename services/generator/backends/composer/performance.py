"""The arranged notes performed: dynamics by phrase and accent, players' small timing
offsets, ghost notes in the drums, the piano's sustain pedal, expression (MIDI CC 11) that
follows the sections' intensity and swells on long sustained notes, legato lines.

Every choice is seeded (the piece's generator), so a seed still gives one exact performance.
Notes that sound on a cut keep their exact time, the cut's own: they are what marks it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.generator.backends.composer.arrangement import (
    FLAM_S,
    SAME_BEAT,
    SUSTAINING,
    Arrangement,
    Note,
    Roles,
    SectionForm,
    hit_key,
    meter_swing,
    swung,
    up_stroke,
)
from services.generator.backends.composer.render import Control, ScheduledNote
from services.generator.backends.composer.styles import SNARE, Style
from services.generator.backends.composer.timing import TimingPlan

CC_EXPRESSION, CC_SUSTAIN = 11, 64
# Velocity added by position: the bar's downbeat, its other strong beat, off the beat.
DOWNBEAT_ACCENT, STRONG_ACCENT, OFFBEAT_ACCENT = 6, 3, -4
# Velocity over the four bars of a phrase (it grows into the third bar, relaxes at the end),
# scaled per part: the melody breathes most, a pad not at all (expression shapes it).
PHRASE_ARC = (-2.0, 1.0, 4.0, -1.0)
ARC_DEPTH = {"melody": 1.5, "comping": 1.0, "pulse": 0.8, "bass": 0.6, "drums": 0.5, "pad": 0.0}
# Standard deviation (ms) of each player's timing around the grid; sequenced sounds are tight.
TIMING_SD_MS = {"drums": 3.0, "bass": 4.0, "piano": 6.0, "acoustic-guitar": 7.0,
                "electric-guitar": 6.0, "strings": 9.0, "brass": 8.0, "woodwinds": 8.0,
                "plucks": 5.0, "pads": 0.0, "synth": 0.0, "lead-guitar": 7.0}  # fmt: skip
# Offsets are clipped to this (a player is loose, not late).
MAX_OFFSET_S = 0.02
# A note this close to a cut sounds on it, exactly.
ON_CUT_S = 0.002
# Expression by section intensity (0..3), and how it moves between sections.
EXPRESSION = (80, 92, 106, 120)
EXPRESSION_RAMP_BEATS = 1.0
# Swells: a sustained note of at least SWELL_MIN_BEATS starts at SWELL_FROM of the section's
# expression and reaches it over SWELL_BEATS; steps every CONTROL_STEP_S.
SWELL_MIN_BEATS = 2.0
SWELL_FROM = 0.72
SWELL_BEATS = 1.0
CONTROL_STEP_S = 0.04
# Sustain pedal: down just after each chord change, up just before the next.
PEDAL_DOWN_S = 0.03
PEDAL_UP_S = 0.02
PEDALLED = ("piano",)
# Legato: a sustained line's note rings into the next one by this much.
LEGATO_S = 0.04
# Ghost notes: quiet snare strokes on free sixteenths, velocity range.
GHOST_VELOCITY = (18, 30)


@dataclass(frozen=True)
class Performance:
    notes: dict[str, list[ScheduledNote]]
    controls: dict[str, list[Control]]


def with_ghost_notes(
    notes: list[Note], plan: TimingPlan, forms: Sequence[SectionForm], style: Style,
    cut_times: Sequence[float], rng: np.random.Generator, heartbeat: Callable[[], None],
) -> list[Note]:  # fmt: skip
    """The drums' notes plus ghost strokes on free off-beat sixteenths in busier sections
    (as many as the style's `ghost_notes` share), never on a cut's hit or within FLAM_S of
    it, nor from the final chord on (a stroke 2.5 s into a corporate piece's dying final
    chord had come 19 dB over it)."""
    if style.ghost_notes <= 0 or not any(n.instrument == "drums" for n in notes):
        return notes
    steps = plan.meter.steps
    # Where the drums already strike (swung as they are).
    swing = meter_swing(style, steps)
    taken = {round(n.start, 6) for n in notes if n.instrument == "drums"}
    last = plan.final_beat if plan.final_beat is not None else len(plan.beats_s) - 1
    ghosts = []
    for form in forms:
        heartbeat()
        if form.intensity < 2:
            continue
        for step in range(form.start_beat * steps, form.end_beat * steps):
            beat = swung(step / steps, swing)
            if step % 2 == 0 or round(beat, 6) in taken or rng.random() >= style.ghost_notes:
                continue
            # Not beside a cut's hit either, where a ghost stroke would smear it (a flam).
            if beat >= last or _near_cut(plan.beat_time(beat), cut_times, FLAM_S):
                continue
            velocity = int(rng.integers(GHOST_VELOCITY[0], GHOST_VELOCITY[1] + 1))
            ghosts.append(Note("drums", SNARE, beat, swung((step + 1) / steps, swing), velocity))
    return sorted([*notes, *ghosts], key=lambda n: (n.start, n.instrument, n.pitch))


def shaped(
    notes: Sequence[Note],
    plan: TimingPlan,
    roles: Roles,
    arrangement: Arrangement,
    heartbeat: Callable[[], None],
) -> list[Note]:
    """Velocities shaped by accent (position in the bar, a cut's hit as a downbeat: a hit
    between beats had been played as an off-beat, softer) and by the phrase's arc, per part;
    ghost strokes stay ghosts, and the cut accents in the final chord's ring keep theirs,
    falling as it dies away: past the last bar line no bar or phrase shapes them (a bar's
    downbeat accent had made the last louder than the one before)."""
    final = arrangement.final
    result = []
    for note in notes:
        heartbeat()
        ghost = note.instrument == "drums" and note.velocity <= GHOST_VELOCITY[1]
        if ghost or (final is not None and note.start > final.start + SAME_BEAT):
            result.append(note)
            continue
        depth = ARC_DEPTH.get(_main_part(roles, note.instrument), 1.0)
        hit = hit_key(note.start) in arrangement.cut_hits
        accent = DOWNBEAT_ACCENT if hit else _accent(note.start, plan)
        velocity = note.velocity + accent + depth * _arc(note.start, plan)
        result.append(Note(note.instrument, note.pitch, note.start, note.end,
                           min(127, max(1, round(velocity)))))  # fmt: skip
    return result


def perform(
    by_instrument: Mapping[str, Sequence[Note]],
    plan: TimingPlan,
    forms: Sequence[SectionForm],
    arrangement: Arrangement,
    sample_rate: int,
    rng: np.random.Generator,
    heartbeat: Callable[[], None],
    timing_sd_ms: Mapping[str, float],
    strum_ms: Mapping[str, float],
) -> Performance:
    """The notes at the samples they sound (seeded offsets around the grid, as loose as
    TIMING_SD_MS and the style's `timing_sd_ms` say; legato; the chords of a player in
    `strum_ms` strummed, that many ms a string), and
    each instrument's controller changes. What starts or ends on a beat where the
    arrangement hits a cut does so at its cut's time.
    A beat within ON_BEAT_S of a cut is its hit in the score; played on the plan's beat, the
    hit had sounded up to 25 ms off its cut (ambient, a cut at 1.600 s: 16 ms late, and its
    first onset 37 ms after the cut), and a hit beside the beat's notes is a flam."""

    def sounding(beat: float) -> float:
        cut = arrangement.cut_hits.get(hit_key(beat))
        return plan.beat_time(beat) if cut is None else cut

    cut_times = arrangement.cut_times
    scheduled: dict[str, list[ScheduledNote]] = {}
    controls: dict[str, list[Control]] = {}
    # The music sounds from the first sample: the first notes are exactly there.
    first = min((n.start for played in by_instrument.values() for n in played), default=0.0)
    spreads_ms = {**TIMING_SD_MS, **timing_sd_ms}
    for instrument, played in by_instrument.items():
        spread = spreads_ms.get(instrument, 5.0) / 1000.0
        # One draw per note, in order: the same seed plays the same.
        offsets = np.clip(rng.normal(0.0, spread, len(played)), -MAX_OFFSET_S, MAX_OFFSET_S)
        result = []
        string_ms = strum_ms.get(instrument)
        delays = _strum_delays(played, string_ms / 1000.0) if string_ms else [0.0] * len(played)
        stroke_beat, stroke_offset = None, 0.0
        for note, offset, delay in zip(played, offsets, delays, strict=True):
            heartbeat()
            start_s = sounding(note.start)
            on_cut = note.start <= first or _near_cut(start_s, cut_times)
            # A hand strikes a chord at once: a player's notes struck on one beat share the
            # first one's offset (each note's own had spread a chord by up to 20 ms, and
            # rolled a strum's strings out of order). A drummer's limbs keep their own.
            if instrument == "drums" or note.start != stroke_beat:
                stroke_beat, stroke_offset = note.start, 0.0 if on_cut else float(offset)
            offset = stroke_offset
            start_s += delay
            end_s = sounding(note.end) + max(offset, 0.0)
            start = max(0, round((start_s + offset) * sample_rate))
            result.append(
                ScheduledNote(
                    note.pitch,
                    note.velocity,
                    start,
                    max(start + 1, round(end_s * sample_rate)),
                )
            )
        heartbeat()
        if instrument in SUSTAINING:
            result = _legato(result, round(LEGATO_S * sample_rate))
        heartbeat()
        scheduled[instrument] = result
        controls[instrument] = _expression(played, plan, forms, arrangement, instrument,
                                           sample_rate, first)  # fmt: skip
        heartbeat()
        if instrument in PEDALLED:
            controls[instrument] += _pedal(arrangement.chord_starts, sounding, sample_rate)
            controls[instrument].sort(key=lambda c: c.sample)
    return Performance(scheduled, controls)


def strummers(style: Style, roles: Roles) -> dict[str, float]:
    """The players who strum their chords (a strummed comping part's), and each one's ms
    from string to string."""
    if style.comping_technique != "strum":
        return {}
    return {player: style.strum_ms for player in roles.of("comping")}


def _strum_delays(played: Sequence[Note], string_s: float) -> list[float]:
    """Per note, its delay in its strum: the notes struck on one beat, low to high from the
    beat (a downstroke), high to low between beats (an up-stroke), `string_s` apart."""
    strokes: dict[float, list[int]] = {}
    for index, note in enumerate(played):
        strokes.setdefault(note.start, []).append(index)
    delays = [0.0] * len(played)
    for beat, indices in strokes.items():
        ordered = sorted(indices, key=lambda i: played[i].pitch, reverse=up_stroke(beat))
        for string, index in enumerate(ordered):
            delays[index] = string * string_s
    return delays


def _main_part(roles: Roles, instrument: str) -> str:
    parts = roles.parts_of(instrument)
    return parts[0] if parts else "comping"


def _near_cut(time_s: float, cut_times: Sequence[float], within: float = ON_CUT_S) -> bool:
    i = bisect.bisect_left(cut_times, time_s - within)
    return i < len(cut_times) and cut_times[i] <= time_s + within


def _accent(beat: float, plan: TimingPlan) -> int:
    position = beat - plan.pickup_beats
    in_bar = position % plan.meter.beats
    if abs(in_bar - round(in_bar)) > 1e-6:
        return OFFBEAT_ACCENT
    if round(in_bar) % plan.meter.beats == 0:
        return DOWNBEAT_ACCENT
    if plan.meter.beats == 4 and round(in_bar) == 2:
        return STRONG_ACCENT
    return 0


def _arc(beat: float, plan: TimingPlan) -> float:
    bar = int((beat - plan.pickup_beats) // plan.meter.beats)
    return PHRASE_ARC[bar % len(PHRASE_ARC)]


def _legato(notes: list[ScheduledNote], overlap: int) -> list[ScheduledNote]:
    """Each note rings into the next note's start (never past the next note of its pitch)."""
    starts = sorted({n.start_sample for n in notes})
    next_of_pitch: dict[int, int] = {}
    result = []
    for note in sorted(notes, key=lambda n: -n.start_sample):
        limit = next_of_pitch.get(note.pitch, 1 << 62)
        following = bisect.bisect_right(starts, note.start_sample)
        end = note.end_sample
        if following < len(starts) and abs(starts[following] - note.end_sample) <= overlap:
            end = min(note.end_sample + overlap, limit)
        result.append(ScheduledNote(note.pitch, note.velocity, note.start_sample, end))
        next_of_pitch[note.pitch] = note.start_sample
    return sorted(result, key=lambda n: n.start_sample)


def _expression(
    notes: Sequence[Note], plan: TimingPlan, forms: Sequence[SectionForm],
    arrangement: Arrangement, instrument: str, sample_rate: int, first: float,
) -> list[Control]:  # fmt: skip
    """CC 11 following each section's intensity, ramped over a beat into the beat where its
    texture takes over (`Arrangement.texture_starts`: its bar line, or its cut inside a bar,
    where a busier section's parts had come in at the old expression and reached their own a
    bar later), and over a breakdown's build into its drop (the band swells into it: ramped
    over its last beat, the build had risen 1-3 LU from the breakdown to the drop's 10, a
    music review); sustained instruments swell into their long notes (not the piece's first,
    which sounds from the first sample, nor a build's, which the build's own rise carries,
    nor its drop's, which lands at the level the build reached: it had dipped 6 dB there).
    One curve: a swell starts from its share of the level where it sounds, ramp or not (the
    ramp's and the swells' steps had been interleaved, a pad's expression jumping between
    the two every 40 ms through a build, a music review)."""
    starts = arrangement.texture_starts
    builds = {drop: start for start, drop in arrangement.builds}

    def level(form: SectionForm) -> int:
        return EXPRESSION[min(max(form.intensity, 0), len(EXPRESSION) - 1)]

    def steps(start_s: float, end_s: float) -> np.ndarray:
        return np.linspace(start_s, end_s, max(1, int((end_s - start_s) / CONTROL_STEP_S)) + 1)

    # The sections' levels, ramped between them, as (seconds, value) corners.
    corner_s, corner_value = [0.0], [float(level(forms[0]))]
    times = [np.zeros(1)]
    pairs = zip(itertools.pairwise(forms), itertools.pairwise(starts), strict=True)
    for (previous, form), (since, start) in pairs:
        if level(form) != level(previous):
            begin = max(since, builds.get(start, start - EXPRESSION_RAMP_BEATS))
            begin_s, start_s = plan.beat_time(begin), plan.beat_time(start)
            corner_s += [begin_s, start_s]
            corner_value += [float(level(previous)), float(level(form))]
            times.append(steps(begin_s, start_s))
    # The swells: (start, end) in seconds, in order.
    swells: list[tuple[float, float]] = []
    if instrument in SUSTAINING:
        seen: set[float] = set()
        for note in notes:
            if note.end - note.start < SWELL_MIN_BEATS or note.start in seen or note.start <= first:
                continue
            if any(low - 1e-9 <= note.start <= drop + 1e-9 for low, drop in arrangement.builds):
                continue
            seen.add(note.start)
            swell = (
                plan.beat_time(note.start),
                plan.beat_time(note.start + min(SWELL_BEATS, note.end - note.start)),
            )
            swells.append(swell)
            times.append(steps(*swell))
    swells.sort()
    swell_starts = [low for low, _ in swells]
    at = np.unique(np.concatenate(times))
    values = np.interp(at, corner_s, corner_value)
    for i, time_s in enumerate(at):
        # The latest swell begun by then shapes it, while it lasts.
        j = bisect.bisect_right(swell_starts, time_s + 1e-9) - 1
        if j >= 0 and time_s < swells[j][1] - 1e-9:
            low, high = swells[j]
            values[i] *= SWELL_FROM + (1.0 - SWELL_FROM) * (time_s - low) / (high - low)
    controls: list[Control] = []
    for time_s, value in zip(at, np.round(values).astype(int), strict=True):
        if not controls or value != controls[-1].value:
            controls.append(Control(round(time_s * sample_rate), CC_EXPRESSION, int(value)))
    return controls


def _pedal(
    chord_starts: Sequence[float], sounding: Callable[[float], float], sample_rate: int
) -> list[Control]:
    """The sustain pedal changed at every chord (where it sounds): up just before it, down
    just after."""
    controls = []
    for beat in chord_starts:
        time_s = sounding(max(beat, 0.0))
        controls.append(Control(max(0, round((time_s - PEDAL_UP_S) * sample_rate)), CC_SUSTAIN, 0))
        controls.append(Control(round((time_s + PEDAL_DOWN_S) * sample_rate), CC_SUSTAIN, 127))
    return controls
