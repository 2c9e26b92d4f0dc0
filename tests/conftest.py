"""Test media: every video is written here with PyAV, so tests know the truth about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import ComposerConfig, TaggerConfig
from services.domain import VideoAnalysis
from services.generator.backends.composer.backend import ComposerGenerator
from services.media.synth import (
    SyntheticVideo,
    accuracy_shots,
    beat_shots,
    motion_shots,
    write_video,
)
from services.tagger.backend import AnalysisRequest
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


@pytest.fixture(scope="session")
def beat_video(media_dir: Path) -> SyntheticVideo:
    return write_video(media_dir / "beat.mp4", beat_shots(), audio=False)


@pytest.fixture(scope="session")
def generator() -> ComposerGenerator:
    return ComposerGenerator(ComposerConfig())


@pytest.fixture(scope="session")
def beat_analysis(tagger: VisionTagger, beat_video: SyntheticVideo) -> VideoAnalysis:
    return tagger.analyze(AnalysisRequest(beat_video.path))
