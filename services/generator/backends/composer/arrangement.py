"""From a timing plan, a style and the video's form to notes: band, harmony, parts, cut events.

Positions are in beats of the timing plan (beat i starts at plan.beats_s[i]; negative beats
are the pickup before the first beat). The genre is the band: its style row casts the parts
(drums, bass, comping, pulse, pad, melody), writes their patterns and its harmony. The video
shapes the form: each section's intensity follows its segment's energy, sections that look
like the opening bring back the opening material (A), others the contrast (B), the biggest
turn in the second half may lift the key, and a section leading into a busier one ends on the
dominant. Every cut gets a musical event: on its beat when within rules.ON_BEAT_S of it,
with the beat's notes, else at its exact time.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from services.domain import Look, MusicTags
from services.generator.backends.composer import styles as drum_keys
from services.generator.backends.composer.styles import (
    KICKS,
    PARTS,
    PLAYABLE,
    SECOND_PLAYERS,
    TUNE_ACCENT,
    TUNED_KITS,
    Pattern,
    Style,
)
from services.generator.backends.composer.theory import (
    Chord,
    Key,
    chord,
    dominant_into,
    nearest,
    nearest_in,
    open_voicing,
    pitches_in,
    scale_step,
    voice,
)
from services.generator.backends.composer.timing import HitPoint, TimingPlan
from services.rules import ON_BEAT_S

# Bowed and blown instruments hold their notes; a held pitch is tied across bars.
SUSTAINING = ("strings", "pads", "brass", "woodwinds")
# Seconds a player can hold one note: a horn or a flute takes a breath and plays it again,
# where a tie would have held a horn's chord tone 13 s (bows change unheard; a pad has no
# need to).
BREATH_S = {"brass": 8.0, "woodwinds": 8.0}
# Seconds one note is tied across bars and chords before it is struck again with the next:
# a player's breath, and a held common tone of pads or strings, which had become a drone
# (a lo-fi pad had held one note 87-105 s, under every chord of three sections, in a
# long-form review; lo-fi's and ambient's strings 69-82 s of a 90 s scene, and lo-fi's
# through a whole 3-minute piece).
LONGEST_TIE_S = {**BREATH_S, "pads": 12.0, "strings": 12.0}
# Which part an instrument the casting left over doubles.
DOUBLES = {"strings": "pad", "pads": "pad", "brass": "pad", "woodwinds": "melody",
           "plucks": "pulse", "synth": "pulse", "piano": "comping", "acoustic-guitar": "comping",
           "electric-guitar": "comping", "bass": "bass", "drums": "drums",
           "lead-guitar": "melody"}  # fmt: skip
# Parts that may be played by an instrument that already plays another, when no other
# instrument of the band can: by the same player (a pianist's two hands), or by a second
# player of it where one could not play both (styles.SECOND_PLAYERS).
SHAREABLE = ("melody", "comping")
# An up-stroke between beats catches the top strings only.
UP_STROKE_STRINGS = 3
# Picture instruments the genre admits as colour, at most.
MAX_COLOURS = 2
# Energy (0.6 x segment + 0.4 x whole piece) at which each intensity 1..3 begins.
INTENSITY_THRESHOLDS = (0.15, 0.35, 0.6)
# The levels a section is played at (1 quiet .. 3 full; intensity 0 plays at 1).
LEVELS = (1, 2, 3)
# A section whose look is this close to the opening's brings back the opening material.
SAME_LOOK = 0.12
# A piece of this many sections or more ends on the opening material.
BOOKEND_SECTIONS = 3
# A section takes the parallel mode only if it lasts this many bars: a shorter trip had
# sounded like another cue spliced in (3 to 7 bars in a parallel major, three times in a
# 3-minute montage, in every genre).
MODE_CHANGE_MIN_BARS = 8
# The biggest turn lifts the key only if it is at least this strong, in a piece this long.
LIFT_CHANGE = 0.25
# The lifted key is heard this many bars at least before the final chord: a lift on the
# ending's section alone had resolved a build on the home key's dominant a whole step too
# high (three of four 30 s cinematic and orchestral pieces in a music review).
LIFT_MIN_BARS = 4
LIFT_MIN_S = 20.0
# The final chord sounds this long before its release, into the tail's fade where the last
# bar line comes late (it had been struck and let go within 0.3 s: a stab, not an ending, in
# hip-hop 0.42 s before the fade).
FINAL_HOLD_S = 1.0
# Where the final chord leaves less than its hold and its space's ring (Space.ring_s), the
# release tail keeps at least this share of what is left (the hold a second had pushed the
# release to the end: a 1-2 s piece cut mid-chord, 3-17 s ones faded in 0.1-0.25 s).
RELEASE_TAIL_SHARE = 0.4
# A tune note held this many beats or more rests on a steady chord tone (Chord.rubs).
HELD_NOTE_BEATS = 1.0
# Bars of one statement of a section's material (two four-bar phrases): a longer section
# states it again developed, as a return does (a minute-long scene had played one four-bar
# unit, tune and chords, six times over).
STATEMENT_BARS = 8
# The final chord's velocities in a section of level FINAL_LEVEL or busier; a calmer one plays
# it as much softer as its bars are played (a calm piece's chord, kick and crash had all come
# 12 over its bars, the crash over the piece's own loudest cut hits).
FINAL_LEVEL = 2
FINAL_VELOCITY = {"chord": 78, "bass": 86, "melody": 82, "crash": 100}
# Each harmony part's velocity against the bar's (the pad behind the comping, the pulse
# between); the final chord keeps them (a calm pop piece's pad had ended 8 over its bars).
PART_VELOCITY = {"pad": -10, "comping": -4, "pulse": -8}
# A cut's hit stands this far over the velocity its section plays at (strong, weak cut), up
# to the loudest hits (a loud section's): a crash at full velocity in a quiet close had come
# 8 dB over it. The band's stab takes CUT_ACCENT over its bars, up to CUT_VELOCITY; the
# drums' hit CUT_OVER_GROOVE over the loudest stroke the drums play in the section (held to
# CUT_VELOCITY too, it had come under the groove's accented downbeats in a busy section: a
# crash and kick at 112 among kicks at 118-122).
CUT_ACCENT = (28, 18)
CUT_VELOCITY = (112, 100)
CUT_OVER_GROOVE = (8, 0)
# Cuts after the final chord's strike are marked in its ring as it dies away: a light accent
# alone (a cymbal or the like, no kick), at a velocity falling from the first to the second
# figure between the chord's strike and the end. Each had been marked as in the section before
# (kick and all, 98-111): in a fast montage's close, four strokes on the beat after the final
# chord, 9-31 dB over its fading ring, the loudest after its release. Softer, they no longer
# mark the cut: from 72 to 44, librosa found no onset at 12 of 57 such cuts of bench_music's
# montage (90 to 72: 2, ambient's harp).
TAIL_CUT_VELOCITY = (96, 80)
# Two strokes of the drums this close, seconds, are heard as one smeared stroke (a flam): the
# groove's own strokes this near a cut's hit, not struck with it, give way to it (a snare
# 42 ms after a cut's crash and kick, a tom 42 ms after its cymbal).
FLAM_S = 0.06
# A strong cut between beats stops the drums for this many beats before its hit (and the
# players who stab at it: `_struck_with_stabs`).
CUT_STOP_BEATS = 0.5
# A cut this soon after the one before is part of a flurry: a light accent, not a big hit.
FLURRY_GAP_S = 1.2
# A cymbal that marks the music (a section's crash, a strong cut's) sounds at most once in
# this many bars; the cymbals between are left out, the cut keeping the rest of its hit (the
# kick, the band's stab). On a video cut every bar each strong cut had struck its crash,
# 23-40 cymbals a minute (a music review); a drummer marks a phrase, every four bars or more.
CYMBAL_GAP_BARS = 4
# A section whose cut lies this many beats or more from its bar line hands the texture over
# at the cut, inside the bar (the parts in and out, the levels, the groove), and its tune
# keeps to the bar lines: on the bar line, the energy had changed up to 1.7 s before or
# after the picture (a music review, 36 of 69 steps of 4 dB more than 0.5 s before a cut).
HANDOVER_MIN_BEATS = 0.5
# A chord's tone struck this close to a tune note on its pitch (beats) doubles it.
UNISON_BEATS = 0.1
# How much harder a section's first bar is played (its accent), velocity.
SECTION_ACCENT = 6
# What is left of a held note where a texture hands over, in beats, for it to be struck
# there instead (a part entering on the cut); less is left out.
HANDOVER_HOLD_BEATS = 1.0
# A pickup shorter than this, seconds, is too short to be heard as one: the first chord is the
# downbeat's, from the first sample (at a user's 140 BPM a pickup of 2/64 had struck a chord and,
# 54 ms later, the downbeat's: a stumble).
SHORT_PICKUP_S = 0.12
# A first section of two bars up to this many that is the first shot (no cut before the next
# section's) is all intro: the tune and the band come in on the first cut (after a one-bar
# intro they had come in a bar before it, a median 2.2 s before the picture changed, in 73
# of 165 pieces on 15 and 30 s clips; in a first shot of three bars, 3.3 s before it, 8-12
# LU louder where the picture did not change, music review 9). One of a bar has no intro:
# the band plays from the first sample. A montage's first section, short shots merged, keeps
# a bar's intro.
INTRO_ONLY_MAX_BARS = 3
# The pickup's chord before an intro (or a pickup too short for one), softly.
PICKUP_VELOCITY = 60
# Beats: a cut this close after a bar line is on it (its hit and the crash are one).
SAME_BEAT = 0.05
# A cut's accent in the band stands this much (velocity) over what the same players strike
# within this many beats of it.
ACCENT_OVER, ACCENT_SPAN = 4, 2.0
# How much harder a build's drums and pulse strike at its drop than at its start.
BUILD_RISE = 24
DRUM_VELOCITY = {"X": 112, "x": 92, "o": 52}


def swung(beat: float, swing: float) -> float:
    """A grid position in beats, swung as a drum machine swings its sixteenths: in each half
    of the beat the second sixteenth comes `swing` of an eighth late (hip-hop's 0.16: 0,
    0.33, 0.5, 0.83 of the beat), the positions after it sharing what is left of the half in
    proportion, and the eighths stay straight. Swung by the eighth instead (the off-beat
    `swing` of a beat late, the first half straight), the sixteenths had fallen at 0, 0.25,
    0.66, 0.83, a limp of 161, 264, 108 and 110 ms at 93 BPM (a music review); stretching the
    first half too had made a triplet grid that madmom heard as a pulse 1.5 times the
    tempo."""
    if not swing:
        return beat
    half = math.floor(beat * 2 + 1e-9) / 2
    within = (beat - half) * 2
    if within < 0.5:
        return beat
    late = 0.5 + swing
    return half + (late + (within - 0.5) * (1.0 - late) / 0.5) / 2


def meter_swing(style: Style, steps: int) -> float:
    """The style's swing in a meter of `steps` grid steps a beat: none where the beat divides
    in three (6/8)."""
    return style.swing if steps % 2 == 0 else 0.0


@dataclass
class Note:
    instrument: str
    pitch: int
    start: float  # beats
    end: float  # beats
    velocity: int


@dataclass(frozen=True)
class Roles:
    """Which instruments play which part (an instrument may play two)."""

    parts: dict[str, tuple[str, ...]]

    def of(self, part: str) -> tuple[str, ...]:
        return self.parts.get(part, ())

    def parts_of(self, instrument: str) -> list[str]:
        return [part for part, players in self.parts.items() if instrument in players]

    def players(self, band: Sequence[str]) -> list[str]:
        """The band's instruments, then the second players the casting added."""
        added = [p for players in self.parts.values() for p in players if p not in band]
        return [*band, *dict.fromkeys(added)]


def asked_instruments(tags: MusicTags) -> list[str]:
    """The instruments asked for: by the user, the prompt, or a brief without origins."""
    sources = {o.tag: o.source for o in tags.origins if o.kind == "instrument"}
    return [i for i in tags.instruments if sources.get(i, "user") in ("user", "prompt")]


def choose_band(style: Style, tags: MusicTags, negative: Sequence[str]) -> list[str]:
    """The genre's core, the instruments asked for, and up to MAX_COLOURS of the picture's
    instruments that the genre admits, less negatives."""
    asked = asked_instruments(tags)
    colours = [i for i in tags.instruments if i not in asked and i in style.colours]
    band = [*style.core, *asked, *colours[:MAX_COLOURS]]
    return [i for i in dict.fromkeys(band) if i not in set(negative)]


def assign_roles(style: Style, band: list[str]) -> Roles:
    parts: dict[str, list[str]] = {part: [] for part in PARTS}
    used: set[str] = set()
    for part in PARTS:
        free = [i for i in style.casting[part] if i in band and i not in used]
        shared = [i for i in style.casting[part] if i in band] if part in SHAREABLE else []
        if free or shared:
            player = free[0] if free else SECOND_PLAYERS.get(shared[0], shared[0])
            parts[part].append(player)
            used.add(player)
    for instrument in band:
        if instrument not in used:
            parts[DOUBLES[instrument]].append(instrument)
            used.add(instrument)
    return Roles({part: tuple(players) for part, players in parts.items() if players})


@dataclass(frozen=True)
class SectionForm:
    start_beat: int
    end_beat: int
    energy: float
    intensity: int
    role: str  # intro | main | ending
    # "A" (the opening's material) or "B" (contrast), and how often it was heard before.
    material: str
    repeat: int
    key: Key


@dataclass(frozen=True)
class SectionVideo:
    """What the video does over one section: its energy, look and moods."""

    energy: float
    look: Look
    moods: list[str]


def intensity_of(energy: float) -> int:
    return sum(energy >= threshold for threshold in INTENSITY_THRESHOLDS)


def _look_distance(a: Look, b: Look) -> float:
    return (
        abs(a.brightness - b.brightness)
        + abs(a.saturation - b.saturation)
        + abs(a.warmth - b.warmth)
        + 0.5 * abs(a.contrast - b.contrast)
    ) / 3.5


