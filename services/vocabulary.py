"""The fixed tag vocabulary and the deterministic rules from picture features to tags.

The data lives in vocabulary.yaml beside this file; this module only reads it and applies it.
Nothing here is random or learned, so the same features always give the same tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from services.domain import Look

FEATURES = ("energy", "pace", "brightness", "saturation", "warmth", "contrast", "variation")
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
    # Genres: their BPM range and typical instruments. Moods: their mode.
    bpm: tuple[int, int] | None = None
    instruments: tuple[str, ...] = ()
    mode: str | None = None

    def score(self, features: Features) -> float:
        """bias + sum(weight * (feature - 0.5)): the documented rule."""
        total = self.rule.get("bias", 0.0)
        for feature in FEATURES:
            total += self.rule.get(feature, 0.0) * (getattr(features, feature) - 0.5)
        return total


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

    def of_kind(self, kind: TagKind) -> dict[str, TagDefinition]:
        return {"genre": self.genres, "mood": self.moods, "instrument": self.instruments}[kind]

    def ranked(self, kind: TagKind, features: Features) -> list[tuple[str, float]]:
        """Tags of one kind, best first, ties broken by name so the order never wobbles."""
        scores = [(name, tag.score(features)) for name, tag in self.of_kind(kind).items()]
        return sorted(scores, key=lambda item: (-item[1], item[0]))

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
        definitions[name] = TagDefinition(
            kind=kind,
            name=name,
            description=entry["description"],
            rule={k: float(v) for k, v in entry["rule"].items()},
            bpm=(int(entry["bpm"][0]), int(entry["bpm"][1])) if "bpm" in entry else None,
            instruments=tuple(entry.get("instruments", ())),
            mode=entry.get("mode"),
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
    )
    for genre in vocabulary.genres.values():
        missing = set(genre.instruments) - set(vocabulary.instruments)
        if missing:
            raise ValueError(
                f"vocabulary: genre {genre.name!r} lists unknown instruments {missing}"
            )
    return vocabulary
