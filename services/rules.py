"""What requests and briefs must satisfy, shared by the services: the gateway checks a
user's controls by them, the generator checks a brief by them.
"""

from __future__ import annotations

from services.domain import GeneratorInfo
from services.errors import InvalidInputError

# Tempo a user or a brief may ask for, beats per minute.
BPM_LIMITS = (30.0, 300.0)
# How the music is laid out (see UserControls.structure in the protos).
STRUCTURES = ("free", "composer", "reference")
# Pieces one request may have generated and ranked.
MAX_CANDIDATES = 4


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