def section_forms(
    plan: TimingPlan,
    video: list[SectionVideo],
    piece_energy: float,
    style: Style,
    key: Key,
    duration_s: float,
    mood_modes: Mapping[str, str],
    key_is_users: bool,
) -> list[SectionForm]:
    """The form: per section its intensity, material (A where the picture looks like the
    opening, and in the last of BOOKEND_SECTIONS or more), key (a whole step up from the
    video's strongest late turn that rises in energy, where the style lifts: the last
    chorus's lift, never into a quiet close, and LIFT_MIN_BARS before the final chord) and
    mode: a middle section of MODE_CHANGE_MIN_BARS or more whose moods all lean to the
    other mode takes the parallel key (`mood_modes`: each mood's mode). The first and last
    sections keep the mode. A user's key (`key_is_users`) holds throughout: no lift, no
    parallel key (the sample video scored in rock and F# minor had gone on in G# minor from
    its strongest late turn)."""
    opening = video[0].look
    changes = [0.0] + [
        _look_distance(video[i - 1].look, video[i].look)
        + abs(video[i].energy - video[i - 1].energy)
        for i in range(1, len(video))
    ]
    lift_at = None
    if style.lift == "up2" and not key_is_users and duration_s >= LIFT_MIN_S and len(video) >= 3:
        rises = [i for i in range(1, len(video)) if video[i].energy > video[i - 1].energy]
        last = plan.final_beat if plan.final_beat is not None else len(plan.beats_s)
        room = LIFT_MIN_BARS * plan.meter.beats
        late = [i for i in rises if plan.sections[i].start_s >= 0.4 * duration_s
                and plan.sections[i].first_beat + room <= last]  # fmt: skip
        if late:
            turn = max(late, key=lambda i: changes[i])
            lift_at = turn if changes[turn] >= LIFT_CHANGE else None
    forms = []
    heard = {"A": 0, "B": 0}
    for i, section in enumerate(plan.sections):
        energy = 0.6 * video[i].energy + 0.4 * piece_energy
        material = "A" if _look_distance(video[i].look, opening) < SAME_LOOK else "B"
        if i == len(plan.sections) - 1 >= BOOKEND_SECTIONS - 1:
            # A piece of several sections closes on its opening material, as most music
            # does (in a montage whose shots never look like the first, it had never come
            # back: 15 of 16 sections were the contrast).
            material = "A"
        end = section.first_beat + section.beat_count
        final = plan.final_beat
        role = "intro" if i == 0 else "main"
        # The final chord's section, and any after it (a last shot in its ring: it had been a
        # "main" section of no chords after the ending).
        if final is not None and final < end and i > 0:
            role = "ending"
        lifted = lift_at is not None and i >= lift_at
        tonic = (key.tonic + 2) % 12 if lifted else key.tonic
        leanings = {mood_modes[m] for m in video[i].moods if m in mood_modes}
        middle = 0 < i < len(plan.sections) - 1 and role != "ending" and not key_is_users
        settles = section.beat_count >= MODE_CHANGE_MIN_BARS * plan.meter.beats
        mode = leanings.pop() if middle and settles and len(leanings) == 1 else key.mode
        forms.append(
            SectionForm(
                start_beat=section.first_beat,
                end_beat=end,
                energy=energy,
                intensity=intensity_of(energy),
                role=role,
                material=material,
                repeat=heard[material],
                key=Key(tonic, mode),
            )
        )
        heard[material] += 1
    return forms


Progression = tuple[str, ...]


def choose_progressions(
    style: Style, home: str, rng: np.random.Generator
) -> dict[tuple[str, str], Progression]:
    """Per mode (the home mode's first), the progression of the opening's material (A) and of
    the contrast (B), from the style's pools. B is never A's loop started on another chord
    (pop's IV I V vi against I V vi IV) where the pool holds another: the contrast would be
    heard as the same loop."""
    chosen = {}
    for mode in dict.fromkeys([home, *style.progressions]):
        pools = style.progressions[mode]
        opening = pools["A"][int(rng.integers(len(pools["A"])))]
        contrasts = [p for p in pools["B"] if not _rotation_of(p, opening)] or list(pools["B"])
        chosen[mode, "A"] = opening
        chosen[mode, "B"] = contrasts[int(rng.integers(len(contrasts)))]
    return chosen


def _rotation_of(progression: Progression, other: Progression) -> bool:
    doubled = [*other, *other]
    return len(progression) == len(other) and any(
        tuple(doubled[i : i + len(other)]) == tuple(progression) for i in range(len(other))
    )


class _BarPlay(NamedTuple):
    """How `Composer._bar` plays a bar: the section's form, the bar's position in it, and
    whether it is the intro's, ends with a fill, ends a phrase."""

    form: SectionForm
    position: int
    intro: bool
    fill: bool
    phrase_end: bool


class _Push(NamedTuple):
    """A bar line the band strikes early, at a cut just before it (`Composer._pushed`): the
    cut's beat, the bar line's, the drum keys its hit plays and each stabbing player's
    velocity there."""

    cut: float
    bar_line: float
    keys: frozenset[int]
    stabs: dict[str, int]


# A tune bar starts on a chord tone at most a fifth (in semitones) from the note before.
MAX_BAR_LEAP = 7
# A note of the tune as `Composer._melody` plays it: pitch, start, end, velocity.
TuneNote = tuple[int, float, float, int]


def _reach(pitch: int, steps: Sequence[int], key: Key, low: int, high: int) -> int:
    """How many of `steps` (scale degrees) a line from `pitch` takes inside [low, high]."""
    for taken, step in enumerate(steps):
        pitch = scale_step(pitch, step, key)
        if not low <= pitch <= high:
            return taken
    return len(steps)


def _onward(
    previous: int, pitch: int, step: int, classes: tuple[int, ...], low: int, high: int
) -> int:
    """The pitch of `classes` nearest `pitch` that still moves from `previous` the way the
    contour's `step` does (up, down); the nearest of all where none does. The nearest alone
    had turned a step up onto the note before it, or back below it, and the motif's shape
    was lost on its return."""
    options = pitches_in(classes, low, high)
    onward = [p for p in options if (p - previous) * step > 0] if step else options
    return nearest(pitch, onward or options)


def _playing_velocity(level: int) -> int:
    """The velocity a section plays its bars at, by its level (1..3), before phrasing."""
    return 54 + 12 * level


def _stroke_velocity(symbol: str, level: int) -> int:
    """The velocity of a groove's stroke (DRUM_VELOCITY's symbol) at a level (1..3)."""
    return DRUM_VELOCITY[symbol] - 8 * (3 - level)


@dataclass(frozen=True)
class ChordSpan:
    start: float
    end: float
    chord: Chord
    numeral: str


@dataclass
class Arrangement:
    notes: list[Note] = field(default_factory=list)
    # Per section: the roman numeral of each bar, and which instruments play in it.
    section_chords: list[list[str]] = field(default_factory=list)
    section_instruments: list[list[str]] = field(default_factory=list)
    # Beat at which the final chord's notes end (its release tail follows).
    end_beat: float = 0.0
    # Beats where the harmony changes (the piano's pedal follows them).
    chord_starts: list[float] = field(default_factory=list)
    # The chords, span by span, up to the final chord; then the final chord's (None where
    # the piece has none).
    harmony: list[ChordSpan] = field(default_factory=list)
    final: ChordSpan | None = None
    # Each beat where a cut is hit (rounded with `hit_key`), to the cut's own time in
    # seconds: the performance plays every note struck there at that time, exactly (on a
    # beat within ON_BEAT_S of the cut, the beat sounds with its cut, not up to 25 ms off).
    cut_hits: dict[float, float] = field(default_factory=dict)
    # Per section, the beat where its texture (parts, levels, expression) takes over: its
    # bar line, or its cut inside a bar (`Composer._handovers`).
    texture_starts: list[float] = field(default_factory=list)
    # Each breakdown's build (Style.builds), from its first bar (or the breakdown's cut, where
    # that came less than a bar before it) to the beat its drop's texture takes over: the
    # band swells into the drop over it (performance.py).
    builds: list[tuple[float, float]] = field(default_factory=list)

    @property
    def cut_times(self) -> list[float]:
        """Where the cuts' hits sound, seconds, in order."""
        return sorted(self.cut_hits.values())


def up_stroke(beat: float) -> bool:
    """Whether a strum struck at `beat` is an up-stroke: between beats (on one, a downstroke)."""
    return float(beat) % 1.0 > 1e-6


def hit_key(beat: float) -> float:
    """A beat position as `Arrangement.cut_hits` keys it (a note's start, computed on the
    grid, matches its hit's beat to far better than a microbeat)."""
    return round(beat, 6)


# One bar of a tune: onsets (beats into the bar) and the scale steps to each note.
Motif = tuple[list[float], list[int]]


def _varied(motif: Motif, repeat: int, steps: int, bar_beats: int) -> Motif:
    """`motif` on its `repeat`-th return: as it was, then with a note added halfway across
    its longest gap (on the grid of `steps` a beat), then with an off-beat note left out
    (the last one, where all are on beats), in turn. Its first note stays."""
    onsets, contour = list(motif[0]), list(motif[1])
    variation = repeat % 3
    if variation == 1:
        ends = [*onsets[1:], float(bar_beats)]
        gap, at = max((b - a, i) for i, (a, b) in enumerate(zip(onsets, ends, strict=True)))
        added = onsets[at] + round(gap / 2 * steps) / steps
        if gap * steps >= 2 and added not in onsets:
            onsets.insert(at + 1, added)
            # The added note passes between its neighbours: a step on in the line's way.
            contour.insert(at + 1, 1 if (contour[at + 1 :] or [1])[0] >= 0 else -1)
    elif variation == 2 and len(onsets) > 2:
        off = [i for i in range(1, len(onsets)) if abs(onsets[i] - round(onsets[i])) > 1e-6]
        dropped = off[-1] if off else len(onsets) - 1
        del onsets[dropped], contour[dropped]
    return onsets, contour


def on_kit(notes: list[Note], kit: int, arrangement: Arrangement) -> list[Note]:
    """The notes with the drums' as `kit` plays them (styles.TUNED_KITS): its timpani tuned
    to the chord sounding at each hit, its cymbals where it has them; as they are on any
    other kit."""
    tuned = TUNED_KITS.get(kit)
    spans = [*arrangement.harmony, *([arrangement.final] if arrangement.final else [])]
    if tuned is None or not spans:
        return notes
    starts = [span.start for span in spans]
    low, high = tuned.timpani

    def timpano(pitch_class: int, above: int = 0) -> int:
        """The lowest timpani key of the pitch class above `above`, else its lowest."""
        keys = [key for key in range(low, high + 1) if key % 12 == pitch_class]
        return next((key for key in keys if key > above), keys[0])

    played = []
    for note in notes:
        pitch = note.pitch
        if note.instrument != "drums":
            played.append(note)
            continue
        if pitch in tuned.roots or pitch in tuned.fifths:
            sounding = spans[max(bisect.bisect_right(starts, note.start + 1e-9) - 1, 0)].chord
            root = timpano(sounding.root)
            fifth = (sounding.root + sounding.fifth) % 12
            pitch = root if pitch in tuned.roots else timpano(fifth, above=root)
        else:
            pitch = tuned.keys.get(pitch, pitch)
        played.append(dataclasses.replace(note, pitch=pitch))
    return played


# Common substitutions for a varied return of a progression (same function, new colour).
SUBSTITUTES = {"I": "vi", "vi": "IV", "IV": "ii", "V": "Vsus4", "ii": "IV", "iii": "I",
               "i": "bVI", "bVI": "iv", "iv": "ii°", "bVII": "v", "bIII": "i", "v": "bVII",
               "Imaj7": "vi7", "vi7": "IVmaj7", "IVmaj7": "ii7", "ii7": "IVmaj7", "V7": "iii7",
               "i7": "bVImaj7", "bVImaj7": "iv7", "iv7": "ii7", "bIIImaj7": "i7"}  # fmt: skip


