"""Ranking candidates by fit: synthetic audio whose tempo, cut accents and loudness we chose."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from services.domain import Cut, GeneratedMusic, Look, MusicBrief, MusicTags, Segment
from services.errors import CancelledError
from services.generator.ranking import rank
from tests.heartbeats import cancelling_at

RATE = 22050
LOOK = Look(0.5, 0.5, 0.5, 0.5)
PLAN = None  # ranking reads the audio only


def brief(bpm: float = 100.0, cuts: tuple[float, ...] = (), energies=(0.5,)) -> MusicBrief:
    duration = 12.0
    step = duration / len(energies)
    segments = [Segment(i * step, (i + 1) * step, e, LOOK, []) for i, e in enumerate(energies)]
    tags = MusicTags(["ambient"], ["calm"], ["piano"], bpm, bpm - 10, bpm + 10, "C major", 0.5)
    return MusicBrief(tags, segments, [Cut(c, "hard", 1.0) for c in cuts], duration)


def measured(value: float | None) -> float:
    """A score the ranking measured (None where it had nothing to measure)."""
    assert value is not None
    return value


def clicks(times: list[float], duration: float = 12.0, level: float = 0.8) -> np.ndarray:
    """Short decaying noise bursts at `times`, over a quiet noise bed."""
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(round(duration * RATE)).astype(np.float32)
    burst = rng.standard_normal(400).astype(np.float32) * np.exp(-np.arange(400) / 60.0)
    for t in times:
        start = round(t * RATE)
        end = min(len(audio), start + len(burst))
        audio[start:end] += level * burst[: end - start]
    return np.repeat(audio[:, None], 2, axis=1)


def music(audio: np.ndarray) -> GeneratedMusic:
    return GeneratedMusic(audio=audio, sample_rate=RATE, stems={}, midi=b"", plan=PLAN)  # type: ignore[arg-type]


def beats(bpm: float, duration: float = 12.0, offset: float = 0.0) -> list[float]:
    return list(np.arange(offset, duration, 60.0 / bpm))


def test_music_on_the_asked_tempo_ranks_above_music_on_another():
    on_tempo = music(clicks(beats(100)))
    off_tempo = music(clicks(beats(137)))
    scores = rank(brief(bpm=100), [off_tempo, on_tempo])
    assert [s.candidate for s in scores] == [1, 0]
    assert [s.rank for s in scores] == [1, 2]
    best, worst = scores
    assert best.tempo_fit > 0.5 > worst.tempo_fit
    # No cuts, one segment: those measures are absent, not invented.
    assert best.cut_accent is None and best.energy_follow is None
    assert best.score == pytest.approx(best.tempo_fit, abs=1e-4)


def test_a_half_time_pulse_still_fits_the_tempo():
    [score] = rank(brief(bpm=120), [music(clicks(beats(60)))])
    assert score.tempo_fit > 0.5


def test_onsets_on_the_cuts_rank_above_onsets_between_them():
    cuts = (3.0, 7.0, 9.5)
    on_cuts = music(clicks([*cuts, 1.1, 5.3, 11.2]))
    between = music(clicks([1.6, 4.9, 8.2, 1.1, 5.3, 11.2]))
    scores = rank(brief(cuts=cuts), [between, on_cuts])
    by_candidate = {s.candidate: s for s in scores}
    assert measured(by_candidate[1].cut_accent) > 0.9
    assert measured(by_candidate[0].cut_accent) < 0.7
    assert scores[0].candidate == 1


def test_loudness_following_the_segments_energy_ranks_first():
    energies = (0.2, 0.9, 0.4)
    pulse = beats(100)

    def piece(levels: tuple[float, ...]) -> GeneratedMusic:
        parts = [clicks([t - 4 * i for t in pulse if 4 * i <= t < 4 * (i + 1)], duration=4.0,
                        level=level) for i, level in enumerate(levels)]  # fmt: skip
        return music(np.concatenate(parts))

    follows = piece((0.1, 0.9, 0.3))
    opposite = piece((0.9, 0.1, 0.5))
    scores = rank(brief(energies=energies), [opposite, follows])
    by_candidate = {s.candidate: s for s in scores}
    assert measured(by_candidate[1].energy_follow) > 0.9
    assert measured(by_candidate[0].energy_follow) < 0.1
    assert scores[0].candidate == 1


def test_silence_scores_low_and_is_ranked_last():
    silent = music(np.zeros((12 * RATE, 2), dtype=np.float32))
    scores = rank(brief(cuts=(3.0,)), [silent, music(clicks([3.0, *beats(100)]))])
    assert scores[-1].candidate == 0
    assert scores[-1].tempo_fit == 0.0


def test_ranking_long_pieces_hears_a_cancel():
    """Ranking measures every candidate's whole audio (two hours of music take about 15 s):
    it calls its heartbeat a block at a time, so a cancel stops it."""
    long = music(np.zeros((round(200.0 * RATE), 2), np.float32))
    calls: list[int] = []
    rank(brief(), [long, long], functools.partial(calls.append, 1))
    # Per candidate: one before it, seven blocks resampling 200 s, two of its envelope.
    assert len(calls) >= 2 * (1 + 7 + 2)
    heartbeat, heard = cancelling_at(5)
    with pytest.raises(CancelledError):
        rank(brief(), [long, long], heartbeat)
    assert len(heard) == 5
