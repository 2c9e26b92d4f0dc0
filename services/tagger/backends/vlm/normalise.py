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
from services.tagger.vocabulary import KIND_SECTIONS, TagKind, Vocabulary

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


def normalise(
    kind: TagKind, phrases: list[str], vocabulary: Vocabulary, text_model: TextHintModel
) -> Normalised:
    """Each phrase's tag of `kind` (first mention first, each tag once) and what is left."""
    names = {_squashed(name): name for name in getattr(vocabulary, KIND_SECTIONS[kind])}
    exact = {p: names[_squashed(p)] for p in phrases if _squashed(p) in names}
    others = [p for p in phrases if p not in exact]
    closest = dict(zip(others, text_model.closest(others, kind), strict=True))
    tags: dict[str, MappedTag] = {}
    unmapped = []
    for phrase in phrases:
        if phrase in exact:
            tag, similarity = exact[phrase], 1.0
        elif closest[phrase].similarity >= MIN_SIMILARITY:
            tag, similarity = closest[phrase].tag, closest[phrase].similarity
        else:
            unmapped.append(phrase)
            continue
        if tag not in tags:
            tags[tag] = MappedTag(kind, tag, phrase, round(similarity, 3))
    return Normalised(list(tags.values()), unmapped)
