"""The tagger's backends, by the name the config gives (`tagger.backend`)."""

from __future__ import annotations

from services.config import TaggerConfig
from services.tagger.backend import TaggerBackend


def create_tagger_backend(config: TaggerConfig) -> TaggerBackend:
    """The backend named in the config, ready to analyse."""
    if config.backend == "vision":
        from services.tagger.backends.vision import VisionTagger

        return VisionTagger(config)
    if config.backend == "vlm":
        from services.tagger.backends.vlm.backend import VlmTagger
        from services.tagger.backends.vlm.models import LocalVlm

        return VlmTagger(config, LocalVlm(config.vlm), name="vlm")
    if config.backend == "openai":
        from services.tagger.backends.vlm.backend import VlmTagger
        from services.tagger.backends.vlm.models import OpenAiVlm

        return VlmTagger(config, OpenAiVlm(config.openai, config.vlm), name="openai")
    raise ValueError(f"unknown tagger backend {config.backend!r}; available: vision, vlm, openai")
