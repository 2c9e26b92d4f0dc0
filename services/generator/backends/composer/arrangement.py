"""From a timing plan, tags and a style to notes: harmony, melody, bass, comping, pads, drums.

Positions are in beats of the timing plan (beat i starts at plan.beats_s[i]), so every note
lands on the grid that the cuts were fitted to. Form follows the sections (one per video
segment): intensity follows the segment's energy, parts enter and leave at section starts,
drum fills lead into busier sections, the first bars are an intro, and the piece closes on a
cadence to the tonic whose tail ends inside the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.generator.backends.composer import styles as drum_keys
from services.generator.backends.composer.styles import Style
from services.generator.backends.composer.theory import (
    Chord,
    Key,
    chord,
    nearest_in,
    scale_step,
    voice,
)
from services.generator.backends.composer.timing import TimingPlan

# Which vocabulary instruments can take which part, in order of preference.
MELODY_VOICES = ("woodwinds", "synth", "brass", "piano", "electric-guitar", "strings", "plucks",
                 "acoustic-guitar")  # fmt: skip
COMPING_VOICES = ("piano", "acoustic-guitar", "electric-guitar", "plucks", "synth", "strings",
                  "brass", "woodwinds")  # fmt: skip
# Bowed and blown instruments sustain their chords rather than strum or pulse them.
SUSTAINING = ("strings", "pads", "brass", "woodwinds")
# Energy (0.6 x segment + 0.4 x whole piece) at which each intensity 1..3 begins.
INTENSITY_THRESHOLDS = (0.15, 0.35, 0.6)
# Seconds between the final chord's release and the end of the piece (the release tail).
RELEASE_TAIL_S = 0.9


@dataclass
class Note:
    instrument: str
    pitch: int
    start: float  # beats
    end: float  # beats
    velocity: int


@dataclass(frozen=True)
class Roles:
    """Which instrument plays which part. Every chosen instrument plays at least one part; a
    lone melodic instrument plays two (piano: melody and chords)."""

    melody: str | None
    comping: tuple[str, ...]
    pad: tuple[str, ...]
    bass: str | None
    drums: str | None
    arp: tuple[str, ...]

    def parts_of(self, instrument: str) -> list[str]:
        parts = []
        for name in ("melody", "comping", "pad", "bass", "drums", "arp"):
            value = getattr(self, name)
            if value == instrument or (isinstance(value, tuple) and instrument in value):
                parts.append(name)
        return parts


def assign_roles(instruments: list[str]) -> Roles:
    remaining = list(instruments)

    def take(candidates: tuple[str, ...]) -> str | None:
        for name in candidates:
            if name in remaining:
                remaining.remove(name)
                return name
        return None

    drums = take(("drums",))
    bass = take(("bass",))
    pads = [take(("pads",))] if "pads" in remaining else []
    if not pads and "strings" in remaining and len(remaining) > 2:
        pads.append(take(("strings",)))
    melody = take(MELODY_VOICES)
    comping = [take(COMPING_VOICES)] if any(v in remaining for v in COMPING_VOICES) else []
    arp = [take(("plucks", "synth"))] if any(v in remaining for v in ("plucks", "synth")) else []
    # Whatever is left doubles the part it suits best.
    for instrument in list(remaining):
        if instrument == "strings":
            pads.append(instrument)
        elif instrument in ("plucks", "synth"):
            arp.append(instrument)
        else:
            comping.append(instrument)
    # A lone melodic instrument plays both melody and accompaniment.
    if not comping and melody in ("piano", "acoustic-guitar", "electric-guitar", "plucks",
                                  "strings"):  # fmt: skip
        comping.append(melody)
    if melody is None and comping and comping[0] in ("piano", "strings", "plucks", "synth"):
        melody = comping[0]
    return Roles(
        melody=melody,
        comping=tuple(c for c in comping if c),
        pad=tuple(p for p in pads if p),
        bass=bass,
        drums=drums,
        arp=tuple(a for a in arp if a),
    )


@dataclass(frozen=True)
class SectionForm:
    start_beat: int
    end_beat: int
    energy: float
    intensity: int
    role: str  # intro | main | ending
    moods: list[str]


@dataclass
class Arrangement:
    notes: list[Note] = field(default_factory=list)
    # Per section: the roman numeral of each bar, and which instruments play in it.
    section_chords: list[list[str]] = field(default_factory=list)
    section_instruments: list[list[str]] = field(default_factory=list)
    # Beat at which the final chord's notes end (its release tail follows).
    end_beat: float = 0.0


def intensity_of(energy: float) -> int:
    return sum(energy >= threshold for threshold in INTENSITY_THRESHOLDS)


def seconds_to_beat(plan: TimingPlan, seconds: float) -> float:
    beats = plan.beats_s
    index = int(np.searchsorted(beats, seconds, side="right")) - 1
    index = max(0, min(index, len(beats) - 2)) if len(beats) > 1 else 0
    if len(beats) == 1:
        return seconds - beats[0]
    period = beats[index + 1] - beats[index]
    return index + (seconds - beats[index]) / period


class Composer:
    """Writes the notes of one piece; all choices come from `rng`, so a seed fixes them."""

    def __init__(
        self,
        plan: TimingPlan,
        style: Style,
        key: Key,
        roles: Roles,
        forms: list[SectionForm],
        duration_s: float,
        rng: np.random.Generator,
    ):
        self.plan = plan
        self.style = style
        self.key = key
        self.roles = roles
        self.forms = forms
        self.duration_s = duration_s
        self.rng = rng
        self.result = Arrangement()
        self._comp_voicing: tuple[int, ...] | None = None
        self._pad_voicing: tuple[int, ...] | None = None
        self._bass_pitch = 40
        self._melody_pitch = 72
        self._motifs = [self._motif() for _ in range(2)]

    # ---- form -------------------------------------------------------------------------

    def bars(self) -> list[tuple[int, int]]:
        starts = self.plan.bar_starts
        ends = [*starts[1:], len(self.plan.beats_s)]
        return list(zip(starts, ends, strict=True))

    def compose(self) -> Arrangement:
        final = self.plan.final_beat
        end_beat = (
            seconds_to_beat(self.plan, self.duration_s - RELEASE_TAIL_S)
            if final is not None
            else seconds_to_beat(self.plan, self.duration_s)
        )
        self.result.end_beat = end_beat
        progression_choice: dict[int, list[str]] = {}
        bars = self.bars()
        # The progression runs on across sections, so short sections still move harmonically.
        bar_number = 0
        for index, form in enumerate(self.forms):
            section_bars = [(a, b) for a, b in bars if form.start_beat <= a < form.end_beat]
            options = self.style.major if self.key.mode == "major" else self.style.minor
            if form.intensity not in progression_choice:
                progression_choice[form.intensity] = options[int(self.rng.integers(len(options)))]
            progression = progression_choice[form.intensity]
            numerals = []
            for _ in section_bars:
                step = bar_number // self.style.bars_per_chord
                numerals.append(progression[step % len(progression)])
                bar_number += 1
            numerals = self._cadence(section_bars, numerals)
            next_form = self.forms[index + 1] if index + 1 < len(self.forms) else None
            playing: set[str] = set()
            # Busy sections share the main motif, quiet ones its companion.
            motif = self._motifs[0 if form.intensity >= 2 else 1]
            for position, ((start, end), numeral) in enumerate(
                zip(section_bars, numerals, strict=True)
            ):
                if final is not None and start >= final:
                    self._final_chord(start, end_beat, playing)
                    break
                # The intro: the first two bars of a long first section, or the first bar of
                # a short one, played by the accompaniment alone.
                intro_bars = 2 if len(section_bars) > 2 else 1 if len(section_bars) > 1 else 0
                intro = form.role == "intro" and position < intro_bars
                level = 0 if intro else form.intensity
                is_last_bar = position == len(section_bars) - 1
                fill = (
                    is_last_bar
                    and next_form is not None
                    and next_form.intensity >= 2
                    and next_form.intensity >= level
                    and level >= 1
                )
                playing |= self._bar(
                    start,
                    end,
                    chord(numeral, self.key),
                    level,
                    phrase_bar=position % 4,
                    accent=position == 0,
                    fill=fill,
                    motif=motif,
                )
            self.result.section_chords.append(numerals)
            self.result.section_instruments.append(sorted(playing))
        return self.result

    def _cadence(self, section_bars: list[tuple[int, int]], numerals: list[str]) -> list[str]:
        """The bar before the final chord is the dominant (or subdominant), the final the tonic."""
        final = self.plan.final_beat
        if final is None:
            return numerals
        tonic = "I" if self.key.mode == "major" else "i"
        before = ("IV" if self.key.mode == "major" else "iv") if self.style.plagal_ending else "V"
        result = list(numerals)
        for position, (start, _end) in enumerate(section_bars):
            if start == final:
                result[position] = tonic
                if position > 0:
                    result[position - 1] = before
        return result

    # ---- one bar ----------------------------------------------------------------------

    def _bar(
        self,
        start: int,
        end: int,
        harmony: Chord,
        level: int,
        phrase_bar: int,
        accent: bool,
        fill: bool,
        motif: tuple[list[float], list[int]],
    ) -> set[str]:
        roles = self.roles
        playing: set[str] = set()
        velocity = 52 + 12 * level
        for number, pad in enumerate(roles.pad):
            self._pad(
                pad, start, end, harmony, velocity - 6 + (10 if accent else 0), octave=12 * number
            )
            playing.add(pad)
        for number, comping in enumerate(roles.comping):
            # Doubling instruments join from intensity 2; quiet bars keep to the first.
            if number and level < 2:
                continue
            self._comping(
                comping,
                start,
                end,
                harmony,
                level,
                velocity + (12 if accent and level < 2 else 0) - 8 * number,
            )
            playing.add(comping)
        if roles.bass and level >= 1:
            self._bass(roles.bass, start, end, harmony, level, velocity + 8)
            playing.add(roles.bass)
        if roles.drums and level >= 1:
            self._drums(roles.drums, start, end, level, crash=accent and level >= 2, fill=fill)
            playing.add(roles.drums)
        if roles.melody and (level >= 1 or not (roles.pad or roles.comping)):
            self._melody(roles.melody, start, end, harmony, phrase_bar, motif, velocity + 14)
            playing.add(roles.melody)
        for number, arp in enumerate(roles.arp):
            if level >= 2 + number:
                self._arp(arp, start, end, harmony, level, velocity - 4)
                playing.add(arp)
        return playing

    def _final_chord(self, start: int, end_beat: float, playing: set[str]) -> None:
        tonic = chord("I" if self.key.mode == "major" else "i", self.key)
        end = max(start + 0.5, end_beat)
        roles = self.roles
        for instrument in dict.fromkeys([*roles.pad, *roles.comping, *roles.arp]):
            voicing = voice(tonic, self._comp_voicing, 52, 76)
            for pitch in voicing:
                self._add(instrument, pitch, start, end, 78)
            playing.add(instrument)
        if roles.bass:
            self._add(
                roles.bass, nearest_in(self._bass_pitch, (tonic.root,), 28, 52), start, end, 84
            )
            playing.add(roles.bass)
        if roles.melody:
            pitch = nearest_in(self._melody_pitch, (tonic.root,), 60, 84)
            self._add(roles.melody, pitch, start, end, 80)
            playing.add(roles.melody)
        if roles.drums:
            self._add(roles.drums, drum_keys.KICK, start, start + 0.25, 100)
            self._add(roles.drums, drum_keys.CRASH, start, start + 0.25, 96)
            playing.add(roles.drums)

    # ---- parts ------------------------------------------------------------------------

    def _add(self, instrument: str, pitch: int, start: float, end: float, velocity: int) -> None:
        end = min(end, self.result.end_beat) if start < self.result.end_beat else end
        if end - start <= 1e-3:
            return
        velocity = min(127, max(1, int(velocity + self.rng.integers(-4, 5))))
        self.result.notes.append(Note(instrument, int(pitch), start, end, velocity))

    def _swing(self, position: float) -> float:
        fraction = position % 1.0
        if self.style.swing and abs(fraction - 0.5) < 1e-6:
            return position + self.style.swing
        return position

    def _pad(
        self, instrument: str, start: int, end: int, harmony: Chord, velocity: int, octave: int
    ) -> None:
        if octave == 0:
            self._pad_voicing = voice(harmony, self._pad_voicing, 48, 72)
        voicing = self._pad_voicing or voice(harmony, None, 48, 72)
        for pitch in voicing:
            self._add(instrument, pitch + octave, start, end, velocity)

    def _comping(
        self, instrument: str, start: int, end: int, harmony: Chord, level: int, velocity: int
    ) -> None:
        style = self.style.comping if level >= 1 else "sustain"
        if instrument in SUSTAINING and style != "arp":
            style = "sustain"
        low, high = (40, 64) if style == "power" else (52, 76)
        self._comp_voicing = voice(harmony, self._comp_voicing, low, high)
        voicing = self._comp_voicing
        length = end - start
        if style == "sustain":
            for pitch in voicing:
                self._add(instrument, pitch, start, end, velocity)
        elif style == "pulse8":
            for step in range(length * 2):
                position = start + step / 2
                accent = 10 if step % 2 == 0 else 0
                for pitch in voicing:
                    self._add(
                        instrument,
                        pitch,
                        self._swing(position),
                        self._swing(position) + 0.45,
                        velocity - 6 + accent,
                    )
        elif style == "strum":
            # Down on the beats, up on some off-beats, strings spread like a real strum.
            pattern = (0.0, 1.0, 1.5, 2.5, 3.0, 3.5) if level >= 2 else (0.0, 2.0)
            hits = [p for p in pattern if p < length] or [0.0]
            for i, offset in enumerate(hits):
                up = offset % 1.0 > 0
                order = list(reversed(voicing)) if up else list(voicing)
                stop = start + (hits[i + 1] if i + 1 < len(hits) else length)
                for n, pitch in enumerate(order):
                    onset = self._swing(start + offset) + 0.03 * n
                    self._add(instrument, pitch, onset, stop, velocity - (10 if up else 0))
        elif style == "arp":
            notes = [*voicing, voicing[1] + 12 if len(voicing) > 1 else voicing[0] + 12]
            for step in range(length * 2):
                pitch = notes[step % len(notes)]
                position = start + step / 2
                self._add(instrument, pitch, position, position + 0.5, velocity - 4)
        elif style == "stab":
            offsets = [1.5, 3.5] if level < 3 else [0.5, 1.5, 2.5, 3.5]
            for offset in (o for o in offsets if o < length):
                position = self._swing(start + offset)
                for pitch in voicing:
                    self._add(instrument, pitch, position, position + 0.3, velocity)
        elif style == "power":
            root = min(voicing, key=lambda p: (p - harmony.root) % 12)
            power = (root, root + 7, root + 12)
            for step in range(length * 2):
                position = start + step / 2
                for pitch in power:
                    self._add(instrument, pitch, position, position + 0.45, velocity)
        else:
            raise ValueError(f"unknown comping style {style!r}")

    def _bass(
        self, instrument: str, start: int, end: int, harmony: Chord, level: int, velocity: int
    ) -> None:
        root = nearest_in(self._bass_pitch, (harmony.root,), 28, 50)
        self._bass_pitch = root
        fifth = root + 7
        length = end - start
        style = (
            self.style.bass
            if level >= 2
            else ("sustain" if self.style.bass == "sustain" else "halves")
        )
        events: list[tuple[float, float, int]]
        if style == "sustain":
            events = [(0.0, float(length), root)]
        elif style == "halves":
            events = [(float(b), 1.9, root) for b in range(0, length, 2)]
        elif style == "pulse":
            events = [(float(b), 0.9, root) for b in range(length)]
        elif style == "root8":
            events = [(s / 2, 0.45, root) for s in range(length * 2)]
        elif style == "octaves":
            events = [(s / 2, 0.45, root + (12 if s % 2 else 0)) for s in range(length * 2)]
        elif style == "syncopated":
            events = [
                (0.0, 1.4, root),
                (2.0, 0.4, root),
                (2.5, 1.0, fifth - 12 if fifth > 40 else fifth),
            ]
        elif style == "walking":
            events = [
                (0.0, 0.9, root),
                (1.0, 0.9, fifth),
                (2.0, 0.9, root + 12 if root < 40 else root),
                (3.0, 0.9, fifth),
            ]
        else:
            raise ValueError(f"unknown bass style {style!r}")
        for offset, duration, pitch in events:
            if offset < length:
                position = self._swing(start + offset)
                self._add(
                    instrument, pitch, position, min(start + offset + duration, end), velocity
                )

    def _drums(
        self, instrument: str, start: int, end: int, level: int, crash: bool, fill: bool
    ) -> None:
        pattern = self.style.drums[level]
        length = end - start
        steps = length * 4
        for key, line in pattern.items():
            for step in range(steps):
                if fill and step >= steps - 4:
                    continue
                mark = line[step % 16]
                if mark == ".":
                    continue
                velocity = {"X": 112, "x": 92, "o": 52}[mark] - 8 * (3 - level)
                position = self._swing(start + step / 4)
                self._add(instrument, key, position, position + 0.2, velocity)
        if crash:
            self._add(instrument, drum_keys.CRASH, start, start + 0.5, 100)
        if fill:
            # A snare (or tom) roll on the last beat leads into the next section.
            drum = (
                drum_keys.MID_TOM if drum_keys.LOW_TOM in self.style.drums[3] else (drum_keys.SNARE)
            )
            for i in range(4):
                position = end - 1 + i / 4
                self._add(instrument, drum, position, position + 0.2, 70 + 12 * i)
            self._add(instrument, drum_keys.KICK, end - 1, end - 0.8, 100)

    def _motif(self) -> tuple[list[float], list[int]]:
        """One bar of rhythm (beat offsets) and contour (scale steps between notes)."""
        grid = self.style.melody_grid
        onsets = [0.0]
        for step in range(1, 4 * grid):
            strong = step % grid == 0
            chance = self.style.melody_density * (1.4 if strong else 0.8)
            if self.rng.random() < chance:
                onsets.append(step / grid)
        while len(onsets) < 3:
            candidate = int(self.rng.integers(1, 4 * grid)) / grid
            if candidate not in onsets:
                onsets.append(candidate)
        onsets.sort()
        contour = [int(self.rng.choice([-2, -1, -1, 1, 1, 2, 3, -3])) for _ in onsets]
        return onsets, contour

    def _melody(
        self,
        instrument: str,
        start: int,
        end: int,
        harmony: Chord,
        phrase_bar: int,
        motif: tuple[list[float], list[int]],
        velocity: int,
    ) -> None:
        onsets, contour = motif
        length = end - start
        if phrase_bar == 3:
            # The phrase ends: one long note on a chord tone.
            onsets, contour = [0.0], [0]
        elif phrase_bar == 2:
            # Variation: the same rhythm, the contour turned upside down.
            contour = [-step for step in contour]
        onsets = [o for o in onsets if o < length] or [0.0]
        classes = harmony.pitch_classes
        pitch = nearest_in(self._melody_pitch + (2 if phrase_bar == 1 else 0), classes, 62, 82)
        for i, offset in enumerate(onsets):
            if i > 0:
                pitch = scale_step(pitch, contour[i], self.key)
                if offset % 2 == 0:  # strong beats take chord tones
                    pitch = nearest_in(pitch, classes, 62, 82)
                pitch = min(84, max(60, pitch))
            stop = onsets[i + 1] if i + 1 < len(onsets) else length
            duration = min(stop - offset, 2.0) * 0.95
            position = self._swing(start + offset)
            self._add(
                instrument,
                pitch,
                position,
                start + offset + duration,
                velocity + (6 if offset == 0 else 0),
            )
        self._melody_pitch = pitch

    def _arp(
        self, instrument: str, start: int, end: int, harmony: Chord, level: int, velocity: int
    ) -> None:
        voicing = voice(harmony, None, 64, 86)
        notes = [*voicing, *reversed(voicing[1:-1])] if len(voicing) > 2 else list(voicing)
        per_beat = 4 if level >= 3 else 2
        for step in range((end - start) * per_beat):
            position = start + step / per_beat
            self._add(
                instrument,
                notes[step % len(notes)],
                position,
                position + 1 / per_beat * 0.9,
                velocity,
            )


def section_forms(
    plan: TimingPlan, energies: list[float], moods: list[list[str]], piece_energy: float
) -> list[SectionForm]:
    forms = []
    for i, section in enumerate(plan.sections):
        energy = 0.6 * energies[i] + 0.4 * piece_energy
        final = plan.final_beat
        end = section.first_beat + section.beat_count
        role = "intro" if i == 0 else "main"
        if final is not None and section.first_beat <= final < end:
            role = "ending" if i > 0 else "intro"
        forms.append(
            SectionForm(section.first_beat, end, energy, intensity_of(energy), role, moods[i])
        )
    return forms
