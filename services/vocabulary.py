"""The fixed tag vocabulary and the deterministic rules from picture features to tags.

The data lives in vocabulary.yaml beside this file; this module only reads it and applies it.
Nothing here is random or learned, so the same features always give the same tags.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from services.domain import Look

FEATURES = ("energy", "pace", "brightness", "saturation", "warmth", "contrast", "variation")
LEANS = ("tempo", "energy")
TagKind = Literal["genre", "mood", "instrument"]
KIND_SECTIONS: dict[TagKind, str] = {
    "genre": "genres",
    "mood": "moods",
    "instrument": "instruments",
}

VOCABULARY_PATH = Path(__file__).with_name("vocabulary.yaml")


@dataclass(frozen=True)
class Features:
    """Picture features, each 0..1 (definitions in vocabulary.yaml)."""

    energy: float
    pace: float
    brightness: float
    saturation: float
    warmth: float
    contrast: float
    variation: float

    @classmethod
    def from_look(cls, look: Look, energy: float, pace: float, variation: float) -> Features:
        return cls(
            energy=energy,
            pace=pace,
            brightness=look.brightness,
            saturation=look.saturation,
            warmth=look.warmth,
            contrast=look.contrast,
            variation=variation,
        )


@dataclass(frozen=True)
class TagDefinition:
    kind: TagKind
    name: str
    description: str
    rule: dict[str, float]
    # Genres: their BPM range and typical instruments. Moods: their mode, and how one a user
    # asks for moves the tempo and the energy (LEANS; vocabulary.yaml says how).
    bpm: tuple[int, int] | None = None
    instruments: tuple[str, ...] = ()
    mode: str | None = None
    lean: dict[str, float] = field(default_factory=dict)
    # Other names a user may type for it.
    synonyms: tuple[str, ...] = ()

    def score(self, features: Features) -> float:
        """bias + sum(weight * (feature - 0.5)): the documented rule."""
        total = self.rule.get("bias", 0.0)
        for feature in FEATURES:
            total += self.rule.get(feature, 0.0) * (getattr(features, feature) - 0.5)
        return total


class UnknownTagError(ValueError):
    """A name that is no tag of its kind, with the nearest tags it might mean."""

    def __init__(self, kind: str, name: str, suggestions: list[str], valid: list[str]):
        self.kind, self.name, self.suggestions = kind, name, suggestions
        hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown {kind} {name}{hint} (valid {kind}s: {', '.join(valid)})")


def folded(text: str) -> str:
    """A name as it is compared: lower case, spaces, underscores and hyphens alike."""
    return re.sub(r"[\s_-]+", "-", text.strip().lower())


# "E minor", "e min", "Em", "F#m", "Bb major", "Bb", "C# MINOR": a tonic, then a mode (m/min/
# minor or M/maj/major; none = major).
KEY_PATTERN = re.compile(
    r"^\s*(?P<letter>[A-Ga-g])\s*(?P<accidental>[#b\u266f\u266d]?)\s*-?\s*"
    r"(?P<mode>major|minor|maj|min|m|M)?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Vocabulary:
    genres: dict[str, TagDefinition]
    moods: dict[str, TagDefinition]
    instruments: dict[str, TagDefinition]
    selection: dict[str, float]
    major_tonics: tuple[str, ...]
    minor_tonics: tuple[str, ...]
    tonics: tuple[str, ...]
    modes: tuple[str, ...]
    dark_below: float
    dark_vote: int
    tempo_energy_weight: float
    tempo_pace_weight: float
    # Folded names that, as a negative tag, take out each of their instruments.
    negative_families: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per kind: every folded name and synonym -> its tag.
    names: dict[TagKind, dict[str, str]] = field(default_factory=dict)

    def of_kind(self, kind: TagKind) -> dict[str, TagDefinition]:
        return {"genre": self.genres, "mood": self.moods, "instrument": self.instruments}[kind]

    def ranked(self, kind: TagKind, features: Features) -> list[tuple[str, float]]:
        """Tags of one kind, best first, ties broken by name so the order never wobbles."""
        scores = [(name, tag.score(features)) for name, tag in self.of_kind(kind).items()]
        return sorted(scores, key=lambda item: (-item[1], item[0]))

    def canonical(self, kind: TagKind, name: str) -> str:
        """The tag a user's name means ("Rock", "hiphop", "guitar"); UnknownTagError, with
        the nearest names, when it means none."""
        known = self.names[kind]
        tag = known.get(folded(name))
        if tag is not None:
            return tag
        near = difflib.get_close_matches(folded(name), list(known), n=3, cutoff=0.75)
        suggestions = list(dict.fromkeys(known[n] for n in near))
        raise UnknownTagError(kind, name, suggestions, list(self.of_kind(kind)))

    def canonical_tag(self, name: str) -> str:
        """The genre, mood or instrument a name means, whichever kind it is (negative tags
        name any)."""
        for kind in KIND_SECTIONS:
            tag = self.names[kind].get(folded(name))
            if tag is not None:
                return tag
        every = {n: t for kind in KIND_SECTIONS for n, t in self.names[kind].items()}
        near = difflib.get_close_matches(folded(name), list(every), n=3, cutoff=0.75)
        suggestions = list(dict.fromkeys(every[n] for n in near))
        valid = [tag for kind in KIND_SECTIONS for tag in self.of_kind(kind)]
        raise UnknownTagError("negative tag", name, suggestions, valid)

    def negated(self, name: str) -> tuple[str, ...]:
        """The tags a negative name takes out: each instrument of a family it names
        (`negative_families`: "guitar"), else the one tag it means (canonical_tag)."""
        family = self.negative_families.get(folded(name))
        return family if family is not None else (self.canonical_tag(name),)

    def canonical_key(self, text: str) -> str:
        """A key as the vocabulary writes it ("E minor") from the ways people write keys
        ("e minor", "Em", "F#m", "Bb major", "Bb"); ValueError for anything else."""
        match = KEY_PATTERN.match(text)
        if match is None:
            raise ValueError(
                f"bad key {text!r}: expected a tonic and a mode, such as 'E minor', 'Em', "
                "'F#m', 'Bb major' or 'Bb'"
            )
        accidental = {"\u266f": "#", "\u266d": "b", "B": "b"}.get(
            match["accidental"], match["accidental"]
        )
        tonic = match["letter"].upper() + accidental
        mode_word = match["mode"] or "major"
        minor = mode_word == "m" or mode_word.lower() in ("min", "minor")
        key = f"{tonic} {'minor' if minor else 'major'}"
        self.parse_key(key)
        return key

    def bpm_range(self, genres: list[str]) -> tuple[int, int]:
        """The genres' BPM ranges intersected; the first genre's alone if that is too
        narrow."""
        ranges = [self.genres[g].bpm for g in genres if self.genres[g].bpm]
        first = ranges[0]
        assert first is not None
        low = max(r[0] for r in ranges if r)
        high = min(r[1] for r in ranges if r)
        if high - low < 10:
            return first
        return low, high

    def mode_votes(self, moods: Sequence[str]) -> dict[str, int]:
        """Each mode's votes from the first three moods: 3, 2 and 1 points for its mode."""
        votes = dict.fromkeys(self.modes, 0)
        for weight, mood in zip((3, 2, 1), moods, strict=False):
            votes[self.moods[mood].mode or "major"] += weight
        return votes

    def lean(self, moods: Sequence[str], what: str) -> float:
        """How far the moods move `what` (tempo or energy): their leans' mean, 0 for none."""
        if not moods:
            return 0.0
        return sum(self.moods[mood].lean.get(what, 0.0) for mood in moods) / len(moods)

    def parse_key(self, key: str) -> tuple[str, str]:
        """Split "D minor" into ("D", "minor"), refusing anything outside the vocabulary."""
        parts = key.split()
        if len(parts) != 2 or parts[0] not in self.tonics or parts[1] not in self.modes:
            raise ValueError(
                f"bad key {key!r}: expected '<tonic> <mode>' with tonic one of "
                f"{', '.join(self.tonics)} and mode one of {', '.join(self.modes)}"
            )
        return parts[0], parts[1]


