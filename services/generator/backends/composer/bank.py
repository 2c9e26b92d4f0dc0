"""Which General MIDI sound bank the composer renders with, and with which synthesizer.

A configured SoundFont always wins. Otherwise the first full bank found where the Debian
packages that ./dev.sh and the Dockerfiles install put it; with none, TimGM6mb (6 MB, inside
pretty_midi), announced once in a warning and in Generator.Describe with how to get the better
one. FluidSynth (libfluidsynth, also from Debian) plays a bank once loaded for every part; where
it is missing, tinysoundfont (from PyPI) plays it, loading the bank once per part.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Full General MIDI banks from Debian, best first (docs/composer.md, "How the composer sounds"):
# MuseScore General's uncompressed SoundFont sounds best of them and loads in half a second;
# its .sf3 decodes its samples at every load (6.5 s); FluidR3 is the lighter fallback.
FULL_BANKS = (
    Path("/usr/share/sounds/sf2/MuseScore_General_Full.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
)
ADVICE = (
    "install Debian's musescore-general-soundfont-lossless and libfluidsynth3 "
    "(./dev.sh setup does), or set composer.soundfont_path to a General MIDI SoundFont"
)


@dataclass(frozen=True)
class SoundBank:
    path: Path
    # A full General MIDI bank (configured or found), not the TimGM6mb fallback.
    full: bool
    # "fluidsynth" or "tinysoundfont".
    synthesizer: str

    @property
    def description(self) -> str:
        return f"{self.path.name} with {self.synthesizer}"

    @property
    def advice(self) -> str:
        """How to get better sound, or "" when nothing is missing."""
        if self.full and self.synthesizer == "fluidsynth":
            return ""
        if self.full:
            return (
                "libfluidsynth is missing, so every part loads the bank again: install "
                "Debian's libfluidsynth3"
            )
        return f"rendering with TimGM6mb, a 6 MB fallback bank: {ADVICE}"


def timgm6mb() -> Path:
    """TimGM6mb.sf2, the General MIDI SoundFont that ships inside pretty_midi."""
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


def fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401  (raises ImportError without libfluidsynth)
    except ImportError:
        return False
    return True


def find_bank(configured: Path | None) -> SoundBank:
    synthesizer = "fluidsynth" if fluidsynth_available() else "tinysoundfont"
    if configured is not None:
        bank = SoundBank(configured, True, synthesizer)
    else:
        found = next((path for path in FULL_BANKS if path.is_file()), None)
        bank = SoundBank(found or timgm6mb(), found is not None, synthesizer)
    if bank.advice:
        _warn_once(bank.advice)
    return bank


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("composer: %s", message)
