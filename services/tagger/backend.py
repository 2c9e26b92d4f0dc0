"""The tagger's backend interface: what every video-understanding backend provides.

Plain domain types only; no gRPC, no Ray. Backends are chosen by `TaggerConfig.backend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.domain import VideoAnalysis
from services.progress import ProgressCallback
from services.vocabulary import Vocabulary


@dataclass(frozen=True)
class AnalysisRequest:
    video_path: Path
    # Free-text hints from the user, mapped onto the vocabulary ("cosy autumn baking vlog").
    prompt: str = ""
    # Whether to find the speech in the video's sound (a caller whose music replaces that
    # sound has no use for it).
    listen: bool = True


@dataclass(frozen=True)
class BackendInfo:
    name: str
    version: str
    vocabulary: Vocabulary


class TaggerBackend(Protocol):
    def describe(self) -> BackendInfo: ...

    def warm_up(self) -> None:
        """Load now what a first request would load (a server calls it before it reports
        SERVING)."""
        ...

    def analyze(
        self, request: AnalysisRequest, progress: ProgressCallback | None = None
    ) -> VideoAnalysis: ...
