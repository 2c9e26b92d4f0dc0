"""Test media: every video is written here with PyAV, so tests know the truth about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import TaggerConfig
from services.media.synth import (
    SyntheticVideo,
    accuracy_shots,
    motion_shots,
    write_video,
)
from services.tagger.backends.vision import VisionTagger


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cuts_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "cuts.mp4", accuracy_shots())


@pytest.fixture(scope="session")
def motion_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "motion.mp4", motion_shots(), audio=False)


@pytest.fixture(scope="session")
def tagger() -> VisionTagger:
    return VisionTagger(TaggerConfig())
