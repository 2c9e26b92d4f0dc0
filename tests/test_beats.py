"""Rendered music checked by an independent beat tracker (librosa) against its plan."""

from __future__ import annotations

import numpy as np
import pytest

from services.generator.backends.composer.styles import STYLES
from services.generator.beatcheck import check_beats


@pytest.mark.slow
@pytest.mark.parametrize("genre", list(STYLES))
def test_the_tracker_hears_the_planned_pulse_and_the_cuts_on_it(composed, beat_analysis, genre):
    music = composed(genre)
    check = check_beats(music.audio, music.sample_rate, music.plan, beat_analysis.cuts_s)
    # The pulse is heard in every genre, drumless ones too: most sections at the planned
    # tempo (or its double or half).
    assert check.sections_checked >= len(music.plan.sections) // 2
    assert check.sections_within_2pct >= 0.8 * check.sections_checked, check
    # The tracker finds beats at the cuts the plan put on beats (within its 50 ms).
    beats = np.array(music.plan.beats_s)
    planned = sum(np.min(np.abs(beats - c)) <= 0.025 for c in beat_analysis.cuts_s)
    assert check.cuts_within_50ms >= planned - 1, check