def _definitions(kind: TagKind, section: dict[str, Any]) -> dict[str, TagDefinition]:
    definitions = {}
    for name, entry in section.items():
        unknown = set(entry["rule"]) - set(FEATURES) - {"bias"}
        if unknown:
            raise ValueError(f"vocabulary: {kind} {name!r} rule uses unknown features {unknown}")
        lean = entry.get("lean", {})
        if set(lean) - set(LEANS):
            raise ValueError(f"vocabulary: {kind} {name!r} leans on {set(lean) - set(LEANS)}; "
                             f"a lean moves {' or '.join(LEANS)}")  # fmt: skip
        definitions[name] = TagDefinition(
            kind=kind,
            name=name,
            description=entry["description"],
            rule={k: float(v) for k, v in entry["rule"].items()},
            bpm=(int(entry["bpm"][0]), int(entry["bpm"][1])) if "bpm" in entry else None,
            instruments=tuple(entry.get("instruments", ())),
            mode=entry.get("mode"),
            lean={k: float(v) for k, v in lean.items()},
            synonyms=tuple(entry.get("synonyms", ())),
        )
    return definitions


@cache
def load_vocabulary(path: Path = VOCABULARY_PATH) -> Vocabulary:
    data = yaml.safe_load(path.read_text())
    vocabulary = Vocabulary(
        genres=_definitions("genre", data["genres"]),
        moods=_definitions("mood", data["moods"]),
        instruments=_definitions("instrument", data["instruments"]),
        selection={k: float(v) for k, v in data["selection"].items()},
        major_tonics=tuple(data["keys"]["major_tonics"]),
        minor_tonics=tuple(data["keys"]["minor_tonics"]),
        tonics=tuple(data["keys"]["tonics"]),
        modes=tuple(data["keys"]["modes"]),
        dark_below=float(data["keys"]["dark_below"]),
        dark_vote=int(data["keys"]["dark_vote"]),
        tempo_energy_weight=float(data["tempo"]["energy_weight"]),
        tempo_pace_weight=float(data["tempo"]["pace_weight"]),
        negative_families={folded(name): tuple(tags)
                           for name, tags in data.get("negative_families", {}).items()},
    )  # fmt: skip
    for kind in KIND_SECTIONS:
        names: dict[str, str] = {}
        for tag in vocabulary.of_kind(kind).values():
            for name in (tag.name, *tag.synonyms):
                other = names.setdefault(folded(name), tag.name)
                if other != tag.name:
                    raise ValueError(f"vocabulary: {kind} name {name!r} means {other} and "
                                     f"{tag.name}")  # fmt: skip
        vocabulary.names[kind] = names
    for name, tags in vocabulary.negative_families.items():
        missing = set(tags) - set(vocabulary.instruments)
        if missing:
            raise ValueError(f"vocabulary: negative family {name!r} lists unknown instruments "
                             f"{missing}")  # fmt: skip
    for genre in vocabulary.genres.values():
        missing = set(genre.instruments) - set(vocabulary.instruments)
        if missing:
            raise ValueError(
                f"vocabulary: genre {genre.name!r} lists unknown instruments {missing}"
            )
    return vocabulary
