"""Tiny random diffusers audio pipelines of every supported family, built from configs with no
download (tokenizers too), for tests and benchmarks. Each is saved with save_pretrained and
then loaded exactly as a real checkpoint would be.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.generator.backends.diffusion.tiny.ace_step import ace_step
from services.generator.backends.diffusion.tiny.audioldm2 import audioldm2
from services.generator.backends.diffusion.tiny.sonique import sonique
from services.generator.backends.diffusion.tiny.stable_audio import stable_audio
from services.generator.backends.diffusion.tiny.stable_audio_3 import stable_audio_3

# Pipeline family -> builder(folder) -> the saved pipeline's folder.
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "stable-audio": stable_audio,
    "stable-audio-3": stable_audio_3,
    "audioldm2": audioldm2,
    "ace-step": ace_step,
    # SONIQUE's stable-audio-tools model: in its own environment only.
    "sonique": sonique,
}

__all__ = ["BUILDERS", "ace_step", "audioldm2", "sonique", "stable_audio", "stable_audio_3"]
