"""What requests and briefs must satisfy, shared by the services: the gateway checks a
user's controls by them (and the tagger's timeline, as its brief carries it), the generator
checks a brief by them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.domain import GeneratorInfo, MusicBrief
from services.errors import InvalidInputError

# Tempo a user or a brief may ask for, beats per minute.
BPM_LIMITS = (30.0, 300.0)
# How the music is laid out (see UserControls.structure in the protos).
STRUCTURES = ("free", "composer", "reference")
# Pieces one request may have generated and ranked.
MAX_CANDIDATES = 4
# How the music makes room for speech (see UserControls.speech in the protos).
SPEECH_MODES = ("auto", "duck", "arrange", "off")


def check_candidates(count: int) -> None:
    if not 1 <= count <= MAX_CANDIDATES:
        raise InvalidInputError(f"candidates must be 1..{MAX_CANDIDATES}, not {count}")


def check_structure(structure: str, info: GeneratorInfo) -> None:
    """Refuse a structure the generator cannot follow."""
    if structure not in info.structures:
        raise InvalidInputError(
            f"the {info.name} generator cannot follow structure {structure!r}; it follows "
            f"{', '.join(info.structures)}"
        )


@dataclass(frozen=True)
class SpeechHandling:
    """What a speech mode does for a video: thin the arrangement under speech, and duck the
    music under speech (not under other loud sounds)."""

    arrange: bool
    duck: bool


def speech_handling(mode: str, has_speech: bool, keep_original_audio: bool) -> SpeechHandling:
    """ "auto" makes room (both ways) only where the voice will be heard with the music."""
    if not has_speech or mode == "off":
        return SpeechHandling(False, False)
    if mode == "auto":
        return SpeechHandling(keep_original_audio, keep_original_audio)
    return SpeechHandling(mode == "arrange", mode == "duck")


def speech_matters(mode: str, keep_original_audio: bool) -> bool:
    """Whether a video's speech, if it has any, would change the music or its mix."""
    handling = speech_handling(mode, True, keep_original_audio)
    return handling.arrange or handling.duck


# How far a segment's start may sit from where the one before ended (and the last's end from
# the duration): float seconds travel as doubles, but analyses round to microseconds.
TIMELINE_TOLERANCE_S = 1e-3


def check_timeline(brief: MusicBrief) -> None:
    """Segments tile [0, duration] in order; cuts fall inside it."""
    segments, end = brief.segments, brief.duration_s
    tolerance = TIMELINE_TOLERANCE_S
    for index, segment in enumerate(segments):
        field = f"brief.segments[{index}]"
        before = segments[index - 1].end_s if index else 0.0
        if not segment.start_s < segment.end_s:
            raise InvalidInputError(f"{field} ends ({segment.end_s:g} s) before it starts "
                                    f"({segment.start_s:g} s)", field=field)  # fmt: skip
        if abs(segment.start_s - before) > tolerance:
            raise InvalidInputError(
                f"{field} starts at {segment.start_s:g} s, not where the one before it ends "
                f"({before:g} s): segments tile the music from 0 to its end",
                field=field,
            )
    if segments and abs(segments[-1].end_s - end) > tolerance:
        field = f"brief.segments[{len(segments) - 1}]"
        raise InvalidInputError(f"the last segment ends at {segments[-1].end_s:g} s, not at the "
                                f"duration ({end:g} s)", field=field)  # fmt: skip
    for index, cut in enumerate(brief.cuts):
        if not 0.0 < cut.time_s < end:
            field = f"brief.cuts[{index}]"
            raise InvalidInputError(f"{field} at {cut.time_s:g} s is outside the music "
                                    f"(0..{end:g} s)", field=field)  # fmt: skip
    previous_end = 0.0
    for index, interval in enumerate(brief.speech):
        field = f"brief.speech[{index}]"
        if not previous_end <= interval.start_s < interval.end_s <= end + tolerance:
            raise InvalidInputError(
                f"{field} ({interval.start_s:g}-{interval.end_s:g} s) must start after the one "
                f"before ends ({previous_end:g} s), end after it starts and lie inside the "
                f"music (0..{end:g} s)", field=field)  # fmt: skip
        previous_end = interval.end_s
