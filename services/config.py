"""Typed configuration: every knob has one home here.

Values come from a YAML file (`--config FILE` or the BGM_CONFIG environment variable), then
from command-line flags, which win. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.errors import ConfigError
from services.media.video import VideoLimits


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VisionConfig(StrictModel):
    """Knobs of the tagger's `vision` backend."""

    # Longer side of the frames the analysis looks at, in pixels.
    analysis_width: int = Field(96, ge=32, le=640)
    # Sample rate of the motion curve.
    motion_hz: float = Field(10.0, gt=0.0, le=60.0)
    # Pan speed, in frame widths per second, at which motion energy reaches 1 - 1/e (0.63).
    motion_scale: float = Field(0.35, gt=0.0)
    # Shots shorter than this are merged into a neighbour when forming segments.
    min_segment_s: float = Field(1.5, ge=0.0)
    # PySceneDetect AdaptiveDetector: ratio of a frame's change to its neighbours' for a cut
    # (2.5 rather than its 3.0: cuts between similar shots during fast pans still count),
    # and the least absolute change that may count.
    cut_adaptive_threshold: float = Field(2.5, gt=0.0)
    cut_min_content: float = Field(15.0, ge=0.0)
    # No two cuts closer than this.
    min_shot_s: float = Field(0.4, ge=0.0)
    # PySceneDetect ThresholdDetector: mean 8-bit level below which a frame counts as black.
    fade_black_level: float = Field(12.0, ge=0.0, le=255.0)
    # One thumbnail kept per this many seconds (JPEG, small) for per-segment pictures.
    thumbnail_every_s: float = Field(2.0, gt=0.0)


class TaggerConfig(StrictModel):
    backend: str = "vision"
    limits: VideoLimits = VideoLimits()
    vision: VisionConfig = VisionConfig()
    # Folder of the sentence-embedding model for text hints; None = the packaged MiniLM.
    text_model_path: Path | None = None


class ComposerConfig(StrictModel):
    """Knobs of the generator's `composer` backend."""

    # A General MIDI SoundFont (.sf2/.sf3); None = TimGM6mb.sf2 from pretty_midi.
    soundfont_path: Path | None = None
    max_duration_s: float = Field(7200.0, gt=0.0)


class GeneratorConfig(StrictModel):
    backend: str = "composer"
    composer: ComposerConfig = ComposerConfig()


class BgmConfig(StrictModel):
    tagger: TaggerConfig = TaggerConfig()
    generator: GeneratorConfig = GeneratorConfig()


def load_config(path: str | Path | None = None) -> BgmConfig:
    """Read the config file named by `path` or BGM_CONFIG; defaults when neither is set."""
    path = path or os.environ.get("BGM_CONFIG")
    if not path:
        return BgmConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return BgmConfig.model_validate(data)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    except ValidationError as error:
        raise ConfigError(f"config file {path}: {error}") from None
