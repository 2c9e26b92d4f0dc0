"""What requests and briefs must satisfy, shared by the services: the gateway checks a
user's controls by them, the generator checks a brief by them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.domain import GeneratorInfo
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
