"""Keys, scales, roman-numeral chords and voice leading."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

PITCH_CLASSES = {
    "C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
    "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
}  # fmt: skip
KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Minor keys as musicians spell them: C# and G# minor (4 and 5 sharps), not Db and Ab minor
# (8 and 7 flats: no one writes them).
MINOR_KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Semitones above the tonic of each roman degree, measured on the major scale ("bVI" lowers).
DEGREES = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
# The major seventh above a root, in semitones.
MAJOR_SEVENTH = 11
_ROMAN = re.compile(
    r"^(b?)(VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(°?)(maj7|7|sus2|sus4|add9)?$"
)


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str  # "major" or "minor"

    @classmethod
    def parse(cls, text: str) -> Key:
        tonic, mode = text.split()
        return cls(PITCH_CLASSES[tonic], mode)

    @property
    def name(self) -> str:
        """E.g. "Eb major" (flats for the black keys, but F# for the tritone, and C# and G#
        for minor keys)."""
        names = MINOR_KEY_NAMES if self.mode == "minor" else KEY_NAMES
        return f"{names[self.tonic]} {self.mode}"

    # Cached: the composer asks hundreds of thousands of times per long piece.
    @functools.cached_property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + step) % 12 for step in SCALES[self.mode])

    @functools.cached_property
    def _scale_classes(self) -> frozenset[int]:
        return frozenset(self.scale)

    def in_scale(self, pitch: int) -> bool:
        return pitch % 12 in self._scale_classes


@dataclass(frozen=True)
class Chord:
    numeral: str
    root: int  # pitch class
    # Pitch classes above the root (0 first), e.g. (0, 4, 7) for a major triad.
    intervals: tuple[int, ...]

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    @property
    def steady_tones(self) -> tuple[int, ...]:
        """The pitch classes a held tune note may rest on: the chord's tones but one a
        semitone above another (the root of a major-seventh chord, over its seventh)."""
        classes = self.pitch_classes
        return tuple(c for c in classes if (c - 1) % 12 not in classes) or classes

    def rubs(self, pitch: int) -> bool:
        """A semitone above one of the chord's tones (a minor ninth against it when held)."""
        return (pitch - 1) % 12 in self.pitch_classes

    def leans(self, pitch: int) -> bool:
        """A semitone under one of the chord's tones (a ninth under a minor third, a major
        seventh under the root: a minor second against that tone voiced just above it)."""
        return (pitch + 1) % 12 in self.pitch_classes

    def grates(self, pitch: int) -> bool:
        """The tritone over the root of a plain triad with a perfect fifth (the leading tone
        over IV: a semitone under the fifth, which a major seventh chord's colour carries and
        a triad does not)."""
        return len(self.intervals) == 3 and 7 in self.intervals and (pitch - self.root) % 12 == 6

    def crosses(self, pitch: int, key: Key) -> bool:
        """A semitone from one of the chord's tones that `key` does not hold: the key's own
        note against the chord's altered one (F# minor's E held over V's E#)."""
        return any((c - pitch) % 12 in (1, 11) for c in self.pitch_classes
                   if not key.in_scale(c))  # fmt: skip

    @property
    def fifth(self) -> int:
        """Semitones from the root to its fifth: 6 in a diminished chord, whose perfect fifth
        lies outside the key."""
        return self.intervals[2] if len(self.intervals) > 2 else 7


def dominant_into(root: int, key: Key) -> str:
    """The numeral, in `key`, of the dominant seventh that resolves to a chord on the pitch
    class `root` (into a lift a whole step up that begins on its tonic, the VI7)."""
    above = (root + DEGREES["V"] - key.tonic) % 12
    roman = next((r for r, d in DEGREES.items() if d == above), None)
    if roman is None:
        roman = "b" + next(r for r, d in DEGREES.items() if d == above + 1)
    return f"{roman}7"


def chord(numeral: str, key: Key) -> Chord:
    """A roman numeral in `key`: case gives the quality (IV major, iv minor, vii° diminished),
    a 'b' lowers the root, and a suffix adds a seventh, a suspension or a ninth."""
    match = _ROMAN.match(numeral)
    if not match:
        raise ValueError(f"not a roman-numeral chord: {numeral!r}")
    flat, roman, diminished, extension = match.groups()
    root = (key.tonic + DEGREES[roman.upper()] - (1 if flat else 0)) % 12
    if diminished:
        intervals: tuple[int, ...] = (0, 3, 6)
    elif roman.isupper():
        intervals = (0, 4, 7)
    else:
        intervals = (0, 3, 7)
    if extension == "maj7":
        intervals = (*intervals, MAJOR_SEVENTH)
    elif extension == "7":
        intervals = (*intervals, 10)
    elif extension == "sus2":
        intervals = (0, 2, 7)
    elif extension == "sus4":
        intervals = (0, 5, 7)
    elif extension == "add9":
        intervals = (*intervals, 14)
    return Chord(numeral, root, intervals)


