"""From features (and prompt matches) to music tags, key, tempo and a description.

Shared by every tagger backend so that tags always mean the same thing. The weights are in
vocabulary.yaml; the procedure is here:
1. Each tag kind is ranked by its rule score on the picture features.
2. Tags the prompt asks for come first (source "prompt", or "both" when the picture agrees);
   the picture's best positive-scoring tags fill the remaining places.
3. Instruments get a bonus when a chosen genre lists them.
4. BPM range: the chosen genres' ranges intersected (the first genre's alone if the
   intersection is narrower than 10 BPM); the preferred BPM sits in that range by energy and
   pace (`tempo` weights in the vocabulary).
5. Mode: a vote of the chosen moods (first counts 3, second 2, third 1) and of the picture
   (dark footage votes minor); a tie goes to major on bright pictures. Tonic: by warmth,
   from the mode's tonic list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.domain import MusicTags, TagOrigin
from services.tagger.text_hints import PromptMatch
from services.vocabulary import Features, TagKind, Vocabulary


def _choose(
    kind: TagKind,
    ranked: list[tuple[str, float]],
    count: int,
    prompt: Sequence[PromptMatch],
    semantic: Sequence[PromptMatch],
) -> list[TagOrigin]:
    """The prompt's tags first, then a vision-language model's or, when it named none of this
    kind, the picture's best."""
    picture = [(name, score) for name, score in ranked if score > 0.0][:count]
    if not picture:
        picture = ranked[:1]
    picture_names = {name for name, _ in picture}
    chosen = [
        TagOrigin(
            kind, m.tag, "both" if m.tag in picture_names else "prompt", round(m.similarity, 3)
        )
        for m in prompt
        if m.kind == kind
    ]
    taken = {origin.tag for origin in chosen}
    from_model = [m for m in semantic if m.kind == kind]
    fill = (
        [(m.tag, m.similarity, "vlm") for m in from_model]
        if from_model
        else [(name, score, "picture") for name, score in picture]
    )
    for name, score, source in fill:
        if len(chosen) >= count:
            break
        if name not in taken:
            chosen.append(TagOrigin(kind, name, source, round(score, 3)))  # type: ignore[arg-type]
            taken.add(name)
    return chosen


def segment_moods(vocabulary: Vocabulary, features: Features) -> list[str]:
    ranked = vocabulary.ranked("mood", features)
    count = int(vocabulary.selection["segment_moods"])
    moods = [name for name, score in ranked if score > 0.0][:count]
    return moods or [ranked[0][0]]


def choose_tags(
    vocabulary: Vocabulary,
    features: Features,
    prompt: Sequence[PromptMatch] = (),
    semantic: Sequence[PromptMatch] = (),
) -> MusicTags:
    """`semantic`: tags a vision-language model named, in its order (they replace the
    picture's tags of their kind)."""
    selection = vocabulary.selection
    genres = _choose(
        "genre", vocabulary.ranked("genre", features), int(selection["genres"]), prompt, semantic
    )
    moods = _choose(
        "mood", vocabulary.ranked("mood", features), int(selection["moods"]), prompt, semantic
    )
    genre_names = [origin.tag for origin in genres]
    bonus = selection["genre_instrument_bonus"]
    instrument_scores = []
    for name, score in vocabulary.ranked("instrument", features):
        if any(name in vocabulary.genres[g].instruments for g in genre_names):
            score += bonus
        instrument_scores.append((name, score))
    instrument_scores.sort(key=lambda item: (-item[1], item[0]))
    instruments = _choose(
        "instrument", instrument_scores, int(selection["instruments"]), prompt, semantic
    )

    bpm_min, bpm_max = vocabulary.bpm_range(genre_names)
    drive = float(
        np.clip(
            vocabulary.tempo_energy_weight * features.energy
            + vocabulary.tempo_pace_weight * features.pace,
            0.0,
            1.0,
        )
    )
    bpm = round(bpm_min + (bpm_max - bpm_min) * drive)
    mood_names = [origin.tag for origin in moods]
    return MusicTags(
        genres=genre_names,
        moods=mood_names,
        instruments=[origin.tag for origin in instruments],
        bpm=bpm,
        bpm_min=bpm_min,
        bpm_max=bpm_max,
        key=_key(vocabulary, mood_names, features),
        energy=round(float(np.clip(0.7 * features.energy + 0.3 * features.pace, 0.0, 1.0)), 3),
        origins=[*genres, *moods, *instruments],
    )


def _key(vocabulary: Vocabulary, moods: list[str], features: Features) -> str:
    votes = vocabulary.mode_votes(moods)
    if features.brightness < vocabulary.dark_below:
        votes["minor"] += vocabulary.dark_vote
    if votes["major"] == votes["minor"]:
        mode = "major" if features.brightness >= 0.5 else "minor"
    else:
        mode = max(votes, key=lambda m: votes[m])
    tonics = vocabulary.major_tonics if mode == "major" else vocabulary.minor_tonics
    index = round(float(np.clip(features.warmth, 0.0, 1.0)) * (len(tonics) - 1))
    return f"{tonics[index]} {mode}"


def describe_music(tags: MusicTags, energy_arc: tuple[float, float]) -> str:
    """One sentence saying what music fits, from the tags and how energy moves."""
    start, end = energy_arc
    if end - start > 0.15:
        arc = "building from a quiet start to a stronger finish"
    elif start - end > 0.15:
        arc = "settling down towards the end"
    else:
        level = "low" if tags.energy < 0.33 else "high" if tags.energy > 0.66 else "moderate"
        arc = f"keeping a steady, {level} energy"
    moods = " and ".join(tags.moods[:2])
    instruments = tags.instruments[:3]
    listed = (
        ", ".join(instruments[:-1]) + (" and " if len(instruments) > 1 else "") + instruments[-1]
    )
    article = "An" if moods[:1] in "aeiou" else "A"
    return (
        f"{article} {moods} {tags.genres[0]} piece in {tags.key} at about {tags.bpm} BPM "
        f"for {listed}, {arc}."
    )
