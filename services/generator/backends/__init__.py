"""The generator's backends, by the name the config gives (`generator.backend`)."""

from __future__ import annotations

from services.config import GeneratorConfig
from services.generator.backend import GeneratorBackend

# What each backend makes (its description's outputs and sample rates), known before its
# model loads: `bgm score` refuses an output or a rate it cannot make before loading one,
# which takes seconds to minutes (it had loaded every model first).
OUTPUTS = {
    "composer": ("audio", "midi", "stems", "plan"),
    "diffusion": ("audio", "plan"),
    "symbolic-diffusion": ("audio", "midi", "stems", "plan"),
}
# (The diffusion backend resamples its model's audio to either.)
SAMPLE_RATES = (44100, 48000)


def create_generator_backend(config: GeneratorConfig) -> GeneratorBackend:
    """The backend named in the config, ready to generate."""
    if config.backend == "composer":
        from services.generator.backends.composer.backend import ComposerGenerator

        return ComposerGenerator(config.composer)
    if config.backend == "diffusion":
        from services.generator.backends.diffusion.backend import DiffusionGenerator

        return DiffusionGenerator(config.diffusion, config.composer)
    if config.backend == "symbolic-diffusion":
        from services.generator.backends.symbolic_diffusion.backend import (
            SymbolicDiffusionGenerator,
        )

        return SymbolicDiffusionGenerator(config.symbolic_diffusion, config.composer)
    raise ValueError(
        f"unknown generator backend {config.backend!r}; available: composer, diffusion, "
        "symbolic-diffusion"
    )