def voice(
    chord_: Chord,
    previous: tuple[int, ...] | None,
    low: int,
    high: int,
    room_to_drop: bool = False,
) -> tuple[int, ...]:
    """MIDI pitches for `chord_` within [low, high], moving as little as possible from
    `previous` (smooth voice leading); without one, centred in the range. With
    `room_to_drop`, a voicing whose second voice from the top can be dropped an octave and stay
    in the range is taken where the range holds one (a drop-2 voicing from a chord near the
    floor had sounded under the bass)."""
    classes = chord_.pitch_classes
    if MAJOR_SEVENTH in chord_.intervals:
        # Rootless, as a pianist voices a major seventh over a bass (C: E G B D): the root
        # over the seventh, in one part's chord or another's, grinds a semitone or a minor
        # ninth (ambient's strings had held B4 over its pads' A#3 for seconds).
        ninth = (chord_.root + 2) % 12
        classes = tuple(dict.fromkeys(ninth if c == chord_.root else c for c in classes))
    centre = (low + high) / 2
    candidates: list[tuple[int, ...]] = []
    for inversion in range(len(classes)):
        order = classes[inversion:] + classes[:inversion]
        for base in range(low, low + 12):
            if base % 12 != order[0]:
                continue
            pitches = [base]
            for pitch_class in order[1:]:
                step = (pitch_class - pitches[-1]) % 12 or 12
                pitches.append(pitches[-1] + step)
            while pitches[-1] <= high:
                candidates.append(tuple(pitches))
                pitches = [p + 12 for p in pitches]
    if not candidates and len(chord_.intervals) > 3:
        # A seventh or ninth that does not fit the register is left out, as a player would.
        triad = Chord(chord_.numeral, chord_.root, chord_.intervals[:3])
        return voice(triad, previous, low, high, room_to_drop)
    if not candidates:
        raise ValueError(f"range {low}..{high} too small for {chord_.numeral}")
    if room_to_drop:
        candidates = [c for c in candidates if c[-2] - 12 >= low] or candidates

    def cost(candidate: tuple[int, ...]) -> float:
        if previous is None:
            return abs(sum(candidate) / len(candidate) - centre)
        # Each new note to its nearest old one, and each old one to its nearest new one.
        return sum(min(abs(n - o) for o in previous) for n in candidate) + sum(
            min(abs(n - o) for n in candidate) for o in previous
        )

    return min(candidates, key=lambda c: (cost(c), c))


def open_voicing(chord_: Chord, low: int, high: int) -> tuple[int, ...]:
    """A strummed guitar's open voicing: root at the bottom (the lowest at or above `low`),
    then fifth, octave, third and fifth above, as six strings spread a chord over two
    octaves. Under `high`: a string that would sound over it plays its tone an octave down,
    or is left out where another string has it; where that leaves three strings, the fifth
    under the root is the fourth (G as D-G-B-D, a guitarist's shape on the top strings)."""
    root = low + (chord_.root - low) % 12
    third = chord_.intervals[1] if len(chord_.intervals) > 1 else 7
    fifth = chord_.fifth
    shape = (root, root + fifth, root + 12, root + 12 + third, root + 12 + fifth)
    strings: set[int] = set()
    for pitch in shape:
        while pitch > high and pitch - 12 >= low:
            pitch -= 12
        strings.add(pitch)
    if len(strings) < 4 and root + fifth - 12 >= low:
        strings.add(root + fifth - 12)
    return tuple(sorted(strings))


def pitches_in(classes: Collection[int], low: int, high: int) -> list[int]:
    """The pitches in [low, high] of one of `classes`, from the lowest."""
    return [p for p in range(low, high + 1) if p % 12 in classes]


def nearest(pitch: float, options: Iterable[int]) -> int:
    """The option nearest to `pitch` (the lower of two as near)."""
    return min(options, key=lambda p: (abs(p - pitch), p))


def nearest_in(pitch: float, classes: Collection[int], low: int, high: int) -> int:
    """The pitch in [low, high] of one of `classes` nearest to `pitch`."""
    return nearest(pitch, pitches_in(classes, low, high))


def scale_step(pitch: int, steps: int, key: Key) -> int:
    """Move `pitch` (snapped into the scale) by `steps` scale degrees."""
    pitches = sorted(p for p in range(pitch - 24, pitch + 25) if key.in_scale(p))
    index = min(range(len(pitches)), key=lambda i: abs(pitches[i] - pitch))
    return pitches[max(0, min(len(pitches) - 1, index + steps))]