class Composer:
    """Writes the notes of one piece; all choices come from `rng`, so a seed fixes them."""

    def __init__(
        self,
        plan: TimingPlan,
        style: Style,
        roles: Roles,
        forms: list[SectionForm],
        cuts: list[HitPoint],
        duration_s: float,
        rng: np.random.Generator,
        heartbeat: Callable[[], None],
        asked: Collection[str] = (),
    ):
        self.plan = plan
        # Called often while composing; it raises to cancel.
        self.heartbeat = heartbeat
        self.style = style
        self.meter_name = plan.meter.name
        self.steps = plan.meter.steps
        self._swing = meter_swing(style, self.steps)
        self.bar_beats = plan.meter.beats
        self.roles = roles
        self.forms = forms
        # Instruments the user asked for, and the busiest sections' level (see `_joins`).
        self._asked = frozenset(asked)
        self._top_level = max((self._level(form, False) for form in forms), default=1)
        self.cuts = cuts
        # Beats of the cuts, each marked by a hit of its own (`_mark_cuts`).
        self._cut_beats = sorted(plan.beat_at(c.time_s) for c in cuts)
        # The crashes that open sections and the final chord's, (beat, key, whether it is kept
        # whatever the spacing: a rise's, the final chord's), as they are struck (`_spaced`).
        self._crashes: list[tuple[float, int, bool]] = []
        # The sections busier than the one before, and the calm ones after a busier one,
        # where a genre breaks down (Style.breakdowns; the next rise is its drop).
        pairs = list(itertools.pairwise(forms))
        self._rises = {after.start_beat for before, after in pairs
                       if after.intensity > before.intensity}  # fmt: skip
        # (A calm section after a breakdown goes on with it: a calm close had brought the
        # kick back, a drop with nothing rising in the picture.)
        self._breakdowns: set[int] = set()
        for earlier, later in pairs if self.meter_name in style.breakdowns else ():
            calm = self._level(later, False) == 1
            if calm and (earlier.intensity >= 2 or earlier.start_beat in self._breakdowns):
                self._breakdowns.add(later.start_beat)
        self.duration_s = duration_s
        self.rng = rng
        self.result = Arrangement()
        # The bar lines of each section.
        bar_starts = plan.bar_starts
        self._bars = [
            bar_starts[bisect.bisect_left(bar_starts, form.start_beat) :
                       bisect.bisect_left(bar_starts, form.end_beat)]
            for form in forms
        ]  # fmt: skip
        # All of them, in order.
        self._bar_lines = [b for bars in self._bars for b in bars]
        # The bars of a breakdown's build (Style.builds), by their place in it: its last two
        # before a drop, where a bar of the breakdown comes before them, else its last.
        self._builds: dict[int, int] = {}
        for form, after, bars in zip(forms, forms[1:], self._bars, strict=False):
            if self.meter_name not in style.builds or form.start_beat not in self._breakdowns:
                continue
            if after.start_beat in self._breakdowns or len(bars) < 2:
                continue
            build = bars[-2:] if len(bars) >= 3 else bars[-1:]
            self._builds |= {bar: 2 - len(build) + n for n, bar in enumerate(build)}
        self._breaths = {player: self._breath_bars(BREATH_S[player])
                         for player in roles.of("pulse") if player in BREATH_S}  # fmt: skip
        self.harmony: list[ChordSpan] = []
        # The spans' starts, in order, to find the chord at a beat by bisection.
        self._span_starts: list[float] = []
        self._voicings: dict[str, tuple[int, ...]] = {}
        self._ranges = {player: self._placed(player) for part in PARTS for player in roles.of(part)
                        if player != "drums"}  # fmt: skip
        # What the players whose notes were moved into their range already strike, by
        # (instrument, pitch, start): a chord's voice moved onto another is struck once.
        self._struck: set[tuple[str, int, float]] = set()
        # The tune's lead-ins (`_lead_in`): player, pitch, cut and the bar line it leads to.
        self._lead_ins: list[tuple[str, int, float, int]] = []
        self._bass_pitch = sum(style.register("bass")) // 2
        self._melody_pitch = (style.melody_range[0] + style.melody_range[1]) // 2
        # Seeded choices that hold for the whole piece: progressions (per mode, for sections
        # in the parallel key), the accompaniment's pattern variants, motifs.
        self._progressions = choose_progressions(style, forms[0].key.mode, rng)
        self._variant = {m: int(rng.integers(8)) for m in ("A", "B")}
        self._motifs = {m: self._motif() for m in ("A", "B")}
        self._substitution = int(rng.integers(4))
        # Each motif's answer: the third bar of a phrase, another rhythm (drawn after the
        # choices above, which stay the seed's, as do those below).
        self._answers = {m: self._answer(self._motifs[m]) for m in ("A", "B")}
        # The drummer's groove, per material and level, as a drummer picks one for each
        # section's energy: one draw for every level had given another seed the same drums
        # throughout, one time in three.
        self._grooves = {(m, level): int(rng.integers(8)) for m in ("A", "B") for level in LEVELS}
        # Where each material's tune first began, as a degree of its key (semitones above the
        # tonic): it begins there again on each return (`_melody`), each section (by its
        # first beat) that brings a material back after the other's. A section of the
        # material it follows goes on from it, as its progression does.
        self._theme_degrees: dict[str, int] = {}
        # Each material's hook (`Style.hook_bars`), by bar of its phrase: its notes (pitch,
        # onset and release in beats into the bar, accent over the bar's velocity), as first
        # played.
        self._hooks: dict[tuple[str, int], list[TuneNote]] = {}
        self._returns = {
            form.start_beat
            for before, form in zip([None, *forms[:-1]], forms, strict=True)
            if before is None or before.material != form.material
        }
        # The bar of each intro section (by its first beat) where the tune comes in, after the
        # intro's bars: its phrases count from there.
        self._tune_entries = {
            form.start_beat: self._intro_bars(len(bars))
            for form, bars in zip(forms, self._bars, strict=True)
            if form.role == "intro" and bars
        }
        # Sections of one material in one key and mode that follow each other are one run:
        # its progression, its tune's phrases and its statements go on through their cuts
        # (restarted at every section, a montage's tune had seldom finished a phrase: 18 of
        # 41 in a 4-minute pop piece, its chords going on meanwhile). Per section (by its
        # first beat): the run's first repeat, and the run's bars before it, from the tune's
        # entry.
        self._runs: dict[int, tuple[int, int]] = {}
        repeat = offset = 0
        for before, form, bars in zip([None, *forms[:-1]], forms, self._bars, strict=True):
            if before is None or (before.material, before.key) != (form.material, form.key):
                repeat, offset = form.repeat, 0
            self._runs[form.start_beat] = (repeat, offset)
            offset += len(bars) - self._tune_entries.get(form.start_beat, 0)

    # ---- the plan of the piece ----------------------------------------------------------

    def compose(self) -> Arrangement:
        plan = self.plan
        final = plan.final_beat
        end_seconds = self.duration_s
        if final is not None:
            end_seconds -= release_tail_s(self.duration_s - plan.beats_s[final], plan.ring_s)
        self.result.end_beat = plan.beat_at(end_seconds)
        self._plan_harmony()
        self.result.chord_starts = [span.start for span in self.harmony]
        self.result.harmony = list(self.harmony)
        if final is not None:
            self.result.chord_starts.append(float(final))
        handovers = self._handovers()
        self.result.texture_starts = [
            float(form.start_beat) if beat is None else beat
            for form, beat in zip(self.forms, handovers, strict=True)
        ]
        self.result.builds = [
            (self._build_start(bars, heard), drop)
            for bars, heard, drop in zip(self._bars, self.result.texture_starts,
                                         self.result.texture_starts[1:], strict=False)
            if any(bar in self._builds for bar in bars)
        ]  # fmt: skip
        under_way = plan.pickup_beats > 1e-6 and self._band_plays_the_pickup()
        carried: set[str] = set()
        for index, (form, bars) in enumerate(zip(self.forms, self._bars, strict=True)):
            playing, carried = carried, set()
            if index == 0 and plan.pickup_beats > 1e-6:
                playing |= self._pickup(under_way)
            next_form = self.forms[index + 1] if index + 1 < len(self.forms) else None
            arriving = handovers[index]
            leaving = handovers[index + 1] if next_form is not None else None
            for position, start in enumerate(bars):
                self.heartbeat()
                if final is not None and start >= final:
                    break
                end = start + self.bar_beats
                if final is not None:
                    end = min(end, final)
                intro = position < self._tune_entries.get(form.start_beat, 0)
                last = position == len(bars) - 1
                # Into a handover the cut's hit leads, not a fill at the bar line.
                fill = last and next_form is not None and next_form.intensity >= 2
                fill = fill and leaving is None
                phrase_end = self._phrase_bars(form, position) % 4 == 3
                here = _BarPlay(form, position, intro, fill, phrase_end)
                if position == 0 and arriving is not None and arriving > start:
                    # The section before plays on to the cut, its tune already done (an
                    # intro all through goes on as one).
                    at = len(self._bars[index - 1])
                    went_on = self._tune_entries.get(self.forms[index - 1].start_beat) == at
                    previous = self.forms[index - 1]
                    ended = self._phrase_bars(previous, at) % 4 == 3
                    before = _BarPlay(previous, at, went_on, False, ended)
                    went, came = self._handed_over(start, end, arriving, before, here)
                    self.result.section_instruments[-1] = sorted(
                        {*self.result.section_instruments[-1], *went}
                    )
                    playing |= came
                elif last and leaving is not None and start < leaving < end:
                    # The next section's texture from the cut; its tune from its bar line.
                    assert next_form is not None
                    after = _BarPlay(next_form, -1, False, False, False)
                    went, carried = self._handed_over(start, end, leaving, here, after)
                    playing |= went
                else:
                    # A section handed over before its bar line has its accent at the cut;
                    # a band already playing its pickup goes on without one.
                    opening = not (position == 0 and arriving is not None)
                    opening = opening and not (index == 0 and under_way)
                    playing |= self._bar(start, end, form, position, intro, fill, phrase_end,
                                         opening=opening)  # fmt: skip
            if final is not None and form.start_beat <= final < form.end_beat:
                heard = playing.union(*self.result.section_instruments)
                playing |= self._final_chord(final, form, heard)
            sounding = [b for b in bars if final is None or b <= final]
            self.result.section_chords.append(self._numerals(sounding))
            self.result.section_instruments.append(sorted(playing))
        if plan.pickup_beats > 1e-6 and self._pickup_too_short():
            self._downbeat_from_the_first_sample()
        self._tie_lead_ins()
        self._entries_on_their_cuts()
        self._clear_unisons()
        self._keep_under_the_tune()
        self._mark_cuts()
        self._gather_builds()
        return self.result

    def _build_start(self, bars: Sequence[int], heard: float) -> float:
        """Where a breakdown's build begins: its first bar, or where the breakdown's texture
        came in (`heard`, at a cut inside the bar before) if that was less than a bar before
        it. After a breakdown of a bar or so the build had begun at its last bar line, its
        rise a second long and 3-4 LU (a music review)."""
        first = float(min(bar for bar in bars if bar in self._builds))
        return heard if first - self.bar_beats < heard < first else first

    def _gather_builds(self) -> None:
        """A build's drums, pulse and tune struck harder as it goes, by up to BUILD_RISE at
        its drop: a crescendo into it (the tune's own accents had fallen through each bar of
        the build, 99 to 74, against the band's swell; a music review)."""
        roles = self.roles
        players = {*roles.of("drums")[:1], *roles.of("pulse")[:1], *roles.of("melody")}
        notes = self.result.notes
        for start, drop in self.result.builds:
            for index, note in enumerate(notes):
                if note.instrument in players and start <= note.start < drop:
                    rise = round(BUILD_RISE * (note.start - start) / (drop - start))
                    notes[index] = dataclasses.replace(
                        note, velocity=min(127, note.velocity + rise)
                    )

    def _entries_on_their_cuts(self) -> None:
        """A player coming in on a bar line that a cut follows by less than
        HANDOVER_MIN_BEATS comes in on the cut: its notes struck from the bar line are struck
        at the cut, those that would have ended by then left out. Where the texture changes
        on that bar line (a section's start, whose texture does not hand over inside the bar,
        or the end of an intro's first bars, when the tune and the band come in) every
        player comes in anew; elsewhere those who did not play in the bar before. They
        had come in up to half a beat before the picture, the cut's hit then striking their
        chord again (a music review: a pop montage's bass, chord and lead 117 ms before the
        cut, +7 to +10 dB there and +1.7 dB at the cut; 43 of 396 montage cuts lay 0.05-0.5
        beat from their bar line)."""
        plan, notes = self.plan, self.result.notes
        changes = {form.start_beat for form in self.forms[1:]}
        changes |= {bars[self._tune_entries[form.start_beat]]
                    for form, bars in zip(self.forms, self._bars, strict=True)
                    if self._tune_entries.get(form.start_beat, len(bars)) < len(bars)}  # fmt: skip
        bar_lines = self._bar_lines
        drums = set(self.roles.of("drums"))
        ordered = sorted(notes, key=lambda n: n.start)
        starts = [n.start for n in ordered]
        longest = max((n.end - n.start for n in notes), default=0.0)
        # Per bar line, the first cut after it and who comes in there (None: everyone).
        entries: dict[float, tuple[float, set[str] | None]] = {}
        for cut in sorted(self.cuts, key=lambda c: c.time_s):
            self.heartbeat()
            beat = plan.beat_at(cut.time_s)
            at = bisect.bisect_right(bar_lines, beat) - 1
            if at < 0 or self._on_beat(beat) or beat - bar_lines[at] >= HANDOVER_MIN_BEATS:
                continue
            if plan.final_beat is not None and beat >= plan.final_beat:
                continue
            bar_line = bar_lines[at]
            if bar_line in entries:
                continue
            playing = None
            if bar_line not in changes:
                earlier = ordered[bisect.bisect_left(starts, bar_line - self.bar_beats - longest) :
                                  bisect.bisect_left(starts, bar_line)]  # fmt: skip
                playing = {n.instrument for n in earlier if n.end > bar_line - self.bar_beats}
            entries[bar_line] = (beat, playing)
        lines = sorted(entries)
        kept: list[Note] = []
        for note in notes:
            self.heartbeat()
            at = bisect.bisect_right(lines, note.start + 1e-9) - 1
            entry, playing = entries[lines[at]] if at >= 0 else (-math.inf, None)
            ending = entries.get(note.end) if note.instrument not in drums else None
            if ending is not None and note.start < note.end - 1e-9:
                # Let go on the bar line, where the others come in at the cut after it, the
                # note is held on to the cut: released there, it had left nothing sounding
                # up to the cut (0.06-0.33 s at 16 of 18 such cuts), the downbeat heard
                # as missed.
                held_to, players = ending
                if players is None or note.instrument not in players:
                    note = dataclasses.replace(note, end=held_to)
            if (
                note.start >= entry
                or note.instrument in drums
                or (playing is not None and note.instrument in playing)
            ):
                kept.append(note)
            elif note.end > entry + 1e-9:
                kept.append(dataclasses.replace(note, start=entry))
        notes[:] = kept

    def _clear_unisons(self) -> None:
        """A chord's tone struck with the tune on the tune's own pitch (the comping's or the
        pad's top voice, often, or a note of the pulse's figure) moves an octave down within
        its part's register, else is left out: held on, it smeared the line (lo-fi's Rhodes
        held a tune's pitch 3.4 s after the tune moved on; pop's piano doubled 15-35% of its
        lead's notes; ambient's harp struck 11% of its notes with the tune, on its pitch)."""
        tune = set(self.roles.of("melody"))
        chordal = {player: part for part in ("comping", "pad", "pulse")
                   for player in self.roles.of(part)
                   if player not in tune and player != "drums"}  # fmt: skip
        notes = self.result.notes
        onsets: dict[int, list[float]] = {}
        for note in notes:
            if note.instrument in tune:
                onsets.setdefault(note.pitch, []).append(note.start)
        taken = {(n.instrument, n.pitch, n.start) for n in notes}
        kept: list[Note] = []
        for note in notes:
            self.heartbeat()
            part = chordal.get(note.instrument)
            struck = onsets.get(note.pitch, ())
            if part is None or not any(abs(note.start - s) < UNISON_BEATS for s in struck):
                kept.append(note)
                continue
            lower = (note.instrument, note.pitch - 12, note.start)
            if note.pitch - 12 >= self._floor(note.instrument, part) and lower not in taken:
                taken.add(lower)
                kept.append(dataclasses.replace(note, pitch=note.pitch - 12))
        notes[:] = kept

    def _floor(self, player: str, part: str) -> int:
        """The lowest pitch `player` may sound in `part`: its register, where its instrument
        plays it."""
        placed = self._ranges.get(player)
        floor = self.style.register(part)[0] + (placed[0] if placed else 0)
        return max(floor, placed[1]) if placed is not None else floor

    def _keep_under_the_tune(self) -> None:
        """A chord's tone or a pulse's note that would sound over the tune moves down by
        octaves under the lowest tune note sounding with it, within its part's register;
        where it cannot, it stays, unless it lies a semitone over a tune note sounding with
        it: then it is left out (a folk pluck a minor second over a held tune note, its
        octave below out of its register, had ground against it; a music review). The ear
        follows the highest line, and the tune dips under
        the chords now and then: a piano's chords had sounded over 55% of a pop lead's notes
        in one piece, electronic's pads over 51% (a music review: 18 of 120 pieces over a
        quarter), and stabs over a held tune note covered it. A style row may let them
        shimmer over it (ambient's harp and strings, over a sparse tune)."""
        if not self.style.under_the_tune:
            return
        tune = set(self.roles.of("melody"))
        chordal = {player: part for part in ("comping", "pad", "pulse")
                   for player in self.roles.of(part)
                   if player not in tune and player != "drums"}  # fmt: skip
        notes = self.result.notes
        tune_notes = sorted((n for n in notes if n.instrument in tune), key=lambda n: n.start)
        starts = [n.start for n in tune_notes]
        longest = max((n.end - n.start for n in tune_notes), default=0.0)
        taken = {(n.instrument, n.pitch, n.start) for n in notes}
        grinding: set[int] = set()
        for index, note in enumerate(notes):
            self.heartbeat()
            part = chordal.get(note.instrument)
            if part is None:
                continue
            near = tune_notes[bisect.bisect_left(starts, note.start - longest) :
                              bisect.bisect_left(starts, note.end)]  # fmt: skip
            sounding = [t.pitch for t in near if t.end > note.start]
            lowest = min(sounding, default=None)
            if lowest is None or note.pitch < lowest:
                continue
            pitch = note.pitch - 12 * ((note.pitch - lowest) // 12 + 1)
            if pitch >= self._floor(note.instrument, part) and (
                note.instrument, pitch, note.start) not in taken:  # fmt: skip
                taken.discard((note.instrument, note.pitch, note.start))
                taken.add((note.instrument, pitch, note.start))
                notes[index] = dataclasses.replace(note, pitch=pitch)
            elif note.pitch - 1 in sounding:
                grinding.add(index)
        if grinding:
            self.result.notes = [n for i, n in enumerate(notes) if i not in grinding]

    def _handovers(self) -> list[float | None]:
        """Per section, the beat inside a bar where its texture takes over from the one
        before, at its cut (HANDOVER_MIN_BEATS); None where it changes on its bar line: the
        first section, a cut after the bar line of a change of key (the old texture, its tune
        in the old key, would play on over the new chords), a cut at the final chord or
        beyond, a bar that another handover splits already. Before the bar line of a change
        of key, the new texture comes in at the cut and the old tune stops there
        (`_handed_over`): the texture had waited for the bar line, and a drop into a key's
        lift had come up to a bar after the picture turned busy (a music review)."""
        plan, forms = self.plan, self.forms
        handovers: list[float | None] = [None] * len(forms)
        split: set[int] = set()
        for index in range(1, len(forms)):
            form, before = forms[index], forms[index - 1]
            beat = plan.beat_at(plan.sections[index].cue_s)
            beat = float(round(beat)) if self._on_beat(beat) else beat
            bar_line = form.start_beat
            late_into_a_key = form.key != before.key and beat > bar_line
            if late_into_a_key or abs(beat - bar_line) < HANDOVER_MIN_BEATS:
                continue
            if plan.final_beat is not None and beat >= plan.final_beat:
                continue
            if not (self._bars[index] and self._bars[index - 1]):
                continue
            bar = self._bars[index][0] if beat > bar_line else self._bars[index - 1][-1]
            if bar in split or not bar < beat < bar + self.bar_beats:
                continue
            split.add(bar)
            handovers[index] = beat
        return handovers

    def _handed_over(
        self, start: int, end: int, cut: float, before: _BarPlay, after: _BarPlay
    ) -> tuple[set[str], set[str]]:
        """A bar whose texture hands over at the beat `cut`: `before`'s parts up to it,
        `after`'s from it, and the tune of whichever starts a section (`after` at position 0)
        or ends one, whole, played at the level of the texture around it. Who plays in each."""
        melody = self.roles.of("melody")
        tune_after = after.position == 0
        # Into a change of key the old tune stops at the cut (the new chords may come in
        # there, `_plan_harmony`), else it ends its bar.
        tune_kept = not tune_after and before.form.key == after.form.key
        mark = played = len(self.result.notes)
        went = self._bar(start, end, *before, tune=not tune_after)
        self._windowed(mark, start, cut, keep=melody if tune_kept else ())
        if not tune_after and not tune_kept:
            # The next bar's tune goes on from its last note heard.
            heard = [n for n in self.result.notes if n.instrument in melody[:1]]
            if heard:
                self._melody_pitch = max(heard, key=lambda n: n.start).pitch
        if tune_kept:
            self._tune_dynamics(mark, cut, end, self._level_change(before.form, after.form))
        mark = len(self.result.notes)
        came = self._bar(start, end, *after, tune=tune_after)
        self._windowed(mark, cut, end, keep=melody if tune_after else ())
        if not tune_after and (not tune_kept or after.form.intensity > before.form.intensity):
            came |= self._lead_in(cut, end, after.form, played)
        self._rise_crash_without_a_cut(after.form, cut)
        self._bass_on_the_cut(mark, cut, end, came)
        if tune_after:
            # The section's accent comes with its texture, at the cut.
            calmer = self._level_change(after.form, before.form) - SECTION_ACCENT
            self._tune_dynamics(mark, start, cut, calmer)
        return went, came

    def _lead_in(self, cut: float, bar_line: int, form: SectionForm, since: int) -> set[str]:
        """Where a section is handed over at a cut before its bar line and no tune sounds
        from the cut (into a change of key the old tune stops there; a busier section may
        come in over the old tune's rest at its phrase's end), the tune struck at the cut and
        held to the bar line: the chord's steady tone there nearest where it was, at the new
        section's opening accent; its next bar goes on from there. A drop had come in without
        its lead until the bar line (about a second; the mix 2-3 dB lower there; a music
        review). `since`: the mark of the bar's notes. Who plays it."""
        if self._tune_entries.get(form.start_beat, 0) or self._tune_rests(form, 0):
            return set()
        tune = self.roles.of("melody")
        notes = self.result.notes[since:]
        if any(n.instrument in tune and n.start < bar_line and n.end > cut + 1e-3 for n in notes):
            return set()
        level = self._level(form, False)
        low, high = self.style.melody_range
        pitch = nearest_in(self._melody_pitch, self._chord_at(cut).steady_tones, low, high)
        velocity = _playing_velocity(level) + SECTION_ACCENT + self.style.tune_accent + 6
        playing = set()
        for number, player in enumerate(tune):
            if self._joins(player, 1 if number == 0 else 3, level, number == 0):
                self._add(player, pitch, cut, cut + (bar_line - cut) * 0.95, velocity - 10 * number)
                self._lead_ins.append((player, pitch, cut, bar_line))
                playing.add(player)
        if playing:
            self._melody_pitch = pitch
        return playing

    def _tie_lead_ins(self) -> None:
        """A lead-in whose next bar's tune begins on its pitch is held on through that note,
        tied over the bar line: struck again 50 ms after its release, it had stuttered (music
        review 9)."""
        notes = self.result.notes
        for player, pitch, cut, bar_line in self._lead_ins:
            at = {n.start: i for i, n in enumerate(notes)
                  if n.instrument == player and n.pitch == pitch}  # fmt: skip
            lead, following = at.get(cut), at.get(float(bar_line))
            if lead is not None and following is not None:
                notes[lead] = dataclasses.replace(notes[lead], end=notes[following].end)
                del notes[following]

    def _rise_crash_without_a_cut(self, form: SectionForm, beat: float) -> None:
        """A rise handed over at `beat` where no cut is (its segment turns without one): its
        crash there, as on a bar line. A cut's hit is a handover's only accent, so such a
        rise had had none (an electronic lift's drop, its crash 2.6 beats after it, on a
        flat cut's)."""
        drums = self.roles.of("drums")[:1]
        cuts = self._cut_beats
        near = cuts[bisect.bisect_left(cuts, beat - 0.25) : bisect.bisect_right(cuts, beat + 0.25)]
        if not drums or near or form.start_beat not in self._rises or self._level(form, False) < 2:
            return
        self._add(drums[0], self.style.crash, beat, beat + 0.5, 100)
        self._crashes.append((beat, self.style.crash, True))

    def _bass_on_the_cut(self, mark: int, cut: float, end: float, playing: set[str]) -> None:
        """The bass of a texture that takes over at a cut on a beat (`playing` in it)
        strikes there, as on a section's downbeat: where its line (the notes added since
        `mark`, up to `end`) rests on the cut, the chord's root from the cut to its next note.
        Its line's rhythm, bar by bar, had left it silent from the cut for up to a beat
        (0.3-1 s) at 76 of 432 handovers in every genre. Between beats, or in a band without
        drums, a strong cut's stab strikes it (`_mark_cuts`)."""
        bass = self.roles.of("bass")[:1]
        if not bass or bass[0] not in playing or not self.roles.of("drums"):
            return
        line = [n for n in self.result.notes[mark:] if n.instrument == bass[0]]
        if not self._on_beat(cut) or any(n.start <= cut + SAME_BEAT < n.end for n in line):
            return
        following = min((n.start for n in line if n.start > cut), default=end)
        harmony = self._chord_at(cut)
        pitch = nearest_in(self._bass_pitch, (harmony.root,), *self.style.register("bass"))
        level = self._level(self.forms[self._texture_at(cut)], intro=False)
        velocity = max((n.velocity for n in line), default=_playing_velocity(level))
        self._add(bass[0], pitch, cut, following, velocity)

    def _level_change(self, source: SectionForm, target: SectionForm) -> int:
        """How much harder `target`'s bars are played than `source`'s (velocity)."""
        target_level, source_level = self._level(target, False), self._level(source, False)
        return _playing_velocity(target_level) - _playing_velocity(source_level)

    def _tune_dynamics(self, mark: int, low: float, high: float, change: int) -> None:
        """The tune's notes added since `mark` and struck from beat `low` to `high`, played
        `change` harder (a section's tune on the other side of its cut, at the level of the
        texture around it)."""
        tune = set(self.roles.of("melody"))
        notes = self.result.notes
        for i in range(mark, len(notes)):
            note = notes[i]
            if note.instrument in tune and low <= note.start < high:
                velocity = min(127, max(1, note.velocity + change))
                notes[i] = dataclasses.replace(note, velocity=velocity)

    def _windowed(
        self,
        mark: int,
        low: float,
        high: float,
        keep: Collection[str] = (),
        hold: float = HANDOVER_HOLD_BEATS,
    ) -> None:
        """The notes added since `mark` as they sound from beat `low` to `high` (a texture
        handing over to another inside a bar): one sounding across `low` is struck there
        instead where `hold` beats of it are left (a pad, a held chord: the part enters on
        the cut), else left out, as is every drum stroke before `low`; one sounding past
        `high` is let go there. The players in `keep` (the tune, phrased by bars) keep their
        notes whole."""
        notes = self.result.notes
        drums = set(self.roles.of("drums"))
        kept: list[Note] = []
        for note in notes[mark:]:
            if note.instrument in keep:
                kept.append(note)
                continue
            self._struck.discard((note.instrument, note.pitch, note.start))
            start, end = note.start, min(note.end, high)
            if start < low:
                held = note.instrument not in drums and note.end - low >= hold
                start = low if held else end
            moved = (note.instrument, note.pitch, start)
            if end - start <= 1e-3 or moved in self._struck:
                continue
            if self._ranges.get(note.instrument) is not None:
                self._struck.add(moved)
            kept.append(dataclasses.replace(note, start=start, end=end))
        notes[mark:] = kept

    def _intro_bars(self, section_bars: int) -> int:
        """Bars of the intro (the accompaniment before the melody): none in short pieces;
        the whole of a first section of up to INTRO_ONLY_MAX_BARS that is the first shot."""
        total_bars = len(self.plan.bar_starts)
        if total_bars < 6:
            return 0
        if 2 <= section_bars <= INTRO_ONLY_MAX_BARS and len(self.plan.sections) > 1:
            cue = self.plan.sections[1].cue_s
            if not any(0.0 < cut.time_s < cue - 1e-6 for cut in self.cuts):
                return section_bars
        return min(2 if section_bars > 3 else 1, section_bars - 1)

    def _level(self, form: SectionForm, intro: bool) -> int:
        return 1 if intro else max(1, form.intensity)

    def _joins(self, player: str, entry: int, level: int, first: bool = True) -> bool:
        """Whether a player whose part enters at level `entry` plays at `level`. An instrument
        the user asked for plays throughout, and no part's first player sits out the whole
        piece: the busiest sections bring each part in (a calm piece, at level 1 throughout,
        had heard its pads, strings or the brass it was asked for only in the final chord).
        A part's second player, doubling the first, keeps its level (brought in too, calm
        cinematic's synth had doubled the string ostinato in unison over the tune)."""
        if player in self._asked:
            return True
        return level >= (min(entry, self._top_level) if first else entry)

    def _plan_harmony(self) -> None:
        """Chord spans: each section's progression from its first bar, a dominant before a
        busier section, the cadence, and strong cuts on a mid-bar beat bringing the next
        chord in early."""
        plan = self.plan
        final = plan.final_beat
        spans: list[ChordSpan] = []
        # The progression runs on through a run of sections (short sections still move) and
        # starts again with the next (a theme's return is heard; the new key's tonic after
        # its dominant).
        for index, (form, bars) in enumerate(zip(self.forms, self._bars, strict=True)):
            per_chord = self.style.harmonic_rhythm[max(0, form.intensity - 1)]
            # The tune comes in after an intro's bars on the progression's first chord, as
            # its returns do (`_melody` begins them where it began).
            entry = self._tune_entries.get(form.start_beat, 0)
            numerals = []
            for i in range(len(bars)):
                progression = self._progression(form, self._development(form, i))
                # An intro's bars before the tune play the progression from its start too.
                step = self._phrase_bars(form, i) + (entry if i < entry else 0)
                numerals.append(progression[(step // per_chord) % len(progression)])
            next_form = self.forms[index + 1] if index + 1 < len(self.forms) else None
            if next_form is not None and next_form.key.tonic != form.key.tonic and bars:
                # The lifted key comes in from its own dominant seventh, however short the
                # section before (its progression's last chord had gone straight to the new
                # key, a tritone's root move at times).
                numerals[-1] = dominant_into(next_form.key.tonic, form.key)
            elif next_form is not None and next_form.intensity > form.intensity and len(bars) >= 3:
                numerals[-1] = "V"  # tension before the release
            tonic = "I" if form.key.mode == "major" else "i"
            for position, bar in enumerate(bars):
                if final is not None and bar == final:
                    numerals[position] = tonic
                    if position > 0:
                        numerals[position - 1] = self._before_tonic(form.key)
                    elif spans:
                        before = self._before_tonic(form.key)
                        spans[-1] = ChordSpan(spans[-1].start, spans[-1].end,
                                              chord(before, form.key), before)  # fmt: skip
            for bar, numeral in zip(bars, numerals, strict=True):
                spans.append(
                    ChordSpan(bar, bar + self.bar_beats, chord(numeral, form.key), numeral)
                )
        if not spans:
            tonic = "I" if self.forms[0].key.mode == "major" else "i"
            spans = [ChordSpan(0, self.bar_beats, chord(tonic, self.forms[0].key), tonic)]
        # The pickup takes the first chord.
        first = spans[0]
        spans[0] = ChordSpan(-self.plan.pickup_beats - 1, first.end, first.chord, first.numeral)
        starts = [span.start for span in spans]
        for cut in self.cuts:
            self.heartbeat()
            beat = plan.beat_at(cut.time_s)
            if not cut.strong or not self._on_beat(beat):
                continue
            beat = round(beat)
            # The span the beat falls inside (spans are contiguous, in order).
            i = bisect.bisect_left(starts, beat) - 1
            if not 0 <= i < len(spans) - 1:
                continue
            span, following = spans[i], spans[i + 1]
            if final is not None and following.start >= final:
                # The cadence keeps its dominant whole: the tonic pulled forward to a cut
                # would arrive early and be struck again as the final chord.
                continue
            if span.start < beat < span.end and following.numeral != span.numeral:
                spans[i] = ChordSpan(span.start, beat, span.chord, span.numeral)
                spans[i + 1] = ChordSpan(beat, following.end, following.chord,
                                         following.numeral)  # fmt: skip
                starts[i + 1] = beat
        self.harmony = spans
        self._span_starts = [span.start for span in spans]

    def _phrase_bars(self, form: SectionForm, position: int) -> int:
        """Bars of the section's run (`_runs`) before its bar `position`, from the tune's
        entry (negative before it)."""
        _, offset = self._runs[form.start_beat]
        return offset + position - self._tune_entries.get(form.start_beat, 0)

    def _development(self, form: SectionForm, position: int) -> int:
        """How far the section's material has developed at its bar `position`: its returns
        before its run, and its statements in the run (STATEMENT_BARS each, from the tune's
        entry)."""
        repeat, _ = self._runs[form.start_beat]
        return repeat + max(0, self._phrase_bars(form, position)) // STATEMENT_BARS

    def _tune_rests(self, form: SectionForm, position: int) -> bool:
        """Whether the tune rests in the section's bar `position`: in the second phrase of
        every `Style.tune_rests`-th statement of its run."""
        every = self.style.tune_rests
        bars = self._phrase_bars(form, position)
        if not every or bars < 0:
            return False
        statement, bar = divmod(bars, STATEMENT_BARS)
        return statement % every == every - 1 and bar >= STATEMENT_BARS // 2

    def _progression(self, form: SectionForm, development: int) -> list[str]:
        """The material's progression; varied on every other development: one chord (never
        the first, which makes the return heard) replaced by a relative of the same
        function."""
        progression = list(self._progressions[form.key.mode, form.material])
        if development % 2 == 1:
            at = 1 + (self._substitution + development) % (len(progression) - 1)
            progression[at] = SUBSTITUTES.get(progression[at], progression[at])
        return progression

    def _before_tonic(self, key: Key) -> str:
        if self.style.cadence == "IV":
            return "IV" if key.mode == "major" else "iv"
        return "V"

    def _on_beat(self, beat: float) -> bool:
        """Whether a (fractional) beat position is on a beat of the plan (within ON_BEAT_S:
        a cut there is the beat's event; the plan's anchors are exact, a user BPM's grid
        only as near as its phase allows)."""
        seconds = self.plan.beat_time(beat + 1) - self.plan.beat_time(beat)
        return abs(beat - round(beat)) * seconds <= ON_BEAT_S

    def _numerals(self, bars: list[int]) -> list[str]:
        return [self._span_at(b).numeral for b in bars]

    def _span_at(self, beat: float) -> ChordSpan:
        index = bisect.bisect_right(self._span_starts, beat + 1e-6) - 1
        return self.harmony[max(index, 0)]

    def _chord_at(self, beat: float) -> Chord:
        return self._span_at(beat).chord

    # ---- one bar ------------------------------------------------------------------------

    def _bar(
        self,
        start: int,
        end: int,
        form: SectionForm,
        position: int,
        intro: bool,
        fill: bool,
        phrase_end: bool,
        tune: bool = True,
        opening: bool = True,
    ) -> set[str]:
        """One bar of the section's parts (`tune`: with its tune); `opening`: a section's
        first bar opens with its crash."""
        roles, level = self.roles, self._level(form, intro)
        playing: set[str] = set()
        # Phrase shape (the tune's phrases, through its run): a small swell over four bars,
        # accents at the section's start.
        phrase = self._phrase_bars(form, position)
        velocity = _playing_velocity(level) + (2, 4, 6, 0)[phrase % 4]
        velocity += SECTION_ACCENT if position == 0 else 0
        # Each return of the material takes the patterns' next variant, and the pulse each
        # statement of it in a run too.
        repeat, _ = self._runs[form.start_beat]
        variant = self._variant[form.material] + self._development(form, position)
        # Two-bar phrases answer each other through the run (the bass and comping's next
        # variant) and the groove turns over at each section and with the tune's four-bar
        # phrases, so bars are not copies of one loop. (Counted from the statements as well,
        # the groove had held for eight bars at each statement's turn; through the run, a
        # montage's drums had shared more of their strokes with other genres', 20.2-20.4% on
        # bench_music's montage against 17.7-17.9%; every four bars from the section's start,
        # it had turned two bars into the tune's phrases after an intro, a music review.)
        answer = self._variant[form.material] + repeat + (phrase // 2) % 2
        turn = self._grooves[(form.material, level)] + form.repeat + (max(phrase, 0) // 4) % 2
        # The pad carries the harmony where no one else does; else it enters where the
        # style's row says (ambient's pads from the first level).
        harmony = roles.of("comping") or roles.of("pulse")
        breakdown = form.start_beat in self._breakdowns
        for number, pad in enumerate(roles.of("pad")):
            # (A breakdown holds the harmony on the pad where the kick drops out.)
            entry = self.style.entry("pad") if harmony and not breakdown else 1
            if self._joins(pad, entry if number == 0 else max(entry, 2), level, number == 0):
                self._pad(pad, start, end, velocity + PART_VELOCITY["pad"])
                playing.add(pad)
        for number, player in enumerate(roles.of("comping")):
            entry = self.style.entry("comping") if number == 0 else 2
            if self._joins(player, entry, level, number == 0):
                self._comping(player, start, end, level, answer,
                              velocity + PART_VELOCITY["comping"] - 6 * number)  # fmt: skip
                playing.add(player)
        drumless = not roles.of("drums")
        build = self._builds.get(start) if breakdown else None
        for number, player in enumerate(roles.of("pulse")):
            # The pulse carries the beat where no drums do, and plays the intro.
            entry = 1 if drumless or (number == 0 and intro) else self.style.entry("pulse")
            # A build brings it back, in its eighths and then its sixteenths as the roll
            # gathers (levels 2 and 3).
            rising = build is not None and number == 0
            if rising or self._joins(player, entry if number == 0 else max(entry, 2), level,
                                     number == 0):  # fmt: skip
                pulse_level = min(2 + build, 3) if build is not None and rising else level
                self._pulse(player, start, end, pulse_level, variant,
                            velocity + PART_VELOCITY["pulse"])  # fmt: skip
                playing.add(player)
        for player in roles.of("bass")[:1]:
            self._bass(player, start, end, level, answer, velocity + 6)
            playing.add(player)
        for player in roles.of("drums")[:1]:
            # A phrase's last beat is filled, every fourth bar, or every eighth in a calm
            # section: a calm minute-long shot had looped two bars with no fill at all.
            phrase_fill = phrase_end and (level >= 2 or self._phrase_bars(form, position) % 8 == 7)
            kind = "fill" if fill else "phrase" if phrase_fill else None
            # A montage's cut just after the bar line brings its own accent; a crash on the
            # bar line would ring over it.
            crash = position == 0 and opening and level >= 2 and not intro
            crash = crash and not self._cut_beside(start)
            self._drums(player, start, end, level, turn, kind, crash, breakdown, build)
            if crash:
                self._crashes.append((start, self.style.crash, form.start_beat in self._rises))
            playing.add(player)
        tune_notes: list[TuneNote] = []
        resting = intro or self._tune_rests(form, position)
        for number, player in enumerate(roles.of("melody") if tune else ()):
            if not resting and self._joins(player, 1 if number == 0 else 3, level, number == 0):
                if number == 0:
                    tune_notes = self._melody(player, start, end, form, position,
                                              velocity + self.style.tune_accent)  # fmt: skip
                # Another tune player doubles the tune at the unison (folk's fiddle and
                # whistle). Composing its own bar from where the tune ended, it had met the
                # tune at the unison or octave on 76% of their shared onsets.
                for pitch, onset, release, loudness in tune_notes if number else ():
                    self._add(player, pitch, onset, release, loudness - 10 * number)
                playing.add(player)
        return playing

    def _prompt_player(self) -> list[str]:
        """The player whose chord sounds at once (none in a band without harmony)."""
        parts = self.style.prompt_parts
        return [player for part in parts for player in self.roles.of(part)][:1]

    def _pickup(self, under_way: bool) -> set[str]:
        """The beats before the first downbeat, written as a pickup: the first chord from the
        first sample, a drum lead-in on the pickup's last beat, the melody's anacrusis where
        the tune comes in on the first downbeat. Where the first section has no intro (its
        tune from the first downbeat: a short piece), the band is already playing
        (`under_way`, `_band_plays_the_pickup`): the rest of the pickup is the end of the
        section's bar (`_bar_under_way`), at its level, its drums' fill leading into the
        downbeat. A short clip's soft chord and two snare taps had been 4-16 dB under the
        band, which then came in 5-18 dB louder where the picture does not cut, the loudest
        accent in 14 of 15 8 s clips with a pickup (a music review)."""
        downbeat = self.plan.first_downbeat
        playing: set[str] = set()
        harmony = self._chord_at(downbeat)
        # A prompt attack: the music sounds from the first sample.
        if not self._pickup_too_short():
            velocity = _playing_velocity(self._level(self.forms[0], False)) - 10
            playing |= self._pickup_chord(velocity if under_way else PICKUP_VELOCITY)
        if under_way:
            playing |= self._bar_under_way(downbeat, set(playing))
        elif downbeat >= 1:
            for player in self.roles.of("drums")[:1]:
                for i in range(2):
                    self._add(player, drum_keys.SNARE, downbeat - 1 + i / 2, downbeat - 1 + i / 2
                              + 0.2, 70 + 12 * i)  # fmt: skip
                playing.add(player)
        # The tune's anacrusis leads into its first note: none before an intro (a lone note
        # had hung there a bar or two before the tune came in).
        if downbeat >= 1 and not self._tune_entries.get(self.forms[0].start_beat, 0):
            for player in self.roles.of("melody")[:1]:
                low, high = self.style.melody_range
                target = nearest_in(self._melody_pitch, harmony.pitch_classes, low, high)
                # An eighth before the downbeat: held the pickup's whole last beat, the step
                # below (the leading tone below the tonic) had ground against its chord.
                self._add(player, scale_step(target, -1, self.forms[0].key), downbeat - 0.5,
                          downbeat - 0.05, 80)  # fmt: skip
                playing.add(player)
        return playing

    def _band_plays_the_pickup(self) -> bool:
        """Whether the pickup is the end of a bar already under way: a beat or more of it,
        before a first section with no intro."""
        first = self.forms[0]
        return self.plan.first_downbeat >= 1 and not self._tune_entries.get(first.start_beat, 0)

    def _bar_under_way(self, downbeat: int, holding: set[str]) -> set[str]:
        """The first section's bar that ends on the first downbeat, as heard from the first
        sample, by the players not `holding` the pickup's chord: a note struck before the
        first sample and held into it sounds from there, a drum's is left out (`_windowed`,
        with no hold asked of it); the drums fill into the downbeat. The first downbeat opens
        no crash: nothing changes there."""
        notes = self.result.notes
        mark = len(notes)
        self._bar(downbeat - self.bar_beats, downbeat, self.forms[0], -1, intro=False, fill=True,
                  phrase_end=False, tune=False, opening=False)  # fmt: skip
        notes[mark:] = [note for note in notes[mark:] if note.instrument not in holding]
        self._windowed(mark, -self.plan.lead_beats, downbeat, hold=0.0)
        return {note.instrument for note in notes[mark:]}

    def _pickup_chord(self, velocity: int) -> set[str]:
        """The first downbeat's chord from the first sample to it, by the prompt player."""
        downbeat = self.plan.first_downbeat
        players = self._prompt_player()
        for player in players:
            for pitch in voice(self._chord_at(downbeat), None, *self.style.register("pad")):
                self._add(player, pitch, -self.plan.lead_beats, downbeat, velocity)
        return set(players)

    def _pickup_too_short(self) -> bool:
        return self.plan.first_downbeat == 0 and self.plan.beats_s[0] < SHORT_PICKUP_S

    def _downbeat_from_the_first_sample(self) -> None:
        """A pickup too short to be one (SHORT_PICKUP_S): the prompt player's notes on the
        first downbeat start at the first sample instead; a player with none there plays the
        downbeat's chord over the pickup, as a longer pickup's chord."""
        start = -self.plan.lead_beats
        players = self._prompt_player()
        notes = self.result.notes
        on_the_downbeat = [i for i, n in enumerate(notes)
                           if n.instrument in players and n.start == 0.0]  # fmt: skip
        for i in on_the_downbeat:
            notes[i] = dataclasses.replace(notes[i], start=start)
        if not on_the_downbeat:
            self._pickup_chord(PICKUP_VELOCITY)

    def _final_chord(self, start: int, form: SectionForm, heard: set[str]) -> set[str]:
        """The final tonic, by the players `heard` before it (one never brought in does not
        enter for the last chord alone), as loud as its section plays (FINAL_VELOCITY)."""
        numeral = "I" if form.key.mode == "major" else "i"
        tonic = chord(numeral, form.key)
        end = max(start + 0.5, self.result.end_beat)
        self.result.final = ChordSpan(float(start), end, tonic, numeral)
        level = self._level(form, intro=False)
        softer = _playing_velocity(FINAL_LEVEL) - _playing_velocity(min(level, FINAL_LEVEL))
        velocity = {part: value - softer for part, value in FINAL_VELOCITY.items()}
        playing: set[str] = set()
        roles = self.roles
        parts = {p: part for part in ("pulse", "comping", "pad") for p in roles.of(part)}
        for player, part in parts.items():
            if player not in heard:
                continue
            previous = self._voicings.get(player)
            touch = PART_VELOCITY[part] - PART_VELOCITY["comping"]
            for pitch in voice(tonic, previous, *self.style.register("comping")):
                self._add(player, pitch, start, end, velocity["chord"] + touch)
            playing.add(player)
        for player in roles.of("bass")[:1]:
            pitch = nearest_in(self._bass_pitch, (tonic.root,), *self.style.register("bass"))
            self._add(player, pitch, start, end, velocity["bass"])
            playing.add(player)
        for player in roles.of("melody")[:1]:
            low, high = self.style.melody_range
            # The tonic, or where it lies more than a fifth away (past the register's edge),
            # the tonic chord's nearest tone: the tune ends as it moved, not by a sixth.
            pitch = nearest_in(self._melody_pitch, (tonic.root,), low, high)
            if abs(pitch - self._melody_pitch) > MAX_BAR_LEAP:
                pitch = nearest_in(self._melody_pitch, tonic.pitch_classes, low, high)
            # As much softer than FINAL_VELOCITY's as the tune's bars are (`tune_accent`).
            touch = self.style.tune_accent - TUNE_ACCENT
            self._add(player, pitch, start, end, velocity["melody"] + touch)
            playing.add(player)
        for player in roles.of("drums")[:1]:
            # The kick as the section's grooves strike it: accented from FINAL_LEVEL (104),
            # plain in a calm close (76), where an accent had stood over every drum before.
            stroke = "X" if level >= FINAL_LEVEL else "x"
            kick = _stroke_velocity(stroke, min(level, FINAL_LEVEL))
            self._add(player, drum_keys.KICK, start, start + 0.25, kick)
            # As at a section's start: a calm section's bar lines have no crash, and a
            # montage's cut just after brings its own accent.
            if level >= 2 and not self._cut_beside(start):
                self._add(player, self.style.crash, start, start + 0.5, velocity["crash"])
                # Kept, as a rise's: the cymbals before it are spaced from it.
                self._crashes.append((start, self.style.crash, True))
            playing.add(player)
        return playing

    # ---- parts --------------------------------------------------------------------------

    def _placed(self, player: str) -> tuple[int, int, int] | None:
        """Where the player's part sits in its instrument's range: (octaves in semitones,
        lowest, highest), or None where the instrument plays anything. A line (a tune, a
        bass) moves by the octaves that keep most of its register inside the range, so it
        never jumps; chords by the fewest octaves that put three quarters of it inside. A
        note still outside then moves by octaves on its own."""
        playable = PLAYABLE.get(self.style.program(player))
        if playable is None:
            return None
        part = self.roles.parts_of(player)[0]
        low, high = self.style.melody_range if part == "melody" else self.style.register(part)
        shifts = sorted(range(-36, 37, 12), key=abs)

        def inside(shift: int) -> int:
            return min(high + shift, playable[1]) - max(low + shift, playable[0]) + 1

        if part in ("melody", "bass"):
            best = max(shifts, key=inside)
        else:
            best = next((s for s in shifts if inside(s) >= 0.75 * (high - low + 1)), 0)
        return best, *playable

    def _add(
        self,
        instrument: str,
        pitch: int,
        start: float,
        end: float,
        velocity: int,
        after_end: bool = False,
        humanized: bool = True,
    ) -> None:
        """A note, cut at the end of the music (the final chord's release), unless it is
        `after_end`: a cut's accent in the release tail. A player's touch varies a few steps
        from note to note, but not on a cut's accent (`humanized` False): it is set to stand
        over the groove, and a light one is level with the loudest stroke (the touch had put
        light accents up to 8 steps under the strokes around them)."""
        if not after_end:
            if start >= self.result.end_beat:
                return
            end = min(end, self.result.end_beat)
        if end - start <= 1e-3:
            return
        # Drawn for every note, so that an accent left exact changes no other note's touch.
        touch = int(self.rng.integers(-4, 5))
        velocity = min(127, max(1, velocity + touch if humanized else velocity))
        placed = self._ranges.get(instrument)
        if placed is not None:
            shift, low, high = placed
            pitch += shift
            while pitch < low:
                pitch += 12
            while pitch > high:
                pitch -= 12
            if (instrument, pitch, start) in self._struck:
                return
            self._struck.add((instrument, pitch, start))
        self.result.notes.append(Note(instrument, int(pitch), start, end, velocity))

    def _pattern(
        self, table: dict[str, dict[int, tuple[str, ...]]], level: int, variant: int
    ) -> str:
        options = table[self.meter_name][level]
        return options[variant % len(options)]

    def _position(self, start: float, step: int) -> float:
        """The beat position of a grid step, swung where the style swings (in a meter whose
        beat divides in two)."""
        position = start + step / self.steps
        return swung(position, self._swing)

    def _events(self, pattern: str, start: int, end: int) -> list[tuple[float, float, str]]:
        """(onset, end, symbol) of each struck step of a bar pattern, held through '-'."""
        events = []
        length = min(len(pattern), round((end - start) * self.steps))
        for step in range(length):
            symbol = pattern[step]
            if symbol in ".-":
                continue
            stop = step + 1
            while stop < length and pattern[stop] == "-":
                stop += 1
            events.append((self._position(start, step), self._position(start, stop), symbol))
        return events

    def _voicing(self, player: str, harmony: Chord, low: int, high: int) -> tuple[int, ...]:
        spread = self.style.open_voicing
        voicing = voice(harmony, self._voicings.get(player), low, high, room_to_drop=spread)
        self._voicings[player] = voicing
        if spread and len(voicing) >= 3 and voicing[-2] - 12 >= low:
            # Drop-2: the second voice from the top an octave down, for a wider sound.
            return tuple(sorted((*voicing[:-2], voicing[-2] - 12, voicing[-1])))
        return voicing

    def _pad(self, player: str, start: int, end: int, velocity: int) -> None:
        for span in self._spans(start, end):
            voicing = self._voicing(player, span.chord, *self.style.register("pad"))
            for pitch in voicing:
                self._add(player, pitch, max(start, span.start), min(end, span.end), velocity)

    def _spans(self, start: float, end: float) -> list[ChordSpan]:
        return [s for s in self.harmony if s.start < end and s.end > start]

    def _comping(
        self, player: str, start: int, end: int, level: int, variant: int, velocity: int
    ) -> None:
        technique = self.style.comping_technique
        pattern = self._pattern(self.style.comping, level, variant)
        low, high = self.style.register("power" if technique == "power" else "comping")
        for onset, stop, symbol in self._events(pattern, start, end):
            harmony = self._chord_at(onset)
            stop = min(stop, self._span_at(onset).end)
            accent = 10 if symbol == "X" else 0
            if technique == "arp":
                tones = self._voicing(player, harmony, low, high)
                index = int(symbol)
                pitch = tones[index % len(tones)] + 12 * (index // len(tones))
                self._add(player, pitch, onset, stop, velocity - 6 + accent)
                continue
            voicing = self._voicing(player, harmony, low, high)
            if technique == "strum":
                voicing = open_voicing(harmony, low, high)
            if technique == "power":
                # Root, the chord's fifth and octave on the low strings.
                root = low + (harmony.root - low) % 12
                voicing = (root, root + harmony.fifth, root + 12)
            up = technique == "strum" and up_stroke(onset)
            # (The performance strums the chord: Style.strum_ms.)
            for pitch in voicing[-UP_STROKE_STRINGS:] if up else voicing:
                self._add(player, pitch, onset, stop, velocity + accent - (8 if up else 0))

    def _pulse(
        self, player: str, start: int, end: int, level: int, variant: int, velocity: int
    ) -> None:
        pattern = self._pattern(self.style.pulse, level, variant)
        events = self._events(pattern, start, end)
        if start in self._breaths.get(player, ()):
            events = [event for event in events if event[0] < end - 1]
        for onset, stop, symbol in events:
            tones = voice(self._chord_at(onset), None, *self.style.register("pulse"))
            index = int(symbol)
            pitch = tones[index % len(tones)] + 12 * (index // len(tones))
            # Short notes: a pulse is heard by its attacks.
            length = min(stop - onset, 1.0) * (0.9 if player in SUSTAINING else 0.6)
            on_beat = abs(onset - round(onset)) < 1e-6
            self._add(player, pitch, onset, onset + length, velocity + (8 if on_beat else 0))

    def _breath_bars(self, breath_s: float) -> set[int]:
        """The bars on whose last beat a blown running figure (orchestral's clarinet
        ostinato) rests, as a player breathes: at the end of each phrase of four bars, or of
        two or one where four would last longer than `breath_s`, and before a run across
        sections would (the next bar as long as this one). It had run 60-85 s without a
        rest."""
        time = self.plan.beat_time
        breaths: set[int] = set()
        begun = time(self._bar_lines[0]) if self._bar_lines else 0.0
        for bars in self._bars:
            for position, start in enumerate(bars):
                end = start + self.bar_beats
                bar_s = time(end) - time(start)
                phrase = next(g for g in (4, 2, 1) if g * bar_s <= breath_s or g == 1)
                if (position + 1) % phrase == 0 or 2 * time(end) - time(start) - begun > breath_s:
                    breaths.add(start)
                    begun = time(end)
        return breaths

    def _bass(
        self, player: str, start: int, end: int, level: int, variant: int, velocity: int
    ) -> None:
        pattern = self._pattern(self.style.bass, level, variant)
        bass_range = self.style.register("bass")
        for onset, stop, symbol in self._events(pattern, start, end):
            harmony = self._chord_at(onset)
            stop = min(stop, self._span_at(onset).end)
            root = nearest_in(self._bass_pitch, (harmony.root,), *bass_range)
            self._bass_pitch = root
            if symbol == "R":
                pitch = root
            elif symbol == "5":
                fifth = harmony.fifth
                pitch = root + fifth if root + fifth <= bass_range[1] else root + fifth - 12
            elif symbol == "3":
                pitch = root + harmony.intervals[1]
            elif symbol == "8":
                pitch = root + 12
            else:  # "A": a step leading to the next chord's root
                following = self._chord_at(self._span_at(onset).end)
                target = nearest_in(root, (following.root,), *bass_range)
                pitch = target - 1 if target > root else target + 2
            accent = 8 if abs(onset - start) < 1e-6 else 0
            # Slightly detached, so repeated notes are heard as repeated.
            self._add(player, pitch, onset, onset + 0.95 * (stop - onset), velocity + accent)

    def _drums(
        self,
        player: str,
        start: int,
        end: int,
        level: int,
        variant: int,
        fill: str | None,
        crash: bool,
        breakdown: bool,
        build: int | None,
    ) -> None:
        """One bar of the drums: the level's groove (`breakdown`: the genre's breakdown;
        `build`: the bar's place in its build), a fill over its end, a crash on its bar
        line."""
        groove = (
            self.style.breakdowns[self.meter_name]
            if breakdown
            else self.style.grooves[self.meter_name][level]
        )
        pattern = groove[variant % len(groove)]
        if build is not None:
            pattern = self.style.builds[self.meter_name][build]
        elif fill:
            fills = self.style.fills[self.meter_name]
            fill_pattern = fills[(variant + (fill == "phrase")) % len(fills)]
            if fill == "phrase":
                # A phrase end: the fill's last beat only.
                fill_pattern = {k: "." * (len(v) - self.steps) + v[-self.steps :]
                                for k, v in fill_pattern.items()}  # fmt: skip
            if breakdown:  # its kick waits for the drop
                fill_pattern = {k: v for k, v in fill_pattern.items() if k not in KICKS}
            pattern = _with_fill(pattern, fill_pattern)
        for key, line in pattern.items():
            for onset, _stop, symbol in self._events(line, start, end):
                self._add(player, key, onset, onset + 0.2, _stroke_velocity(symbol, level))
        if crash:
            self._add(player, self.style.crash, start, start + 0.5, 100)

    def _motif(self) -> Motif:
        """One bar of rhythm (beat offsets) and contour (scale steps between notes)."""
        grid = self._melody_steps
        beats = self.bar_beats
        onsets = [0.0]
        for step in range(1, beats * grid):
            strong = step % grid == 0
            chance = self.style.melody_density * (1.4 if strong else 0.8)
            if self.rng.random() < chance:
                onsets.append(step / grid)
        while len(onsets) < 3:
            candidate = int(self.rng.integers(1, beats * grid)) / grid
            if candidate not in onsets:
                onsets.append(candidate)
        onsets.sort()
        contour = [int(self.rng.choice([-2, -1, -1, 1, 1, 2, 3, -3])) for _ in onsets]
        return onsets, contour

    def _answer(self, motif: Motif) -> Motif:
        """A bar that answers `motif`: its own rhythm (a few tries; else the motif's with
        its last onset left out or one added), its contour turned over."""
        for _ in range(8):
            onsets, contour = self._motif()
            if onsets != motif[0]:
                return onsets, [-step for step in contour]
        onsets, contour = _varied(
            motif, 1 if len(motif[0]) < 4 else 2, self._melody_steps, self.bar_beats
        )
        return onsets, [-step for step in contour]

    @property
    def _melody_steps(self) -> int:
        """Grid steps per beat the tune moves on."""
        return self.steps if self.steps % 2 else self.style.melody_grid

    def _melody(
        self, player: str, start: int, end: int, form: SectionForm, position: int, velocity: int
    ) -> list[TuneNote]:
        """Four-bar phrases of the section's material: its motif, the motif a step higher,
        its answer (another rhythm, the contour turned over), a long cadence note. On each
        return of the material the motif comes varied (a note added, then one left out, in
        turn; and one step of its contour changed), so the tune develops rather than loops
        one bar's rhythm through the piece; and so on each statement of a long section
        (`_development`). Returns the bar's notes, for a second player."""
        # Phrases count from the tune's entry: after an intro's two bars it had come in on
        # its phrase's third bar, the answer, and its motif first sounded a bar later.
        entry = self._tune_entries.get(form.start_beat, 0)
        development = self._development(form, position)
        motif = _varied(
            self._motifs[form.material], development, self._melody_steps, self.bar_beats
        )
        onsets, contour = motif
        phrase_bar = self._phrase_bars(form, position) % 4
        hook = (form.material, phrase_bar) if phrase_bar < self.style.hook_bars else None
        if hook is not None and hook in self._hooks:
            restated = self._restated(player, start, end, form, self._hooks[hook], velocity)
            if restated is not None:
                return restated
        lift = 0
        if phrase_bar == 3:
            onsets, contour = [0.0], [0]
        elif phrase_bar == 2:
            onsets, contour = self._answers[form.material]
        elif phrase_bar == 1:
            lift = 2
        if development and phrase_bar != 3:
            # The same step in the motif and its sequence a step higher, so the two bars
            # keep one shape.
            contour = list(contour)
            contour[(development + (phrase_bar == 2)) % len(contour)] += 1
        length = end - start
        onsets = [o for o in onsets if o < length] or [0.0]
        low, high = self.style.melody_range
        harmony = self._chord_at(start)
        # The bar starts on a chord tone at most a fifth from where the tune was (taken
        # wherever the contour fitted, 9% of bars had started by a leap of up to an octave
        # and a fourth): the one from which the most of its contour fits the register, the
        # nearest of those. Started near an edge, the line had turned back there and the
        # motif came back in another shape. A first note held rests on a steady tone (below).
        held = (onsets[1] if len(onsets) > 1 else length) - onsets[0] >= HELD_NOTE_BEATS
        starts = pitches_in(harmony.steady_tones if held else harmony.pitch_classes, low, high)
        near = [p for p in starts if abs(p - self._melody_pitch) <= MAX_BAR_LEAP] or starts
        target = self._melody_pitch + lift
        pitch = max(near, key=lambda p: (_reach(p, contour[1:], form.key, low, high),
                                         -abs(p - target), -p))  # fmt: skip
        if position == entry and form.start_beat in self._returns:
            theme = self._theme_degrees.setdefault(form.material, (pitch - form.key.tonic) % 12)
            # The material's return begins where its first statement did (in an octave
            # within a fifth of the tune, as any bar), so the theme is heard coming back:
            # begun wherever the line stood, only 30 of 148 returns had begun on their first
            # statement's note (a music review's 97 s video, every genre, seeds 1-2).
            again = [p for p in near if (p - form.key.tonic) % 12 == theme]
            if again:
                pitch = max(again, key=lambda p: (_reach(p, contour[1:], form.key, low, high),
                                                  -abs(p - target)))  # fmt: skip
        bar: list[TuneNote] = []
        for i, offset in enumerate(onsets):
            position_beats = start + offset
            harmony = self._chord_at(position_beats)
            previous, step = pitch, contour[i] if i > 0 else 0
            if i > 0:
                stepped = scale_step(pitch, step, form.key)
                if not low <= stepped <= high:
                    # At the edge of its register the line turns back, in the key (a clamp
                    # had held it on the edge, often on a note outside the key).
                    step = -step
                    stepped = scale_step(pitch, step, form.key)
                pitch = nearest_in(stepped, form.key.scale, low, high)
                if abs(offset - round(offset)) < 1e-6 and round(offset) % 2 == 0:
                    pitch = _onward(previous, pitch, step, harmony.pitch_classes, low, high)
            stop = onsets[i + 1] if i + 1 < len(onsets) else length
            if stop - offset >= HELD_NOTE_BEATS and (
                harmony.rubs(pitch)
                or harmony.grates(pitch)
                or harmony.crosses(pitch, form.key)
                or (not self.style.under_the_tune and harmony.leans(pitch))
            ):
                # Held a semitone over a chord tone, a scale note grinds (the tonic over V's
                # leading tone, the root over a major seventh), and a semitone from a tone
                # the chord alters or the tritone over a triad's root (the leading tone over
                # IV), it is heard as a wrong note (minor's seventh under V's leading tone);
                # where the chords are voiced over the tune (ambient), a semitone under a
                # chord tone is a minor second under it (a ninth held under the strings'
                # minor third: 10 in 5 ambient pieces; a music review): it takes the nearest
                # steady chord tone instead.
                pitch = _onward(previous, pitch, step, harmony.steady_tones, low, high)
            onset = swung(position_beats, self._swing)
            release = swung(position_beats + min(stop - offset, 2.0), self._swing)
            note = (pitch, onset, onset + (release - onset) * 0.95,
                    velocity + (6 if offset == 0 else 0))  # fmt: skip
            self._add(player, *note)
            bar.append(note)
        self._melody_pitch = pitch
        if hook is not None and hook not in self._hooks and end - start == self.bar_beats:
            self._hooks[hook] = [(p, on - start, off - start, loud - velocity)
                                 for p, on, off, loud in bar]  # fmt: skip
        return bar

    def _restated(
        self,
        player: str,
        start: int,
        end: int,
        form: SectionForm,
        notes: list[TuneNote],
        velocity: int,
    ) -> list[TuneNote] | None:
        """The hook's bar (`notes`) played again from `start`; None where the bar is shorter,
        its first note lies further from the line than a bar may leap, or the harmony here
        does not take it as a bar composed here would be held to: every note in the key, a
        note on the bar's strong beats a chord tone, a held one a steady tone of its chord.
        (The chords under a statement's first bars change from one return to the next: the
        hook is restated where they take it.)"""
        if end - start != self.bar_beats or not notes:
            return None
        if abs(notes[0][0] - self._melody_pitch) > MAX_BAR_LEAP:
            return None
        stops = [*(on for _, on, _, _ in notes[1:]), float(self.bar_beats)]
        for (pitch, onset, _, _), stop in zip(notes, stops, strict=True):
            harmony = self._chord_at(start + onset)
            strong = abs(onset - round(onset)) < 1e-6 and round(onset) % 2 == 0
            if (not form.key.in_scale(pitch)
                    or (strong and pitch % 12 not in harmony.pitch_classes)
                    or (stop - onset >= HELD_NOTE_BEATS
                        and pitch % 12 not in harmony.steady_tones)):  # fmt: skip
                return None
        bar = [(p, start + on, start + off, velocity + accent) for p, on, off, accent in notes]
        for note in bar:
            self._add(player, *note)
        self._melody_pitch = bar[-1][0]
        return bar

    # ---- cuts ---------------------------------------------------------------------------

    def _mark_cuts(self) -> None:
        """A musical event at every cut's exact time: the genre's drum hit (a crash or its
        like for strong cuts); where there are no drums, or a strong cut falls between beats,
        the band accents the chord (with the bass for strong cuts). A strong cut between beats
        gets a short stop in the drums before it. In a flurry (a fast montage) a weak cut
        where the groove strikes is marked by its strokes, played harder (`_accented`)."""
        roles = self.roles
        strong_keys, weak_keys = self.style.cut_hits
        bass_range, comping_range = self.style.register("bass"), self.style.register("comping")
        events = []
        in_flurry: set[float] = set()
        stabs: list[tuple[str, float]] = []
        # The band's accent on the beats of strong cuts struck without their cymbal.
        accents: dict[float, int] = {}
        previous = -FLURRY_GAP_S
        for cut in sorted(self.cuts, key=lambda c: c.time_s):
            self.heartbeat()
            beat = self.plan.beat_at(cut.time_s)
            # In a flurry of cuts (a fast montage) only the first gets a big hit.
            flurry = cut.time_s - previous < FLURRY_GAP_S
            strong = cut.strong and not flurry
            previous = cut.time_s
            if beat < 0:
                continue
            # On its beat with the beat's notes when near it (a hit beside them is a flam).
            on_beat = self._on_beat(beat)
            hit = float(round(beat)) if on_beat else beat
            events.append((hit, strong and not self._in_final_ring(hit), on_beat))
            if flurry and not strong:
                in_flurry.add(hit)
            self.result.cut_hits[hit_key(hit)] = cut.time_s
        # The stops first, so that no stop silences another cut's hit.
        self.heartbeat()
        stopped = {beat for beat, strong, on_beat in events if strong and not on_beat}
        self._stop_drums([(beat - CUT_STOP_BEATS, beat) for beat in sorted(stopped)])
        # A strong cut too soon after a cymbal plays its hit without one (`_spaced`).
        spaced = self._spaced([beat for beat, strong, _ in events if strong and strong_keys])
        spaced_keys = self.style.spaced_cut_hit or strong_keys[1:]
        # A weak cut between beats is a light accent (the first of its keys, a cymbal or the
        # like, without the kick): many of them, as in a fast montage, would otherwise beat a
        # second pulse against the music's.
        played = [(spaced_keys if beat in spaced else strong_keys) if strong else weak_keys[:1]
                  if not on_beat or beat in in_flurry or self._in_final_ring(beat)
                  else weak_keys
                  for beat, strong, on_beat in events]  # fmt: skip
        # A breakdown's cuts leave its kick out for the drop (a strong cut's and a weak one's
        # had brought it back, velocity 112); a hit that was its kick alone is the band's.
        breakdowns = self._breakdown_spans()
        played = [tuple(k for k in keys if k not in KICKS) if _within(breakdowns, beat) else keys
                  for (beat, _, _), keys in zip(events, played, strict=True)]  # fmt: skip
        # A strong cut's hit stands for the strokes beside it; a light accent, or a strong
        # cut's hit without its cymbal, takes them with it (the groove's kick had gone, for a
        # tambourine).
        cleared = zip(events, played, strict=True)
        self._clear_flams([(beat, None if strong and beat not in spaced else frozenset(keys))
                           for (beat, strong, _), keys in cleared])  # fmt: skip
        bar_lines = self._bar_lines
        pushes: dict[float, _Push] = {}
        grooves = self._loudest_strokes()
        accented = self._accented(in_flurry, grooves)
        for (beat, strong, on_beat), keys in zip(events, played, strict=True):
            self.heartbeat()
            hit, velocity = self._cut_velocities(beat, strong, grooves)
            if beat in accented:
                keys = ()
            for player in roles.of("drums")[:1]:
                for key in keys:
                    self._add(player, key, beat, beat + 0.4, hit, after_end=True,
                              humanized=False)  # fmt: skip
            # Just before a bar line the stab is its downbeat, struck early (`_pushed`).
            at = bisect.bisect_right(bar_lines, beat + 1e-6)
            bar_line = bar_lines[at] if at < len(bar_lines) else None
            ahead = math.inf if bar_line is None else bar_line - beat
            close = ahead < HANDOVER_MIN_BEATS
            final_beat = self.plan.final_beat
            final = close and final_beat is not None and beat + ahead >= final_beat
            # A strong cut's hit without its cymbal, on a beat, takes the band's accent: the
            # chord it strikes there, struck harder (a harder kick alone had barely stood out
            # from the beats around it, a music review; a stab's own chord there had clashed
            # with the tune).
            if beat in spaced and on_beat:
                accents[hit_key(beat)] = velocity - 4
            # Just before the final chord the drums' hit marks the cut alone: a stab had struck
            # the chord before and the final chord a moment later, on another.
            if (
                roles.of("drums")
                and (keys or beat in accented)
                and (on_beat or not strong or final)
            ):
                continue
            if on_beat or not close or final:
                bar_line = None
            harmony = self._chord_at(beat if bar_line is None else bar_line)
            struck: dict[str, int] = {}
            for player in self._prompt_player():
                stabs.append((player, beat))
                struck[player] = velocity - 4
                for pitch in voice(harmony, self._voicings.get(player), *comping_range):
                    self._add(player, pitch, beat, beat + 0.5, velocity - 4, after_end=True,
                              humanized=False)  # fmt: skip
            for player in roles.of("bass")[:1] if strong else ():
                stabs.append((player, beat))
                struck[player] = velocity - 4
                root = nearest_in(self._bass_pitch, (harmony.root,), *bass_range)
                self._add(player, root, beat, beat + 0.5, velocity - 4, after_end=True,
                          humanized=False)  # fmt: skip
            if bar_line is not None:
                # Two cuts before one bar line: the one nearest it pushes.
                pushes[bar_line] = _Push(beat, bar_line, frozenset(keys), struck)
        self._accent_chords(accents)
        self._struck_with_stabs(stabs, stopped if roles.of("drums") else set())
        self._pushed(sorted(pushes.values()))
        self._bass_stabs_held([beat for player, beat in stabs if player in roles.of("bass")])

    def _accent_chords(self, accents: dict[float, int]) -> None:
        """The chord and bass notes struck on each of `accents`' beats, struck at least at its
        velocity and ACCENT_OVER over the loudest those players strike within ACCENT_SPAN
        beats of it (their phrase's swell had put the bass a third of a beat before a cut
        over the accent on it)."""
        players = {*self._prompt_player(), *self.roles.of("bass")[:1]}
        notes = self.result.notes
        beats = sorted(accents)
        loudest = dict.fromkeys(beats, 0)
        for note in notes:
            if note.instrument not in players:
                continue
            low = bisect.bisect_left(beats, note.start - ACCENT_SPAN)
            for beat in beats[low : bisect.bisect_right(beats, note.start + ACCENT_SPAN)]:
                if abs(note.start - beat) > SAME_BEAT:
                    loudest[beat] = max(loudest[beat], note.velocity)
        for index, note in enumerate(notes):
            beat = hit_key(note.start)
            if beat not in accents or note.instrument not in players:
                continue
            velocity = min(127, max(accents[beat], loudest[beat] + ACCENT_OVER))
            if note.velocity < velocity:
                notes[index] = dataclasses.replace(note, velocity=velocity)

    def _spaced(self, strong_hits: list[float]) -> set[float]:
        """Of the strong cuts' hits (`strong_hits`, beats) and the sections' crashes, the
        cymbals kept: every crash that opens a rise (a drop), or a strong cut's at a rise, and
        the final chord's, then in turn each other one at least CYMBAL_GAP_BARS from every one
        kept (one struck at once with a kept one is the same stroke). The crashes not kept
        are left out, and the strong cuts not kept returned, to be struck without theirs."""
        gap = CYMBAL_GAP_BARS * self.bar_beats - SAME_BEAT
        # Where the rises come: a strong cut within a beat of one (its bar line's crash left
        # out for the cut's) is the rise's crash. (They had been spaced out as any other,
        # 31 of 107 rises with no crash, which fell on flat cuts instead; a music review.)
        rises = sorted({beat for form, texture in zip(self.forms, self.result.texture_starts,
                                                      strict=True)
                        if form.start_beat in self._rises
                        for beat in (float(form.start_beat), texture)})  # fmt: skip

        def at_a_rise(beat: float) -> bool:
            at = bisect.bisect_left(rises, beat - 1.0 - SAME_BEAT)
            return at < len(rises) and rises[at] <= beat + 1.0 + SAME_BEAT

        kept = sorted([beat for beat, _, rise in self._crashes if rise]
                      + [beat for beat in strong_hits if at_a_rise(beat)])  # fmt: skip
        others = sorted([(beat, key) for beat, key, rise in self._crashes if not rise]
                        + [(beat, None) for beat in strong_hits if not at_a_rise(beat)],
                        key=lambda m: m[0])  # fmt: skip
        spaced: set[float] = set()
        # How many strokes of each (beat, key) to leave out.
        dropped: Counter[tuple[float, int]] = Counter()
        for beat, key in others:
            low, high = bisect.bisect_right(kept, beat - gap), bisect.bisect_left(kept, beat + gap)
            near = kept[low:high]
            if all(abs(beat - other) <= SAME_BEAT for other in near):
                bisect.insort(kept, beat)
            elif key is None:
                spaced.add(beat)
            else:
                dropped[hit_key(beat), key] += 1
        drums = self.roles.of("drums")[:1]
        if not dropped or not drums:
            return spaced
        # The loudest strokes: the groove's own stroke of that key there stays.
        strokes: dict[tuple[float, int], list[int]] = defaultdict(list)
        notes = self.result.notes
        for index, note in enumerate(notes):
            mark = (hit_key(note.start), note.pitch)
            if note.instrument == drums[0] and mark in dropped:
                strokes[mark].append(index)
        left_out = set()
        for mark, indices in strokes.items():
            left_out |= set(sorted(indices, key=lambda i: -notes[i].velocity)[: dropped[mark]])
        self.result.notes = [n for i, n in enumerate(notes) if i not in left_out]
        return spaced

    def _accented(self, beats: set[float], grooves: list[int | None]) -> set[float]:
        """Of a flurry's weak cuts (`beats`), those where the drums' groove strikes: the
        loudest of its strokes there is played as the cut's accent, and no other hit is
        added. A montage cut on every beat had struck the genre's whole light hit on each:
        hip-hop's boom-bap became a cowbell and a kick on 97% of its beats (41% with a cut
        every 8 s), rock's and lo-fi's backbeat fell on beats 1 and 3 (a music review)."""
        drums = self.roles.of("drums")[:1]
        if not beats or not drums:
            return set()
        loudest: dict[float, int] = {}
        for index, note in enumerate(self.result.notes):
            start = hit_key(note.start)
            if note.instrument != drums[0] or start not in beats:
                continue
            if start not in loudest or note.velocity > self.result.notes[loudest[start]].velocity:
                loudest[start] = index
        for beat, index in loudest.items():
            hit, _ = self._cut_velocities(beat, False, grooves)
            note = self.result.notes[index]
            self.result.notes[index] = dataclasses.replace(note, velocity=max(note.velocity, hit))
        return set(loudest)

    def _bass_stabs_held(self, beats: list[float]) -> None:
        """The bass's stab at a strong cut (struck at `beats`) holds until the bass's next
        note, a bar at most: struck for half a beat, it had left the low end silent to the
        line's next bar line, 1.8 s from the busiest section's first cut in an ambient piece
        (the mix 9 dB down; a music review: 5 of 46 cuts in bands without drums)."""
        bass = self.roles.of("bass")[:1]
        if not bass or not beats:
            return
        notes = self.result.notes
        line = sorted(n.start for n in notes if n.instrument == bass[0])
        stabbed = set(beats)
        for i, note in enumerate(notes):
            if note.instrument != bass[0] or note.start not in stabbed:
                continue
            at = bisect.bisect_right(line, note.start + SAME_BEAT)
            following = line[at] if at < len(line) else self.result.end_beat
            end = min(following, note.start + self.bar_beats)
            if end > note.end:
                notes[i] = dataclasses.replace(note, end=end)

    def _struck_with_stabs(self, stabs: list[tuple[str, float]], stopped: set[float]) -> None:
        """A player's own notes within FLAM_S of its stab at a cut are struck with it (one
        on a pitch the stab has is the stab's): a pop piano's sixteenth, 6 ms after a cut's
        chord between beats, had struck the chord again (a 6 ms note in the MIDI file).
        Before a cut whose drums stop for it (`stopped`), the players who stab stop with
        them: what they strike in the stop is struck with the stab on a pitch it has (held
        as long as it was), else left out. A lo-fi bar's chord and bass, struck on its
        downbeat, had been struck again 73 ms later at the cut (a music review). The bass
        plays one note at a time: its own note beside its stab on another pitch is left out
        (an off-beat bass's sixteenth on the old chord's root had sounded with its stab on the
        next chord's, pushed to the cut)."""
        if not stabs:
            return
        bass = set(self.roles.of("bass")[:1])
        widths = {beat: FLAM_S / (self.plan.beat_time(beat + 1) - self.plan.beat_time(beat))
                  for _, beat in stabs}  # fmt: skip
        by_player: dict[str, list[float]] = defaultdict(list)
        for player, beat in sorted(stabs, key=lambda stab: stab[1]):
            by_player[player].append(beat)
        struck = {(player, beat) for player, beat in stabs}
        stab_keys = {(n.instrument, n.pitch, n.start) for n in self.result.notes
                     if (n.instrument, n.start) in struck}  # fmt: skip

        def beside(beats: list[float], start: float) -> float | None:
            """The stab a note struck at `start` would flam with, if any."""
            at = bisect.bisect_left(beats, start)
            return next((b for b in beats[max(0, at - 1) : at + 1]
                         if 1e-6 < abs(start - b) <= widths[b]), None)  # fmt: skip

        def stopping(beats: list[float], start: float) -> float | None:
            """The stop a note struck at `start` falls in, if any."""
            at = bisect.bisect_right(beats, start + 1e-6)
            while at < len(beats) and beats[at] <= start + CUT_STOP_BEATS:
                if beats[at] in stopped:
                    return beats[at]
                at += 1
            return None

        others: list[Note] = []
        played: dict[tuple[str, int, float], Note] = {}
        for note in self.result.notes:
            self.heartbeat()
            if note.instrument not in by_player:
                others.append(note)
                continue
            stab = beside(by_player[note.instrument], note.start)
            stop = stopping(by_player[note.instrument], note.start)
            if stab is not None:
                if note.instrument in bass and (note.instrument, note.pitch, stab) not in stab_keys:
                    continue
                note = dataclasses.replace(note, start=stab, end=stab + note.end - note.start)
            elif stop is not None:
                if (note.instrument, note.pitch, stop) not in stab_keys:
                    continue
                note = dataclasses.replace(note, start=stop)
            key = (note.instrument, note.pitch, note.start)
            if key not in played or note.end > played[key].end:
                played[key] = note
        self.result.notes = [*others, *played.values()]

    def _pushed(self, pushes: list[_Push]) -> None:
        """A bar line that a cut with a stab precedes by less than HANDOVER_MIN_BEATS is
        struck at the cut, as a band pushes a downbeat: the players who strike on the bar
        line strike there at the cut instead (a stabbing player at its stab's velocity, in
        place of its stab), held over the bar line; what they would strike between is left
        out, and what they hold into the cut ends there. The drums' strokes on the bar line
        that the cut's hit plays are left out. The cut's stab and crash had struck the old
        chord and the bar line the new one a moment later, kick and all (a music review: 15
        of 23 such cuts in four cut-heavy videos struck a player twice 0.06-0.41 beat
        apart)."""
        if not pushes:
            return
        drums = set(self.roles.of("drums"))
        ordered = sorted(self.result.notes, key=lambda n: n.start)
        starts = [n.start for n in ordered]
        strikers = []
        for push in pushes:
            on_line = ordered[bisect.bisect_left(starts, push.bar_line - 1e-6) :
                              bisect.bisect_right(starts, push.bar_line + 1e-6)]  # fmt: skip
            strikers.append({n.instrument for n in on_line} - drums)
        cuts = [push.cut for push in pushes]
        kept: list[Note] = []
        for note in self.result.notes:
            self.heartbeat()
            at = bisect.bisect_right(cuts, note.start + 1e-6) - 1
            if at >= 0 and note.start < pushes[at].bar_line + 1e-6:
                push = pushes[at]
                if note.instrument in drums:
                    if note.start > push.bar_line - 1e-6 and note.pitch in push.keys:
                        continue
                elif note.instrument in strikers[at]:
                    if note.start < push.bar_line - 1e-6:
                        continue
                    velocity = max(note.velocity, push.stabs.get(note.instrument, 0))
                    note = dataclasses.replace(note, start=push.cut, velocity=velocity)
            after = at + 1
            if (
                after < len(pushes)
                and note.instrument in strikers[after]
                and note.start < cuts[after] - 1e-6 < note.end
            ):
                note = dataclasses.replace(note, end=cuts[after])
            kept.append(note)
        self.result.notes = kept

    def _texture_at(self, beat: float) -> int:
        """The section whose texture sounds at `beat` (from its cut, where it hands over
        inside a bar)."""
        return max(0, bisect.bisect_right(self.result.texture_starts, beat + SAME_BEAT) - 1)

    def _loudest_strokes(self) -> list[int | None]:
        """Per section, the loudest stroke its drums play (None where they play none)."""
        loudest: list[int | None] = [None] * len(self.forms)
        drums = set(self.roles.of("drums"))
        for note in self.result.notes:
            if note.instrument in drums:
                index = self._texture_at(note.start)
                loudest[index] = max(loudest[index] or 0, note.velocity)
        return loudest

    def _cut_velocities(
        self, beat: float, strong: bool, grooves: list[int | None]
    ) -> tuple[int, int]:
        """A cut's hit, the drums' and the band's: over the loudest stroke its drums play
        (`grooves`, per section; the groove's accent at its level where they play none) and
        over the velocity the band plays its bars at (`_bar`) in the section whose texture
        sounds at `beat` (the one a cut inside a bar hands over to: marked at the level of the
        section before, the hit into a busier one had come under its first beats); in the
        final chord's ring, falling with it (TAIL_CUT_VELOCITY)."""
        index = self._texture_at(beat)
        level = self._level(self.forms[index], intro=False)
        groove = grooves[index] or _stroke_velocity("X", level)
        drums = min(127, groove + CUT_OVER_GROOVE[not strong])
        band = min(CUT_VELOCITY[not strong], _playing_velocity(level) + CUT_ACCENT[not strong])
        final = self.result.final
        if final is None or not self._in_final_ring(beat):
            return drums, band
        struck = self.plan.beat_time(final.start)
        through = (self.plan.beat_time(beat) - struck) / max(self.duration_s - struck, 1e-6)
        first, last = TAIL_CUT_VELOCITY
        tail = round(first + (last - first) * min(1.0, through))
        return min(drums, tail), min(band, tail)

    def _breakdown_spans(self) -> list[tuple[float, float]]:
        """The breakdowns, in order, each from the cut its texture comes in at to the one its
        drop does (beats)."""
        textures = [*self.result.texture_starts, float(self.forms[-1].end_beat)]
        return [(textures[i] - SAME_BEAT, textures[i + 1] - SAME_BEAT)
                for i, form in enumerate(self.forms)
                if form.start_beat in self._breakdowns]  # fmt: skip

    def _in_final_ring(self, beat: float) -> bool:
        """Whether `beat` lies after the final chord's strike (a cut on the strike is the
        chord's own)."""
        final = self.result.final
        return final is not None and beat > final.start + SAME_BEAT

    def _cut_beside(self, beat: float) -> bool:
        """A cut within a beat of `beat`, before or after it but not on it: its hit would
        sound beside a crash there as a second one (a cut a beat before a section's bar line
        had been marked by a crash, and the bar line by another), or drown a flurry's light
        accent just after it."""
        cuts = self._cut_beats
        near = cuts[bisect.bisect_left(cuts, beat - 1.0 - SAME_BEAT) :
                    bisect.bisect_right(cuts, beat + 1.0 + SAME_BEAT)]  # fmt: skip
        return any(abs(cut - beat) > SAME_BEAT for cut in near)

    def _clear_flams(self, hits: list[tuple[float, frozenset[int] | None]]) -> None:
        """The drums' own strokes within FLAM_S of a cut's hit, not struck with it: `hits`,
        (beat, keys) in order, with keys None for a hit that stands for them (they are left
        out), else the keys the hit plays (those are left out, the rest are struck with
        it)."""
        drums = self.roles.of("drums")[:1]
        if not hits or not drums:
            return
        beats = [beat for beat, _ in hits]
        widths = [FLAM_S / (self.plan.beat_time(beat + 1) - self.plan.beat_time(beat))
                  for beat in beats]  # fmt: skip

        def beside(note: Note) -> int | None:
            """The hit `note` would smear, if any."""
            # Hits lie at least DISTINCT_HIT_S apart: only the two around a note can reach it.
            index = bisect.bisect_left(beats, note.start)
            for i in (index - 1, index):
                if 0 <= i < len(hits) and 1e-6 < abs(note.start - beats[i]) <= widths[i]:
                    return i
            return None

        notes = []
        for note in self.result.notes:
            hit = beside(note) if note.instrument == drums[0] else None
            if hit is None:
                notes.append(note)
                continue
            beat, keys = hits[hit]
            if keys is not None and note.pitch not in keys:
                notes.append(dataclasses.replace(note, start=beat,
                                                 end=beat + note.end - note.start))  # fmt: skip
        self.result.notes = notes

    def _stop_drums(self, stops: list[tuple[float, float]]) -> None:
        """Silence the drums' own pattern in each (start, end) window (a stop before a hit)."""
        drums = self.roles.of("drums")[:1]
        if not stops or not drums:
            return
        windows = sorted(stops)
        window_starts = [start for start, _ in windows]
        # Windows are half a beat long, so only the latest one starting before a note can
        # hold it.

        def stopped(note: Note) -> bool:
            index = bisect.bisect_right(window_starts, note.start + 1e-6) - 1
            if index < 0:
                return False
            start, end = windows[index]
            return start - 1e-6 <= note.start < end - 1e-6

        self.result.notes = [
            n for n in self.result.notes if n.instrument != drums[0] or not stopped(n)
        ]


def _within(spans: list[tuple[float, float]], beat: float) -> bool:
    """Whether `beat` lies in one of `spans` ((start, end), in order, apart)."""
    at = bisect.bisect_right(spans, (beat, math.inf)) - 1
    return at >= 0 and spans[at][0] <= beat < spans[at][1]


def _with_fill(groove: Pattern, fill: Pattern) -> Pattern:
    """The groove with its steps from the fill's first hit on replaced by the fill."""
    first = min((line.find(c) for line in fill.values() for c in "Xxo" if c in line), default=0)
    result = {key: line[:first] + "." * (len(line) - first) for key, line in groove.items()}
    for key, line in fill.items():
        kept = result.get(key, "." * len(line))
        result[key] = kept[:first] + line[first:]
    return result


def release_tail_s(after_final_s: float, ring_s: float) -> float:
    """Seconds from the final chord's release to the end, given the seconds from its strike
    to the end: the space's `ring_s` once the chord can be held FINAL_HOLD_S, else what the
    hold leaves, never under RELEASE_TAIL_SHARE of it. (The share had held for a final chord
    with time to spare too: 3.6 s before a 15 s clip's end, let go 1.44 s before it, its
    room's ring spent, the last 0.7-1.0 s 30 dB under the music; a music review.)"""
    if after_final_s >= FINAL_HOLD_S + ring_s:
        return ring_s
    return max(after_final_s - FINAL_HOLD_S, RELEASE_TAIL_SHARE * after_final_s)
