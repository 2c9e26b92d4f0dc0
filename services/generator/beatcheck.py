"""An independent check of rendered music against its plan, with librosa's beat tracker.

Used by the tests and the benchmark (librosa is a development dependency).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.domain import MusicBrief, MusicPlan, VideoAnalysis, timeline_of_length
from services.vocabulary import load_vocabulary


@dataclass(frozen=True)
class BeatCheck:
    # Sections long enough to judge, and how many had a detected tempo within 2% of the
    # planned one (or of its double or half, as beat trackers may report).
    sections_checked: int
    sections_within_2pct: int
    worst_tempo_error: float
    cuts: int
    cuts_within_50ms: int


def check_beats(
    audio: np.ndarray, sample_rate: int, plan: MusicPlan, cuts_s: list[float]
) -> BeatCheck:
    import librosa

    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    _, beats = librosa.beat.beat_track(y=mono, sr=sample_rate, units="time")
    beats = np.asarray(beats)
    checked = within = 0
    worst = 0.0
    for section in plan.sections:
        inside = beats[(beats > section.start_s + 0.05) & (beats < section.end_s - 0.05)]
        if len(inside) < 5:
            continue
        detected = 60.0 / float(np.median(np.diff(inside)))
        error = min(abs(detected * factor / section.bpm - 1.0) for factor in (1.0, 2.0, 0.5))
        checked += 1
        within += error <= 0.02
        worst = max(worst, error)
    near = [bool(len(beats)) and float(np.min(np.abs(beats - cut))) <= 0.05 for cut in cuts_s]
    return BeatCheck(checked, within, worst, len(cuts_s), sum(near))


def genre_brief(analysis: VideoAnalysis, genre: str, **changes: Any) -> MusicBrief:
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
    if "duration_s" in changes and "segments" not in changes:
        # Another length: the video's timeline cut (or its last segment held) to it.
        fields["segments"], fields["cuts"] = timeline_of_length(
            analysis.segments, fields["cuts"], fields["duration_s"]
        )
    return MusicBrief(**fields)
