"""The tagger's backend interface: what every video-understanding backend provides.

Plain domain types only; no gRPC, no Ray. Backends are chosen by `TaggerConfig.backend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.config import TaggerConfig
from services.domain import VideoAnalysis
from services.progress import ProgressCallback
from services.tagger.vocabulary import Vocabulary


@dataclass(frozen=True)
class AnalysisRequest:
    video_path: Path
    # Free-text hints from the user, mapped onto the vocabulary ("cosy autumn baking vlog").
    prompt: str = ""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    version: str
    vocabulary: Vocabulary


class TaggerBackend(Protocol):
    def describe(self) -> BackendInfo: ...

    def analyze(
        self, request: AnalysisRequest, progress: ProgressCallback | None = None
    ) -> VideoAnalysis: ...


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
