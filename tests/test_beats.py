"""Rendered music checked by an independent beat tracker (librosa) against its plan."""

from __future__ import annotations

import pytest

from services.generator.backends.composer.styles import STYLES
from services.generator.beatcheck import check_beats
from services.generator.beatcheck import genre_brief as brief_for


@pytest.mark.slow
@pytest.mark.parametrize("genre", [g for g in STYLES if g != "ambient"])
def test_beats_follow_the_plan_and_cuts_fall_on_beats(generator, beat_analysis, genre):
    music = generator.generate(brief_for(beat_analysis, genre))
    check = check_beats(music.audio, music.sample_rate, music.plan, beat_analysis.cuts_s)
    assert check.sections_checked >= len(music.plan.sections) // 2
    assert check.sections_within_2pct == check.sections_checked, check
    assert check.cuts_within_50ms >= 0.9 * check.cuts, check
