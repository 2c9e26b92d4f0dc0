"""The model's words onto the fixed vocabulary, so free text never reaches a brief.

A phrase that is a vocabulary name (ignoring case, spaces and hyphens) maps to it; any other
is embedded with the sentence model (the packaged all-MiniLM-L6-v2) and maps to the closest
tag of its kind when the similarity reaches MIN_SIMILARITY; the rest stays unmapped, for the
description. The threshold was set on a sample of answers (see tests/test_vlm.py): synonyms
("joyful", "film score", "violin") score 0.6-1.0, words outside the vocabulary ("polka",
"jazz", "vocals") 0.35-0.58.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.tagger.text_hints import TextHintModel
from services.vocabulary import KIND_SECTIONS, TagKind, Vocabulary

MIN_SIMILARITY = 0.6


@dataclass(frozen=True)
class MappedTag:
    kind: TagKind
    tag: str
    # The model's own words.
    phrase: str
    similarity: float


@dataclass(frozen=True)
class Normalised:
    tags: list[MappedTag]
    # The model's words that match no tag.
    unmapped: list[str]


def _squashed(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def map_phrases(
    kind: TagKind, phrases: list[str], vocabulary: Vocabulary, text_model: TextHintModel
) -> dict[str, MappedTag | None]:
    """Each distinct phrase's tag of `kind`, or None when no tag is close enough; one pass
    of the text model for all of them."""
    names = {_squashed(name): name for name in getattr(vocabulary, KIND_SECTIONS[kind])}
    distinct = list(dict.fromkeys(phrases))
    others = [p for p in distinct if _squashed(p) not in names]
    closest = dict(zip(others, text_model.closest(others, kind), strict=True))
    mapping: dict[str, MappedTag | None] = {}
    for phrase in distinct:
        if phrase not in closest:
            mapping[phrase] = MappedTag(kind, names[_squashed(phrase)], phrase, 1.0)
        elif closest[phrase].similarity >= MIN_SIMILARITY:
            match = closest[phrase]
            mapping[phrase] = MappedTag(kind, match.tag, phrase, round(match.similarity, 3))
        else:
            mapping[phrase] = None
    return mapping


def collect(phrases: list[str], mapping: dict[str, MappedTag | None]) -> Normalised:
    """The tags of `phrases` under `mapping`, first mention first, each tag once, and the
    phrases that map to none."""
    tags: dict[str, MappedTag] = {}
    unmapped = []
    for phrase in phrases:
        mapped = mapping[phrase]
        if mapped is None:
            unmapped.append(phrase)
        elif mapped.tag not in tags:
            tags[mapped.tag] = mapped
    return Normalised(list(tags.values()), unmapped)


def normalise(
    kind: TagKind, phrases: list[str], vocabulary: Vocabulary, text_model: TextHintModel
) -> Normalised:
    """Each phrase's tag of `kind` (first mention first, each tag once) and what is left."""
    return collect(phrases, map_phrases(kind, phrases, vocabulary, text_model))
