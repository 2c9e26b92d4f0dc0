"""Helpers shared by the tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.domain import MusicBrief, VideoAnalysis
from services.tagger.vocabulary import load_vocabulary


def brief_for(analysis: VideoAnalysis, genre: str, **changes: Any) -> MusicBrief:
    """A brief for `genre` with its typical instruments (plus drums, but for ambient), in the
    middle of its tempo range, on the analysed video's timeline."""
    vocabulary = load_vocabulary()
    low, high = vocabulary.genres[genre].bpm or (80, 120)
    instruments = list(vocabulary.genres[genre].instruments)
    if "drums" not in instruments and genre != "ambient":
        instruments.append("drums")
    tags = dataclasses.replace(
        analysis.tags,
        genres=[genre],
        instruments=instruments,
        bpm=(low + high) / 2,
        bpm_min=low,
        bpm_max=high,
    )
    fields: dict[str, Any] = dict(
        tags=tags,
        segments=analysis.segments,
        cuts=analysis.cuts,
        duration_s=analysis.duration_s,
        sample_rate=44100,
        seed=1,
    )
    fields.update(changes)
    return MusicBrief(**fields)
