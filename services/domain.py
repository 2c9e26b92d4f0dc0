"""Plain domain types that cross service boundaries (tagger -> gateway -> generator).

These are what backends take and return; servicers convert them to and from protobuf at the
edges. Times are seconds from the start of the video, levels are 0..1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TagSource = Literal["picture", "prompt", "both", "user"]


@dataclass(frozen=True)
class Look:
    """How the picture looks, each value 0..1."""

    brightness: float
    saturation: float
    # 0.5 is neutral; above leans red/yellow, below leans blue.
    warmth: float
    contrast: float


@dataclass(frozen=True)
class Cut:
    """A shot boundary."""

    time_s: float
    # "hard" (an instant change) or "fade" (through black or a dissolve).
    kind: Literal["hard", "fade"]
    # How different the shots either side are, 0..1: the composer puts the strongest on bars.
    strength: float


@dataclass(frozen=True)
class MotionCurve:
    """Motion/energy sampled at a fixed rate: values[i] describes time i / hz."""

    hz: float
    values: list[float]


@dataclass(frozen=True)
class Segment:
    """A stretch of video between two cuts (very short shots merged into neighbours)."""

    start_s: float
    end_s: float
    # Mean motion energy over the segment, 0..1.
    energy: float
    look: Look
    moods: list[str]
    # A small JPEG from the middle of the segment, for pictures and VLM prompts.
    thumbnail_jpeg: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class TagOrigin:
    """Where one chosen tag came from, and how strongly it was indicated."""

    kind: Literal["genre", "mood", "instrument"]
    tag: str
    source: TagSource
    score: float


@dataclass(frozen=True)
class MusicTags:
    """The music that fits, in the fixed vocabulary."""

    genres: list[str]
    moods: list[str]
    instruments: list[str]
    bpm: int
    bpm_min: int
    bpm_max: int
    # A key hint such as "D minor".
    key: str
    energy: float
    origins: list[TagOrigin] = field(default_factory=list)


@dataclass(frozen=True)
class VideoAnalysis:
    """Everything the tagger knows about a video."""

    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    has_audio: bool
    cuts: list[Cut]
    motion: MotionCurve
    look: Look
    segments: list[Segment]
    tags: MusicTags
    description: str
    backend: str
    # Problems that did not stop the analysis (for example a truncated file).
    warnings: list[str] = field(default_factory=list)

    @property
    def cuts_s(self) -> list[float]:
        return [cut.time_s for cut in self.cuts]

    def to_json_dict(self) -> dict[str, Any]:
        """The analysis as JSON-ready data (thumbnails left out)."""
        data = asdict(self)
        data["cuts_s"] = self.cuts_s
        for segment in data["segments"]:
            segment.pop("thumbnail_jpeg")
        return data
