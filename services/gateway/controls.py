"""The user's controls: checked before any work, then merged over the tagger's tags.

User values win: a user BPM replaces the tagger's (and is then exact), a user key replaces
the tagger's, user genres, moods and instruments come first (the first genre sets the style),
and negative tags remove whatever they name (a family's name, `guitar`, every instrument of
it), from the user's tags and the tagger's alike. The tagger's genres and instruments that the
generator does not play are left out (the user's were checked against it before any work).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Hashable
from typing import TypeVar

from services.domain import (
    GeneratorInfo,
    MusicBrief,
    MusicTags,
    TagOrigin,
    UserControls,
    VideoAnalysis,
)
from services.errors import InvalidInputError
from services.rules import BPM_LIMITS, SPEECH_MODES, STRUCTURES, check_candidates, speech_handling
from services.vocabulary import TagKind, Vocabulary

# A name as the vocabulary reads it: a tag, or a family of them.
Named = TypeVar("Named", bound=Hashable)


def validate_controls(controls: UserControls, vocabulary: Vocabulary) -> UserControls:
    """The controls, checked, with their tags and key as the vocabulary names them
    (`--genre Rock`, `hiphop`, `--instrument guitar` and `--key Em` are rock, hip-hop,
    acoustic-guitar and E minor)."""
    if controls.structure not in STRUCTURES:
        raise InvalidInputError(
            f"unknown structure {controls.structure!r}; valid: {', '.join(STRUCTURES)}",
            field="controls.structure",
        )
    if controls.structure == "reference" and not controls.reference_audio:
        raise InvalidInputError("structure 'reference' needs a reference audio file",
                                field="controls.reference_audio")  # fmt: skip
    if controls.speech not in SPEECH_MODES:
        raise InvalidInputError(
            f"unknown speech handling {controls.speech!r}; valid: {', '.join(SPEECH_MODES)}",
            field="controls.speech",
        )
    if controls.reference_audio and controls.structure != "reference":
        raise InvalidInputError("a reference audio file was given but structure is not "
                                "'reference'", field="controls.structure")  # fmt: skip
    check_candidates(controls.candidates, "controls.candidates")
    low, high = BPM_LIMITS
    if controls.bpm is not None and not low <= controls.bpm <= high:
        raise InvalidInputError(f"BPM {controls.bpm:.10g} is outside {low:g}..{high:g}",
                                field="controls.bpm")  # fmt: skip
    key = (_named("controls.key", [controls.key], vocabulary.canonical_key, "BAD_KEY")[0]
           if controls.key is not None else None)  # fmt: skip
    genres = _named("controls.genres", controls.genres,
                    lambda name: vocabulary.canonical("genre", name))  # fmt: skip
    moods = _named("controls.moods", controls.moods,
                   lambda name: vocabulary.canonical("mood", name))  # fmt: skip
    instruments = _named("controls.instruments", controls.instruments,
                         lambda name: vocabulary.canonical("instrument", name))  # fmt: skip
    families = _named("controls.negative", controls.negative, vocabulary.negated)
    negative = _once([tag for family in families for tag in family])
    conflicting = set(negative) & {*genres, *moods, *instruments}
    if conflicting:
        raise InvalidInputError(f"{', '.join(sorted(conflicting))} both asked for and negated",
                                field="controls.negative")  # fmt: skip
    return dataclasses.replace(controls, genres=genres, moods=moods, instruments=instruments,
                               negative=negative, key=key)  # fmt: skip


def _named(
    field: str, names: list[str], read: Callable[[str], Named], reason: str = "UNKNOWN_TAG"
) -> list[Named]:
    """What the vocabulary calls each name, each once; its ValueError as INVALID_ARGUMENT on
    `field`."""
    try:
        return _once([read(name) for name in names])
    except ValueError as error:
        raise InvalidInputError(str(error), field=field, error_reason=reason) from None


def _once(names: list[Named]) -> list[Named]:
    """In order, each name once ("hiphop" and "hip-hop" are one genre)."""
    return list(dict.fromkeys(names))


def _merge_kind(
    user: list[str], tagger: list[str], negative: set[str], offered: Collection[str]
) -> list[str]:
    merged = list(dict.fromkeys([*user, *tagger]))
    return [name for name in merged if name not in negative and name in offered]


def merge_tags(
    tags: MusicTags, controls: UserControls, vocabulary: Vocabulary, info: GeneratorInfo
) -> MusicTags:
    negative = set(controls.negative)
    genres = _merge_kind(controls.genres, tags.genres, negative, info.genres)
    moods = _merge_kind(controls.moods, tags.moods, negative, vocabulary.moods)
    instruments = _merge_kind(controls.instruments, tags.instruments, negative,
                              info.instruments)  # fmt: skip
    if not genres:
        # Every genre the tagger chose was negated or is not played: the best-ranked genre
        # left stands in.
        genres = [g for g in vocabulary.genres if g not in negative and g in info.genres][:1]
        if not genres:
            raise InvalidInputError(
                f"the negative tags leave no genre the {info.name} generator plays "
                f"({', '.join(info.genres)})",
                field="controls.negative",
            )
    if not moods:
        moods = [name for name in vocabulary.moods if name not in negative][:1]
    if not instruments and not any(name in info.instruments for name in tags.instruments):
        # The generator plays none of the tagger's instruments: its first one stands in.
        instruments = [name for name in info.instruments if name not in negative][:1]
    if not instruments:
        raise InvalidInputError("the negative tags leave no instrument to play",
                                field="controls.negative")  # fmt: skip
    # The user's moods move the tempo within its range, and the energy (vocabulary.yaml's
    # `lean`): asked for, they had changed no note.
    tempo_lean = vocabulary.lean(controls.moods, "tempo")
    if controls.bpm is not None:
        bpm = bpm_min = bpm_max = controls.bpm
    elif genres == tags.genres and not tempo_lean:
        bpm, bpm_min, bpm_max = tags.bpm, tags.bpm_min, tags.bpm_max
    else:
        # New genres bring their own tempo range; keep the tagger's place within it.
        old_low, old_high = tags.bpm_min, tags.bpm_max
        drive = (tags.bpm - old_low) / (old_high - old_low) if old_high > old_low else 0.5
        if genres != tags.genres:
            bpm_min, bpm_max = vocabulary.bpm_range(genres)
        else:
            bpm_min, bpm_max = old_low, old_high
        drive = min(max(drive + tempo_lean, 0.0), 1.0)
        bpm = round(bpm_min + drive * (bpm_max - bpm_min))
    user_tags: set[tuple[TagKind, str]] = (
        {("genre", g) for g in controls.genres}
        | {("mood", m) for m in controls.moods}
        | {("instrument", i) for i in controls.instruments}
    )
    kept = {*(("genre", g) for g in genres), *(("mood", m) for m in moods),
            *(("instrument", i) for i in instruments)}  # fmt: skip
    origins = [o for o in tags.origins if (o.kind, o.tag) in kept - user_tags]
    origins += [TagOrigin(kind, name, "user", 1.0) for kind, name in sorted(user_tags)]
    return MusicTags(
        genres=genres,
        moods=moods,
        instruments=instruments,
        bpm=bpm,
        bpm_min=bpm_min,
        bpm_max=bpm_max,
        key=controls.key or _mood_key(tags.key, controls.moods, vocabulary),
        energy=leaned(tags.energy, controls.moods, vocabulary),
        origins=origins,
    )


def _mood_key(key: str, moods: list[str], vocabulary: Vocabulary) -> str:
    """The tagger's key in the mode the user's moods vote for (a tie keeps it): its tonic at
    the same place in that mode's tonics, a place that says how warm the picture is. (The
    picture's darkness voted in the tagger's key; what the user asks for wins.)"""
    votes = vocabulary.mode_votes(moods)
    mode = max(votes, key=lambda m: votes[m])
    if not moods or list(votes.values()).count(votes[mode]) > 1:
        return key
    tonic, current = vocabulary.parse_key(key)
    if current == mode:
        return key
    tonics = {"major": vocabulary.major_tonics, "minor": vocabulary.minor_tonics}
    if tonic in tonics[current]:
        tonic = tonics[mode][tonics[current].index(tonic)]
    return f"{tonic} {mode}"


def leaned(energy: float, moods: list[str], vocabulary: Vocabulary) -> float:
    """An energy moved by the user's moods' lean, within 0..1."""
    return min(max(energy + vocabulary.lean(moods, "energy"), 0.0), 1.0)


def make_brief(
    analysis: VideoAnalysis,
    controls: UserControls,
    vocabulary: Vocabulary,
    info: GeneratorInfo,
    sample_rate: int,
    stems: bool = False,
    keep_original_audio: bool = False,
) -> MusicBrief:
    handling = speech_handling(controls.speech, bool(analysis.speech), keep_original_audio)
    return MusicBrief(
        tags=merge_tags(analysis.tags, controls, vocabulary, info),
        segments=[
            dataclasses.replace(s, energy=leaned(s.energy, controls.moods, vocabulary))
            for s in analysis.segments
        ],
        cuts=list(analysis.cuts),
        duration_s=analysis.duration_s,
        sample_rate=sample_rate,
        seed=controls.seed,
        bpm_is_fixed=controls.bpm is not None,
        key_is_fixed=controls.key is not None,
        negative=list(controls.negative),
        stems=stems,
        structure=controls.structure,
        reference_audio=controls.reference_audio,
        prompt=controls.prompt,
        speech=list(analysis.speech) if handling.arrange else [],
    )
