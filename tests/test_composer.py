"""The composer: timing, form, harmony, genres, seeds, length, MIDI and stems."""

from __future__ import annotations

import bisect
import dataclasses
import io
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import pretty_midi
import pytest

from services import progress as progress_module
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment, TagOrigin
from services.errors import CancelledError, InvalidInputError
from services.generator.backends.composer import balance, timing
from services.generator.backends.composer.arrangement import (
    BREATH_S,
    CYMBAL_GAP_BARS,
    LONGEST_TIE_S,
    SAME_BEAT,
    SECTION_ACCENT,
    STATEMENT_BARS,
    SUBSTITUTES,
    SUSTAINING,
    Note,
    SectionForm,
    choose_progressions,
    hit_key,
    up_stroke,
)
from services.generator.backends.composer.backend import Score
from services.generator.backends.composer.midi import CC_PAN, CC_VOLUME, Track, midi_bytes
from services.generator.backends.composer.performance import (
    EXPRESSION,
    perform,
    shaped,
    strummers,
)
from services.generator.backends.composer.styles import (
    ACOUSTIC_KICK,
    CHINA,
    CLAP,
    CRASH,
    CRASH_2,
    HAT,
    KICK,
    PANS,
    PLAYABLE,
    SNARE,
    SPLASH,
    STYLES,
)
from services.generator.backends.composer.theory import Key, chord, voice
from services.generator.backends.composer.timing import (
    METERS,
    HitPoint,
    TimingPlan,
    conducted_beats,
    plan_timing,
)
from services.generator.beatcheck import genre_brief as brief_for
from services.progress import Heartbeat
from services.rules import ON_BEAT_S
from services.vocabulary import load_vocabulary
from tests.heartbeats import cancelling_at

VOCABULARY = load_vocabulary()
GENRES_WITH_DRUMS = [g for g in STYLES if g != "ambient"]


def _chosen_key(generator, brief) -> str:
    """The key the composer chooses for a brief that does not fix one, as the plan names it
    (composed only: the key is chosen before anything is performed or rendered)."""
    return generator.compose(brief, Heartbeat(lambda fraction: None)).home.name


# Review 5's 15 s clip: cuts at 3.2, 7.9 and 11.4 s; and its 30 s clip.
CLIP_15_S = (0.0, 3.2, 7.9, 11.4, 15.0)
CLIP_30_S = (0.0, 2.6, 6.1, 9.0, 13.7, 17.2, 21.9, 25.3, 30.0)


def _shots(beat_analysis, bounds: Sequence[float]) -> tuple[list[Segment], list[Cut]]:
    """A video from bounds[0] (0 s) to bounds[-1] cut hard (0.9) at the times between: a
    segment per shot, each as the beat video's first."""
    shot = beat_analysis.segments[0]
    segments = [dataclasses.replace(shot, start_s=a, end_s=b)
                for a, b in itertools.pairwise(bounds)]  # fmt: skip
    return segments, [Cut(t, "hard", 0.9) for t in bounds[1:-1]]


def _span_at(score, beat: float):
    """The chord span sounding at `beat` (None past the last)."""
    return next((s for s in score.arrangement.harmony if s.start <= beat < s.end), None)


def _performed(score):
    """The score's notes performed at 48 kHz (seed 1's loose timing, the default spreads)."""
    played: dict[str, list] = {}
    for note in score.notes:
        played.setdefault(note.instrument, []).append(note)
    return perform(played, score.plan, score.forms, score.arrangement, 48000,
                   np.random.default_rng(1), lambda: None, {},
                   strummers(score.style, score.roles))  # fmt: skip


def _bar_lengths(plan) -> set[int]:
    beats = np.array(plan.beats_s)
    return set(np.diff(np.searchsorted(beats, np.array(plan.bars_s) - 1e-6)).tolist())


@pytest.mark.parametrize("genre", ["pop", "folk", "orchestral", "hip-hop"])
def test_one_meter_and_a_steady_pulse_from_the_first_sample(composed, genre):
    for seed in (1, 2, 3):
        music = composed(genre, seed)
        plan = music.plan
        periods = np.diff(plan.beats_s)
        # Beat 0 is the first sample, and something sounds there; the first bar line is
        # within the first bar (the beats before it a pickup, where that puts cuts on bar
        # lines).
        # One meter: every bar has the same number of beats, one time signature in the MIDI
        # (after the pickup's, where there is one).
        assert len(_bar_lengths(plan)) == 1
        (beats_per_bar,) = _bar_lengths(plan)
        assert plan.beats_s[0] == 0.0
        assert plan.bars_s[0] in plan.beats_s[:beats_per_bar]
        assert np.abs(music.audio[: music.sample_rate // 50]).max() > 1e-3
        song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
        assert len(song.time_signature_changes) == 1 + (plan.bars_s[0] > 0)
        # A conductor's tempo map: at most MAX_BEAT_CHANGE (1%) from one beat to the next,
        # within the style's flex of the piece's tempo.
        assert np.max(np.abs(periods[1:] / periods[:-1] - 1.0)) <= timing.MAX_BEAT_CHANGE + 1e-9
        flex = STYLES[genre].tempo_flex
        assert periods.max() / periods.min() <= (1 + flex) ** 2 + 1e-6
        bpm_range = VOCABULARY.genres[genre].bpm
        assert bpm_range is not None
        low, high = bpm_range
        assert low / (1 + flex) <= plan.bpm <= high * (1 + flex)


def test_a_programmed_groove_keeps_its_tempo_through_the_cuts(generator, beat_analysis):
    """A 15 s clip cut at 3.2, 7.9 and 11.4 s: electronic's, hip-hop's, lo-fi's and
    corporate's tempo (a drum machine's, a loop's) moves 6.1% at most from its slowest beat to
    its fastest, (1 + styles.SEQUENCED_FLEX) squared, and every cut is still struck at its
    time. The cuts had pulled a 15 s electronic clip from 131 to 120 BPM, 8% within 2 s (a
    music review)."""
    from services.generator.backends.composer.styles import SEQUENCED_FLEX

    segments, cuts = _shots(beat_analysis, CLIP_15_S)
    for genre, seed in itertools.product(("electronic", "hip-hop", "lo-fi", "corporate"), (1, 2)):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=15.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        periods = np.diff(score.plan.beats_s)
        moved = periods.max() / periods.min() - 1.0
        assert moved <= (1 + SEQUENCED_FLEX) ** 2 - 1 + 1e-6, (genre, seed, moved)
        onsets = np.array(sorted(score.plan.beat_time(n.start) for n in score.notes))
        for cut in cuts:
            assert np.min(np.abs(onsets - cut.time_s)) <= ON_BEAT_S + 0.001, (genre, cut)


def test_a_rock_drummer_holds_the_tempo_through_the_cuts(generator, beat_analysis):
    """The same 15 s clip: rock's tempo moves at most 8.2% from its slowest beat to its
    fastest ((1 + its flex of 4%) squared; 2.9% with these seeds), every cut still struck at
    its time. With a conductor's 8% two of these four seeds had moved it 9.5%, and
    bench_music's pieces up to 15% (13% within 3 s): a band heard speeding up into a cut."""
    segments, cuts = _shots(beat_analysis, CLIP_15_S)
    for seed in (1, 2, 3, 4):
        brief = brief_for(beat_analysis, "rock", seed=seed, duration_s=15.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        periods = np.diff(score.plan.beats_s)
        moved = periods.max() / periods.min() - 1.0
        assert moved <= 1.04**2 - 1 + 1e-6, (seed, moved)
        onsets = np.array(sorted(score.plan.beat_time(n.start) for n in score.notes))
        for cut in cuts:
            assert np.min(np.abs(onsets - cut.time_s)) <= ON_BEAT_S + 0.001, (seed, cut)


@pytest.mark.parametrize(("bpm", "duration_s"), [(120.0, 1.0), (60.0, 3.0), (30.0, 1.0),
                                                  (60.0, 0.5)])  # fmt: skip
def test_a_short_piece_at_the_users_tempo_with_a_cut_at_its_end_plays(
    generator, bpm: float, duration_s: float
):
    # The cut 20 ms before the end sits within ON_BEAT_S of a beat at or past the end: the
    # grid had been chosen for that beat (a first downbeat past its last beat: ValueError in
    # the cut alignment) or begun after the end (no beat at all: IndexError). Found by a
    # seeded sweep of the composer's briefs.
    tags = MusicTags(genres=["pop"], moods=[], instruments=[], bpm=bpm, bpm_min=bpm,
                     bpm_max=bpm, key="C major", energy=0.5)  # fmt: skip
    brief = MusicBrief(tags=tags, segments=[], cuts=[Cut(duration_s - 0.02, "hard", 1.0)],
                       duration_s=duration_s, sample_rate=44100, bpm_is_fixed=True)  # fmt: skip
    music = generator.generate(brief)
    assert len(music.audio) == round(duration_s * 44100)
    plan = music.plan
    assert plan.bpm == bpm and plan.bars_s and plan.beats_s[0] < min(60.0 / bpm, duration_s)
    assert all(b < duration_s for b in plan.beats_s)


def test_user_bpm_is_exact_and_constant_from_the_first_sample(generator, beat_analysis):
    brief = brief_for(beat_analysis, "rock", bpm_is_fixed=True)
    brief = dataclasses.replace(
        brief, tags=dataclasses.replace(brief.tags, bpm=137.0, bpm_min=137.0, bpm_max=137.0)
    )
    music = generator.generate(brief)
    plan = music.plan
    period = 60 / 137.0
    assert np.allclose(np.diff(plan.beats_s), period, atol=1e-6)
    assert {s.bpm for s in plan.sections} == {137.0}
    # The grid starts within one beat of the first sample, and music sounds from it.
    assert plan.beats_s[0] < period
    assert np.abs(music.audio[: music.sample_rate // 50]).max() > 1e-3
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    times, tempi = song.get_tempo_changes()
    assert times[0] == 0.0
    assert np.allclose(tempi, 137.0, atol=1e-3)
    # The meter is 4/4 from the first downbeat; before it at most a written pickup.
    signatures = song.time_signature_changes
    assert (signatures[-1].numerator, signatures[-1].denominator) == (4, 4)
    assert signatures[-1].time == pytest.approx(plan.bars_s[0], abs=2e-3)
    if len(signatures) == 2:
        # The pickup as a bar in its plainest terms (it had been written in 64ths: 32/64).
        pickup = signatures[0]
        assert pickup.time == 0.0 and (pickup.numerator % 2 or pickup.denominator == 4)
        quarters = 4 * pickup.numerator / pickup.denominator
        assert quarters * period == pytest.approx(plan.bars_s[0], abs=2e-3)
    assert len(_bar_lengths(plan)) == 1
    # The phase puts more cuts near beats than a grid starting at the first sample would.
    beats = np.array(plan.beats_s)
    from_zero = np.arange(len(beats) + 2) * period
    cuts = beat_analysis.cuts_s
    near = sum(np.min(np.abs(beats - c)) <= 0.03 for c in cuts)
    near_from_zero = sum(np.min(np.abs(from_zero - c)) <= 0.03 for c in cuts)
    assert near >= max(1, near_from_zero)
    assert plan.alignment.worst_ms <= 60_000 / 137.0 / 2 + 1


def test_a_cut_near_a_user_bpm_beat_is_hit_on_the_beat(generator, beat_analysis):
    """At a user's 140 BPM the grid's phase puts the cuts at 4 s and 7 s 9 ms after a beat
    (the best a phase in 64th notes can do for both): each cut's hit is played on that beat,
    with the beat's own notes, and the plan counts both on a beat. The hits had been played
    at the cuts, before the beat's notes (a flam, after a stop in the drums: 18 ms with the
    phase in 32nds), and the plan had counted neither."""
    segments = [Segment(a, b, 0.6, Look(0.5, 0.5, 0.5, 0.5), ["happy"])
                for a, b in ((0.0, 4.0), (4.0, 7.0), (7.0, 15.0), (15.0, 20.0))]  # fmt: skip
    cuts = [Cut(t, "hard", 0.8) for t in (4.0, 7.0, 15.0)]
    brief = brief_for(beat_analysis, "rock", bpm_is_fixed=True, duration_s=20.0,
                      segments=segments, cuts=cuts)  # fmt: skip
    brief = dataclasses.replace(
        brief, tags=dataclasses.replace(brief.tags, bpm=140.0, bpm_min=140.0, bpm_max=140.0)
    )
    score = generator.compose(brief, Heartbeat(lambda f: None))
    plan, beats = score.plan, np.array(score.plan.beats_s)
    near = [t for t in (4.0, 7.0) if 0.005 < np.min(np.abs(beats - t)) <= 0.025]
    assert near == [4.0, 7.0], np.min(np.abs(beats[:, None] - [4.0, 7.0]), axis=0)
    for cut in near:
        onsets = {round(plan.beat_time(n.start), 4) for n in score.notes
                  if abs(plan.beat_time(n.start) - cut) <= 0.03}  # fmt: skip
        assert onsets == {round(float(beats[np.argmin(np.abs(beats - cut))]), 4)}, (cut, onsets)
    music = generator.render(score, lambda f: None)
    assert music.plan.alignment.on_beat_count == 2
    # Performed, every note on those beats sounds together at the cut's own time: the
    # performance's loose timing leaves a hit's notes alone (it had left alone only those
    # within 2 ms of the cut), and the hit meets the picture (played on the beat, it had
    # sounded 9 ms after the cut).
    performance = _performed(score)
    for cut in near:
        starts = {n.start_sample for notes in performance.notes.values() for n in notes
                  if abs(n.start_sample / 48000 - cut) <= 0.03}  # fmt: skip
        assert starts == {round(cut * 48000)}, (cut, sorted(starts))


def test_a_short_clip_s_band_is_playing_from_its_first_sample(generator, beat_analysis):
    """An 8 s clip with one cut, at 3.7 s, in every genre, seeds 1 and 2: where its bars
    start after the first sample, the beats before the first downbeat are the end of a bar
    the band is already playing (a soft chord and two snare taps had sat 4-16 dB under the
    band, which then came in 5-18 dB louder with a crash where the picture does not cut: the
    loudest accent of 14 of 15 such clips in a music review). Its bass, and its drums where it has
    them, play there at the first section's level, and the first downbeat opens no crash."""
    segments, cuts = _shots(beat_analysis, (0.0, 3.7, 8.0))
    checked = 0
    for genre, seed in itertools.product(STYLES, (1, 2)):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=8.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan = score.plan
        downbeat = plan.first_downbeat
        if downbeat < 1:
            continue
        checked += 1
        before = [n for n in score.notes if n.start < downbeat - 1e-6]
        # The notes sounding in the same beats of the first bar (an 808's note held into
        # them among them).
        beats = plan.meter.beats
        bar = [n for n in score.notes
               if n.start < downbeat + beats - 1e-6 and n.end > beats + 1e-6]  # fmt: skip
        for part in ("bass", "drums"):
            for player in score.roles.of(part)[:1]:
                pickup = [n.velocity for n in before if n.instrument == player]
                played = [n.velocity for n in bar if n.instrument == player]
                assert len(pickup) >= downbeat, (genre, seed, player)
                # (The upper quartile: ghost strokes are part of a groove's bar.) The first
                # bar is the phrase's swell (2) and the section's accent over the pickup's,
                # and a note's velocity varies by 4 either way: up to 16 between two notes,
                # where hip-hop's 808 strikes one in these beats.
                loud = np.percentile(pickup, 75) - np.percentile(played, 75)
                assert loud >= -(2 + SECTION_ACCENT + 2 * 4), (genre, seed, player, pickup,
                                                               played)  # fmt: skip
        drums = score.roles.of("drums")
        cymbals = {CRASH, CRASH_2, SPLASH, CHINA, score.style.crash}
        assert not [n for n in score.notes if n.instrument in drums and n.pitch in cymbals
                    and abs(n.start - downbeat) < 1e-6], (genre, seed)  # fmt: skip
    assert checked >= 10


@pytest.mark.parametrize("genre", ["rock", "pop", "ambient"])
def test_a_pickup_too_short_to_hear_strikes_no_chord_of_its_own(generator, beat_analysis, genre):
    """At 140 BPM a cut on a bar line 2/64 after a beat gives a pickup of 54 ms: the
    downbeat's chord starts at the first sample, with nothing struck again on the downbeat
    (a chord at 0 and the downbeat's 54 ms later had sounded like a stumble)."""
    period = 60.0 / 140.0
    cut = 2 * period / 16 + 8 * period
    segments = [Segment(0.0, cut, 0.6, Look(0.5, 0.5, 0.5, 0.5), ["happy"]),
                Segment(cut, 12.0, 0.7, Look(0.6, 0.6, 0.5, 0.5), ["happy"])]  # fmt: skip
    brief = brief_for(beat_analysis, genre, bpm_is_fixed=True, duration_s=12.0,
                      segments=segments, cuts=[Cut(cut, "hard", 0.9)])  # fmt: skip
    brief = dataclasses.replace(
        brief, tags=dataclasses.replace(brief.tags, bpm=140.0, bpm_min=140.0, bpm_max=140.0)
    )
    score = generator.compose(brief, Heartbeat(lambda f: None))
    plan = score.plan
    assert plan.first_downbeat == 0 and plan.beats_s[0] == pytest.approx(2 * period / 16)
    first = -plan.lead_beats
    for instrument in score.band:
        onsets = {n.start for n in score.notes if n.instrument == instrument}
        assert not (first in onsets and 0.0 in onsets), instrument
    assert any(n.start == first for n in score.notes)  # the music starts at once


def _conducted(
    duration_s: float,
    cuts: list[tuple[float, float]],
    bpm_range: tuple[float, float],
    preferred_bpm: float,
    take: int = 0,
) -> TimingPlan:
    """A conductor's map in 4/4 with 8% of drift for cuts given as (time, strength), each
    starting a segment; it must keep both limits."""
    plan = plan_timing(
        duration_s,
        [0.0, *(t for t, _ in cuts)],
        [HitPoint(t, strength, boundary=True) for t, strength in cuts],
        bpm_range,
        preferred_bpm,
        METERS["4/4"],
        0.08,
        heartbeat=lambda: None,
        ring_s=0.9,
        take=take,
    )
    periods = np.diff(plan.beats_s)
    assert np.max(np.abs(periods[1:] / periods[:-1] - 1.0)) <= timing.MAX_BEAT_CHANGE
    assert periods.max() / periods.min() <= 1.08**2
    return plan


def test_tempo_map_is_gradual_and_meets_cuts():
    cuts = [2.8, 7.4, 11.5, 14.4, 18.4, 24.3, 29.2, 35.1, 40.7]
    plan = _conducted(46.0, [(t, 0.6) for t in cuts], (95, 128), 110)
    beats = np.array(plan.beats_s)
    on_beat = [c for c in cuts if np.min(np.abs(beats - c)) <= 0.025]
    # A constant 110 BPM grid from 0 puts about a fifth of these on a beat; the map most.
    assert len(on_beat) >= 7
    # Sections start on bar lines, every bar four beats (the first with the piece, its
    # pickup's beats and all).
    assert plan.sections[0].first_beat == 0
    assert all((s.first_beat - plan.first_downbeat) % 4 == 0 for s in plan.sections[1:])


def test_the_bars_start_where_the_picture_changes():
    """The probe's pop cue (116 BPM, four shots): the first downbeat is the beat that puts
    the most cuts on bar lines (the beats before it a pickup), and the sections those cuts
    start begin on them. With every bar from the first sample, none of the four had been on
    a bar line, and each section had begun half a bar from its cut."""
    cuts = [3.2, 7.9, 11.0, 15.6]
    plan = _conducted(20.0, [(t, 0.9) for t in cuts], (100, 125), 116)
    beats = np.array(plan.beats_s)
    bars = beats[plan.bar_starts]
    assert all(np.min(np.abs(beats - t)) <= ON_BEAT_S for t in cuts)
    on_bars = [t for t in cuts if np.min(np.abs(bars - t)) <= ON_BEAT_S]
    assert len(on_bars) >= 2 and 0 < plan.first_downbeat < 4
    starts = [plan.beats_s[s.first_beat] for s in plan.sections]
    assert all(np.min(np.abs(np.array(starts) - t)) <= ON_BEAT_S for t in on_bars)


def test_every_take_meets_the_cuts_the_best_meets():
    """Seeds play other takes (other tempos) only where those put as many cuts on beats: on
    the probe's pop cue (its tagger's cuts and tempo), a take that scored as well by its bar
    lines had missed the cut at 7.9 s by 270 ms, and --candidates had delivered it."""
    cuts = [(3.2, 0.888), (7.9, 0.852), (11.0, 1.0), (15.6, 0.934)]
    for take in range(4):
        beats = np.array(_conducted(20.0, cuts, (95, 128), 106, take).beats_s)
        assert all(np.min(np.abs(beats - t)) <= ON_BEAT_S for t, _ in cuts), take


def test_a_mood_moves_the_tempo_only_as_far_as_the_cuts_allow(generator, beat_analysis):
    """The probe's ambient cue (cuts at 3.2, 7.9, 11.0 and 15.6 s, the picture asking for 70
    BPM, its cuts for about 78): `calm` moves the tempo the brief prefers to 61 (the gateway's
    lean), which had pulled the map to 62 BPM with two of the four cuts off the beat. The
    tempo the picture preferred keeps them; the mood still sets the energy and the mode."""
    times = [3.2, 7.9, 11.0, 15.6]
    edges = [0.0, *times, 20.0]
    look = Look(0.35, 0.4, 0.4, 0.5)
    segments = [Segment(a, b, 0.2, look, ["calm"]) for a, b in itertools.pairwise(edges)]
    cuts = [Cut(t, "hard", strength) for t, strength in zip(times, (0.888, 0.852, 1.0, 0.934),
                                                                strict=True)]  # fmt: skip
    brief = brief_for(beat_analysis, "ambient", duration_s=20.0, segments=segments, cuts=cuts,
                      seed=0)  # fmt: skip
    picture = dataclasses.replace(brief.tags, bpm=70, bpm_min=60, bpm_max=90)
    calm = dataclasses.replace(
        picture, bpm=61, origins=[*picture.origins, TagOrigin("mood", "calm", "user", 1.0)]
    )
    plans = [generator.generate(dataclasses.replace(brief, tags=tags)).plan
             for tags in (picture, calm)]  # fmt: skip
    assert [p.alignment.on_beat_count for p in plans] == [4, 4]


def test_the_tempo_map_meets_every_cut_it_can_reach(monkeypatch):
    """bench_music's irregular video (gaps of 1.5-6 s) asking for electronic: one map through
    all nine cuts keeps the limits where the tempo may change 2% a beat (at 1%, none does).
    A search free to skip cuts had counted the cuts it passed over as on the beats of even
    spans; the smooth map solved through its anchors missed one of them (21.6 s)."""
    monkeypatch.setattr(timing, "MAX_BEAT_CHANGE", 0.02)
    monkeypatch.setattr(timing, "SOLVED_BEAT_CHANGE", 0.0195)
    cuts = [(2.7, 1.0), (5.533, 1.0), (10.7, 0.98), (12.6, 1.0), (16.8, 1.0), (21.6, 0.81),
            (23.933, 0.82), (25.7, 1.0), (28.433, 1.0)]  # fmt: skip
    beats = np.array(_conducted(30.0, cuts, (110, 135), 122.5).beats_s)
    missed = [t for t, _ in cuts if np.min(np.abs(beats - t)) > 0.025]
    assert not missed


def test_the_tempo_map_keeps_every_anchor_a_conductor_could_follow():
    """Anchors on the beats of a map that keeps the limits (steady, a ritardando of 0.9% a
    beat to 14% slower, steady, back): the solved map passes through every one, within the
    limits."""
    periods = [0.5] * 6 + [0.5 * 1.009**k for k in range(1, 16)] + [0.5 * 1.009**15] * 4
    periods += [0.5 * 1.009 ** (15 - k) for k in range(1, 16)] + [0.5] * 8
    beats = np.concatenate([[0.0], np.cumsum(periods)])
    anchors = [(k, float(beats[k]), 1.0) for k in (3, 12, 21, 23, 25, 33, 41, 46)]
    planned, misses = conducted_beats(anchors, 0.535, 0.08, float(beats[-1]), lambda: None)
    assert float(np.max(misses)) <= 1e-6, misses
    gaps = np.diff(planned)
    assert np.max(np.abs(gaps[1:] / gaps[:-1] - 1.0)) <= timing.MAX_BEAT_CHANGE
    assert gaps.max() / gaps.min() <= 1.08**2


def test_a_long_tempo_map_is_solved_a_window_at_a_time():
    """Over 4,000 beats (half an hour) a slow swell of the tempo, within the limits, with
    anchors every 5 to 15 beats: the map is solved a window at a time, each a heartbeat, and
    still passes through every anchor and keeps the limits across the windows' seams."""
    rng = np.random.default_rng(7)
    periods = 0.5 * (1.0 + 0.06 * np.sin(np.arange(4000) / 40.0))
    beats = np.concatenate([[0.0], np.cumsum(periods)])
    numbers = np.cumsum(rng.integers(5, 16, 400))
    anchors = [(int(k), float(beats[k]), 1.0) for k in numbers[numbers < 4000]]
    heartbeats = []
    planned, misses = conducted_beats(anchors, 0.5, 0.08, float(beats[-1]),
                                      lambda: heartbeats.append(1))  # fmt: skip
    assert len(heartbeats) >= 4000 // timing.MAP_WINDOW_BEATS + 1
    assert float(np.max(misses)) <= 1e-6, np.flatnonzero(misses > 1e-6)
    gaps = np.diff(planned)
    assert np.max(np.abs(gaps[1:] / gaps[:-1] - 1.0)) <= timing.MAX_BEAT_CHANGE
    assert gaps.max() / gaps.min() <= 1.08**2


def test_a_cancel_is_heard_while_the_tempo_map_is_solved():
    """The heartbeat that raises stops the map between windows."""
    anchors = [(k, 0.5 * k, 1.0) for k in range(0, 4000, 8)]
    heartbeat, calls = cancelling_at(2)
    with pytest.raises(CancelledError):
        conducted_beats(anchors, 0.5, 0.08, 2000.0, heartbeat)
    assert len(calls) == 2


def test_irregular_cuts_mostly_land_on_beats():
    """Gaps of 1.5-6 s at random (bench_music's irregular video): a constant grid puts about
    two of the nine on a beat; the conductor's map at least six, in a narrow genre range
    (seven when it glided 2% a beat, swinging faster than a band does)."""
    gaps = [2.68, 2.84, 5.16, 1.92, 4.2, 4.76, 2.36, 1.76, 2.72]
    cuts = [float(t) for t in np.cumsum(gaps)]
    plan = plan_timing(
        cuts[-1] + 4.47, [0.0], [HitPoint(t, 0.5) for t in cuts], (100, 125), 112,
        METERS["4/4"], 0.06, heartbeat=lambda: None, ring_s=0.9,
    )  # fmt: skip
    planned = np.array(plan.beats_s)
    on_beat = [c for c in cuts if np.min(np.abs(planned - c)) <= 0.025]
    assert len(on_beat) >= 6, on_beat


def test_a_section_is_cued_at_the_cut_that_changes_the_picture_most():
    """Two cuts share a section's bar line (16 s): one between two busy shots (15.5 s), one
    into a calm still (17 s). The section, which takes the still, hands its texture over at
    the still's cut; the nearest alone had started a breakdown 1.5 s before its calm shot, in
    the busy one (a music review). Where nothing says how much the picture changes, the
    nearest."""
    starts = [0.0, 8.0, 15.5, 17.0, 20.0]
    cuts = [HitPoint(t, 0.9, boundary=True) for t in starts[1:]]
    changes = {8.0: 0.8, 15.5: 0.05, 17.0: 0.85, 20.0: 0.8}
    cues = []
    for told in (changes, None):
        plan = plan_timing(
            28.0, starts, cuts, (110, 130), 120, METERS["4/4"], 0.0, heartbeat=lambda: None,
            ring_s=0.9, fixed_bpm=120.0, changes=told,
        )  # fmt: skip
        assert [s.start_s for s in plan.sections] == [0.0, 8.0, 16.0, 20.0]
        cues.append(plan.sections[2].cue_s)
    assert cues == [17.0, 15.5]


def test_cuts_near_a_beat_are_put_exactly_on_it():
    """A fast montage (0.8 s shots, some cuts a frame late, as in bench_music): cuts the
    anchor search passed over but that fell within 25 ms of a beat are anchored too, so the
    beat is on the cut rather than a few milliseconds off (a cut's hit and the beat would flam).
    Without that, 19 of the 29 were exact and 9 a few ms off."""
    cuts = [round(0.8 * k + (1 / 30 if k == 3 or k >= 14 else 0.0), 6) for k in range(1, 30)]
    plan = plan_timing(
        24.0, [0.0], [HitPoint(t, 0.4) for t in cuts], (60, 90), 75, METERS["4/4"], 0.08,
        heartbeat=lambda: None, ring_s=0.9,
    )  # fmt: skip
    beats = np.array(plan.beats_s)
    misses = np.array([np.min(np.abs(beats - c)) for c in cuts])
    assert np.sum(misses <= 1e-3) >= 24, misses


@pytest.mark.parametrize("genre", ["rock", "ambient", "orchestral", "hip-hop"])
def test_every_cut_is_marked_at_its_time(generator, beat_analysis, genre):
    # The video's cuts plus a fast montage (0.8 s shots) in the middle.
    montage = [Cut(round(20.0 + 0.8 * i, 3), "hard", 0.4) for i in range(1, 6)]
    montage.append(Cut(round(beat_analysis.duration_s - 0.5, 3), "hard", 0.7))
    cuts = sorted([*beat_analysis.cuts, *montage], key=lambda c: c.time_s)
    music = generator.generate(brief_for(beat_analysis, genre, cuts=cuts))
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    onsets = np.array(sorted(n.start for i in song.instruments for n in i.notes))
    # Every cut, a flurry's and one in the final chord's tail too: at its time, or on its
    # beat within ON_BEAT_S of it (with the beat's notes).
    for cut in cuts:
        assert np.min(np.abs(onsets - cut.time_s)) <= ON_BEAT_S + 0.001, (genre, cut)


@pytest.mark.parametrize("genre", ["lo-fi", "rock", "ambient"])
def test_cuts_after_the_final_chord_are_marked_softly_as_it_dies_away(
    generator, beat_analysis, genre
):
    """A fast montage's close: the cuts after the final chord are still marked, each by a
    light accent (no kick) under the chord's own strike, softer towards the end. Each had been a
    full hit on its beat (kick and all, velocity 98-111), 9-31 dB over the fading chord, the
    loudest after its release."""
    end = beat_analysis.duration_s
    close = [Cut(round(end - 4.0 + 0.8 * i, 3), "hard", 0.6) for i in range(5)]
    cuts = [*(c for c in beat_analysis.cuts if c.time_s < end - 5.0), *close]
    # The last shot, its own segment, begins in the chord's ring.
    *segments, last = [s for s in beat_analysis.segments if s.start_s < end - 0.8]
    segments += [dataclasses.replace(last, end_s=close[-1].time_s),
                 dataclasses.replace(last, start_s=close[-1].time_s)]  # fmt: skip
    music = generator.generate(brief_for(beat_analysis, genre, cuts=cuts, segments=segments))
    final = music.plan.final_chord_s
    # Its section is the ending's, as the chord's is (it had been a "main" section of no
    # chords after the ending); shorter than timing.MIN_SECTION_BARS, it joins it.
    ringing = [s.role for s in music.plan.sections if s.end_s > final + 0.1]
    assert ringing == ["ending"], ringing
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    notes = [(n, i.is_drum) for i in song.instruments for n in i.notes]
    struck = max(n.velocity for n, _ in notes if abs(n.start - final) <= 0.01)
    after = [cut.time_s for cut in close if cut.time_s > final + 0.1]
    assert after, final
    loudest = []
    for cut in after:
        marks = [(n, drum) for n, drum in notes if abs(n.start - cut) <= ON_BEAT_S + 0.001]
        assert marks, (genre, cut)
        assert not any(drum and n.pitch in (35, 36) for n, drum in marks), (genre, cut)
        loudest.append(max(n.velocity for n, _ in marks))
    assert max(loudest) < struck, (struck, loudest)
    if len(loudest) >= 3:
        assert loudest[-1] < loudest[0], loudest


def test_a_cuts_chord_is_not_struck_again_within_a_flam(generator, beat_analysis):
    """At a cut's chord, no instrument strikes one of its pitches again within FLAM_S (60 ms):
    at a strong cut between beats, a pop piano's sixteenth 6 ms after the cut's chord had
    struck the chord again (a 6 ms note in the MIDI file, a doubled attack). The cuts here
    fall just before the grid's sixteenths."""
    from services.generator.backends.composer.arrangement import FLAM_S

    cuts = [dataclasses.replace(c, time_s=round(c.time_s - 0.006, 3), strength=0.9)
            for c in beat_analysis.cuts]  # fmt: skip
    doubled = []
    for genre, seed in itertools.product(STYLES, (1, 2)):
        brief = brief_for(beat_analysis, genre, seed=seed, cuts=cuts)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        pitched = [(score.plan.beat_time(n.start), n.instrument, n.pitch)
                   for n in score.notes if n.instrument != "drums"]  # fmt: skip
        for cut in cuts:
            at_the_cut = {(i, p) for at, i, p in pitched if abs(at - cut.time_s) <= 0.002}
            doubled += [(genre, seed, i, p, round(at, 3)) for at, i, p in pitched
                        if 0.002 < at - cut.time_s < FLAM_S and (i, p) in at_the_cut]  # fmt: skip
    assert not doubled, (len(doubled), doubled[:4])


def test_a_strum_crosses_its_strings_in_order_within_a_few_hundredths(generator, beat_analysis):
    """An acoustic guitar's downstroke sounds its strings low to high, an up-stroke its top
    strings high to low, each within 40 ms and no string twice: the strum had rolled over
    0.1 s (0.03 of a beat a string), heard as a harp's arpeggio, and each string's own timing
    offset, or its move under the tune, had put some out of order (a music review). Review
    5's 30 s clip."""
    segments, cuts = _shots(beat_analysis, CLIP_30_S)
    strums = []
    for seed in (1, 2):
        brief = brief_for(beat_analysis, "acoustic", seed=seed, duration_s=30.0,
                          segments=segments, cuts=cuts)  # fmt: skip
        guitar = _performed(generator.compose(brief, Heartbeat(lambda f: None)))
        strokes: list[list] = []
        for note in sorted(guitar.notes["acoustic-guitar"], key=lambda n: n.start_sample):
            if strokes and note.start_sample - strokes[-1][0].start_sample <= 0.06 * 48000:
                strokes[-1].append(note)
            else:
                strokes.append([note])
        strums += [[(n.start_sample, n.pitch) for n in s] for s in strokes if len(s) >= 3]
    assert len(strums) > 40
    spans_ms = [(strum[-1][0] - strum[0][0]) / 48.0 for strum in strums]
    assert max(spans_ms) <= 40.0, sorted(spans_ms)[-5:]
    pitches = [[pitch for _, pitch in strum] for strum in strums]
    ordered = [p for p in pitches if p in (sorted(set(p)), sorted(set(p), reverse=True))]
    assert len(ordered) == len(pitches), [p for p in pitches if p not in ordered][:5]
    assert any(p[0] > p[-1] and len(p) <= 3 for p in pitches)


def test_the_strummed_guitar_keeps_under_its_register_s_top(generator, beat_analysis):
    """Acoustic's guitar strums under the piano's tune: its open voicing had spread each chord
    two octaves up from its root and ignored its register's top (64), a root from F#3 sounding
    up to 73 (a third of its notes over 64, over 10% of the tune's notes in a busy piece). A
    string over the top plays an octave down, as a guitarist's shape up the neck: each
    downstroke still four strings or more, with the chord's third."""
    segments, cuts = _shots(beat_analysis, CLIP_30_S)
    over, thin, strokes = [], [], 0
    for seed in range(1, 5):
        brief = _busy(brief_for(beat_analysis, "acoustic", seed=seed, duration_s=30.0,
                                segments=segments, cuts=cuts))  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        high = score.style.register("comping")[1]
        final = score.arrangement.final
        players = score.roles.of("comping")
        by_onset: dict[float, list[int]] = {}
        for note in score.notes:
            # The pickup chord (before the first downbeat) is the pad's, the final the band's.
            if note.instrument in players and 0 <= note.start < final.start:
                by_onset.setdefault(note.start, []).append(note.pitch)
        over += [(seed, onset, p) for onset, ps in by_onset.items() for p in ps if p > high]
        for onset, pitches in by_onset.items():
            if up_stroke(onset):
                continue
            strokes += 1
            chord_ = next(s.chord for s in score.arrangement.harmony if s.start <= onset < s.end)
            third = (chord_.root + chord_.intervals[1]) % 12
            if len(pitches) < 4 or third not in {p % 12 for p in pitches}:
                thin.append((seed, onset, sorted(pitches)))
    assert strokes > 100
    assert not over, (len(over), over[:4])
    assert not thin, (len(thin), thin[:4])


# A fast montage's cuts (a music review's), 1.0-2.0 s apart over 29.83 s.
MONTAGE_CUTS_S = (1.633, 3.533, 5.3, 6.533, 7.833, 9.7, 10.7, 12.533, 14.333, 15.8, 17.1,
                  18.367, 19.633, 21.1, 22.6, 24.133, 26.133, 28.2)  # fmt: skip


def _marked_cuts(
    plan: timing.TimingPlan, cut_times: Sequence[float]
) -> Iterator[tuple[float, bool, bool]]:
    """Each cut as the arrangement marks it: its beat, whether it is strong (the first of a
    flurry) and whether it lies between beats."""
    from services.generator.backends.composer.arrangement import FLURRY_GAP_S

    previous = -FLURRY_GAP_S
    for time_s in cut_times:
        strong, previous = time_s - previous >= FLURRY_GAP_S, time_s
        beat = plan.beat_at(time_s)
        length = plan.beat_time(beat + 1) - plan.beat_time(beat)
        yield beat, strong, abs(beat - round(beat)) * length > ON_BEAT_S


def test_short_shots_make_sections_of_two_bars_at_least(generator, beat_analysis):
    """Each shot its own segment, in every genre: long shots around a burst of short ones
    (1.1-2 s), and a cut every 2.5 s. No section between the first (with its pickup) and
    the last (to the video's end) lasts under timing.MIN_SECTION_BARS (a section per one-bar
    segment had changed material and level bar by bar through a burst),
    a run of short shots is not one long section (joined to the section before, the 2.5 s
    video had been one 30 s section), and every cut is still struck at its time."""
    videos = {
        "burst": [8.0, 1.6, 1.2, 2.0, 1.4, 1.8, 1.1, 9.0, 6.0],
        "regular": [2.5] * 12,
    }
    for (name, gaps), genre in itertools.product(videos.items(), STYLES):
        times = [0.0, *itertools.accumulate(gaps)]
        segments, cuts = _shots(beat_analysis, times)
        brief = brief_for(beat_analysis, genre, seed=1, cuts=cuts, segments=segments,
                          duration_s=times[-1])  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan = score.plan
        bars = [s.beat_count / plan.meter.beats for s in plan.sections]
        # (The first counts its pickup; the last ends where the video does, mid-bar.)
        assert min(bars[1:-1]) >= timing.MIN_SECTION_BARS, (name, genre, bars)
        assert max(bars) <= 9, (name, genre, bars)
        onsets = np.array(sorted(plan.beat_time(n.start) for n in score.notes))
        for cut in cuts:
            assert np.min(np.abs(onsets - cut.time_s)) <= ON_BEAT_S + 0.001, (genre, cut)


def test_the_band_comes_in_and_stops_with_the_picture(generator, beat_analysis):
    """A fast montage, in every genre: a section whose cut lies less than HANDOVER_MIN_BEATS
    after its bar line strikes nothing from the bar line to the cut (its bass, chord and tune
    had come in up to half a beat before the picture, the cut's hit then striking the chord
    again), and before a strong cut between beats, where the drums stop, the players who
    stab at it (the chord's and the bass) stop too (a lo-fi chord and bass had been struck on
    the downbeat and again 73 ms later at the cut)."""
    from services.generator.backends.composer.arrangement import (
        CUT_STOP_BEATS,
        HANDOVER_MIN_BEATS,
    )

    end = 29.83
    # A segment of every third shot: sections of two bars or more (timing.MIN_SECTION_BARS).
    segments, _ = _shots(beat_analysis, (0.0, *MONTAGE_CUTS_S[2::3], end))
    cuts = [Cut(t, "hard", 0.9) for t in MONTAGE_CUTS_S]
    early, unstopped, checked = [], [], [0, 0]
    for genre, seed in itertools.product(STYLES, (1, 2, 3)):
        brief = brief_for(beat_analysis, genre, seed=seed, cuts=cuts, segments=segments,
                          duration_s=end)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, final = score.plan, score.plan.final_beat
        pitched = [n for n in score.notes if n.instrument not in score.roles.of("drums")]
        for form, section in zip(score.forms[1:], plan.sections[1:], strict=True):
            cut = plan.beat_at(section.cue_s)
            length = plan.beat_time(cut + 1) - plan.beat_time(cut)
            after = cut - form.start_beat
            if (
                after * length > ON_BEAT_S
                and after < HANDOVER_MIN_BEATS
                and (final is None or cut < final)
            ):
                checked[0] += 1
                bar_line = form.start_beat
                early += [(genre, seed, n.instrument, round(plan.beat_time(n.start), 3))
                          for n in pitched if bar_line - 1e-6 <= n.start < cut - 1e-6]  # fmt: skip
        if not score.roles.of("drums"):
            continue
        chord = [player for part in score.style.prompt_parts for player in score.roles.of(part)]
        stabbing = [*chord[:1], *score.roles.of("bass")[:1]]
        for beat, strong, between in _marked_cuts(plan, MONTAGE_CUTS_S):
            if not (strong and between) or (final is not None and beat >= final):
                continue
            checked[1] += 1
            unstopped += [(genre, seed, n.instrument, round(plan.beat_time(n.start), 3))
                          for n in pitched if n.instrument in stabbing
                          and beat - CUT_STOP_BEATS <= n.start < beat - 1e-6]  # fmt: skip
    assert checked[0] >= 10 and checked[1] >= 10, checked
    assert not early, (len(early), early[:4])
    assert not unstopped, (len(unstopped), unstopped[:4])


def test_a_lift_s_texture_comes_in_at_its_cut_before_its_bar_line(generator, beat_analysis):
    """The picture turns busiest at a cut half a bar or so before the bar line where the key
    lifts: the lifted section's texture takes over at the cut, and the tune before it stops
    there (the new chords may come in at the cut). It had waited for the bar line, the drop
    of a review's electronic piece coming a second after the picture. The tune comes in with
    the drop: a tone of the chord there, struck at the cut and held to the bar line (the drop
    had had no lead until the bar line, a second later)."""
    busy, calm = Look(0.7, 0.7, 0.6, 0.6), Look(0.3, 0.3, 0.3, 0.3)
    shape = [(0.0, 12.0, 0.6, busy), (12.0, 22.0, 0.5, busy), (22.0, 31.3, 0.1, calm),
             (31.3, 48.0, 0.95, busy)]  # fmt: skip
    segments = [Segment(a, b, energy, look, ["happy"]) for a, b, energy, look in shape]
    cuts = [Cut(t, "hard", 0.9) for t in (12.0, 22.0, 31.3)]
    checked = 0
    for genre, seed in itertools.product(("electronic", "pop"), (1, 2, 3)):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=48.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, forms, melody = score.plan, score.forms, set(score.roles.of("melody"))
        for index in range(1, len(forms)):
            cue = plan.beat_at(plan.sections[index].cue_s)
            bar_line = forms[index].start_beat
            if forms[index].key == forms[index - 1].key or not 0.5 <= bar_line - cue < 4:
                continue
            checked += 1
            assert score.arrangement.texture_starts[index] == pytest.approx(cue), (genre, seed)
            sounding = [n for n in score.notes if n.instrument in melody
                        and n.start < bar_line - 1e-6 and n.end > cue + 1e-3]  # fmt: skip
            assert all(n.start == pytest.approx(cue) for n in sounding), (genre, seed, sounding)
            [lead] = [n for n in sounding if n.instrument == score.roles.of("melody")[0]]
            chord_there = next(s for s in reversed(score.arrangement.harmony) if s.start <= cue)
            assert lead.pitch % 12 in chord_there.chord.pitch_classes, (genre, seed, lead)
            assert lead.end >= bar_line - 0.25, (genre, seed, lead, bar_line)
            # Held on over the bar line where the next bar's tune begins on its pitch, not
            # struck again there.
            again = [n for n in score.notes if n.instrument == lead.instrument
                     and n.pitch == lead.pitch and abs(n.start - bar_line) < 0.05]  # fmt: skip
            assert not again, (genre, seed, lead, again)
    assert checked >= 2, checked


@pytest.mark.parametrize("breakdown_s, from_the_cut", [((10.0, 20.0), False), ((16.0, 19.2), True)])
def test_electronic_s_band_swells_as_one_through_a_build(
    generator, beat_analysis, breakdown_s, from_the_cut
):
    """A busy shot, a calm one (ten seconds, or a bar and a half from a cut inside a bar),
    then the busiest: through the breakdown's build every sustained part's expression rises
    from the breakdown's level to the drop's without falling back (the long notes' swells and
    the build's ramp had been interleaved, a pad's expression jumping between the two every
    40 ms), and the tune gathers with the band (its accents had fallen through each bar of
    the build, 99 to 74); the drop lands at the level the build reached (its long notes had
    swelled in from 6 dB under it). After a breakdown heard for less than a bar before its last bar
    line, the build begins at the breakdown's cut (it had waited for that bar line, its rise
    a second long: a music review)."""
    look = Look(0.6, 0.6, 0.5, 0.5)
    calm, busy = breakdown_s
    shape = [(0.0, calm, 0.7), (calm, busy, 0.1), (busy, 30.0, 0.95)]
    segments = [Segment(a, b, energy, look, ["happy"]) for a, b, energy in shape]
    cuts = [Cut(t, "hard", 0.9) for t in (calm, busy)]
    for seed in (1, 2):
        brief = brief_for(beat_analysis, "electronic", seed=seed, duration_s=30.0,
                          segments=segments, cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, forms, arrangement = score.plan, score.forms, score.arrangement
        [(start, drop)] = arrangement.builds
        breakdown = next(i for i, f in enumerate(forms) if f.start_beat < drop <= f.end_beat)
        heard = arrangement.texture_starts[breakdown]
        # (The short breakdown comes in at its cut, mid-bar, a bar and a half before the drop.)
        expected = heard if from_the_cut else drop - 2 * plan.meter.beats
        assert heard != pytest.approx(drop - 2 * plan.meter.beats), seed
        assert start == pytest.approx(expected), (seed, start, heard, drop)
        performance = _performed(score)
        low_s, high_s = plan.beat_time(start), plan.beat_time(drop)
        swelling = [name for name in performance.controls if name in SUSTAINING]
        assert swelling, seed
        for name in swelling:
            levels = [c.value for c in performance.controls[name]
                      if c.controller == 11 and low_s <= c.sample / 48000 < high_s]  # fmt: skip
            assert levels == sorted(levels), (seed, name, levels)
            # (The drop lands at the level the build reached: no swell into it.)
            landing = [c.value for c in performance.controls[name] if c.controller == 11
                       and high_s <= c.sample / 48000 < high_s + 0.5]  # fmt: skip
            assert min(landing, default=127) >= levels[-1], (seed, name, landing)
            assert levels[0] <= EXPRESSION[forms[breakdown].intensity] + 1, (seed, name, levels)
            assert levels[-1] >= EXPRESSION[forms[breakdown + 1].intensity] - 3, (
                seed,
                name,
                levels,
            )
        tune = set(score.roles.of("melody"))
        middle = (start + drop) / 2
        struck = [n for n in score.notes if n.instrument in tune and start <= n.start < drop]
        halves = [[n.velocity for n in struck if (n.start >= middle) == late] for late in (0, 1)]
        assert all(halves), (seed, halves)
        assert np.mean(halves[1]) >= np.mean(halves[0]), (seed, halves)


def test_a_short_first_shot_is_the_intro_and_the_band_comes_in_on_the_first_cut(
    generator, beat_analysis
):
    """A first section of two or three bars that is the first shot is all intro: the tune
    comes in with the second section, on its cut or its bar line, not a bar into the first
    shot (after a one-bar intro the band and tune had come in a median 2.2 s before the
    picture changed, in 73 of 165 pieces on 15 and 30 s clips; in a first shot of three bars,
    3.3 s before, 8-12 LU louder where the picture did not change: music review 9)."""
    checked: Counter[int] = Counter()
    for bounds, genre, seed in itertools.product(
        (CLIP_15_S, CLIP_30_S, (0.0, 4.4, 9.0, 15.0), (0.0, 6.6, 10.2, 15.0)),
        ("electronic", "pop", "rock", "folk", "cinematic"),
        (1, 2, 3),
    ):
        segments, cuts = _shots(beat_analysis, bounds)
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=bounds[-1],
                          segments=segments, cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, first, second = score.plan, score.forms[0], score.forms[1]
        bars = [b for b in plan.bar_starts if first.start_beat <= b < first.end_beat]
        # The first shot alone (a section of merged short shots keeps a bar's intro).
        first_shot = abs(plan.sections[1].cue_s - bounds[1]) < 1e-6
        if first.role != "intro" or len(bars) not in (2, 3) or not first_shot:
            continue
        checked[len(bars)] += 1
        tune = set(score.roles.of("melody"))
        entry = min(n.start for n in score.notes if n.instrument in tune)
        band_in = min(second.start_beat, score.arrangement.texture_starts[1])
        assert entry >= band_in - 1e-6, (genre, seed, bounds[1], entry, band_in)
    assert checked[2] >= 10 and checked[3] >= 5, checked


@pytest.mark.parametrize("genre", ["hip-hop", "lo-fi"])
def test_the_chord_before_rings_on_to_a_cut_just_after_the_bar_line(generator, beat_analysis,
                                                                   genre):  # fmt: skip
    """A cut less than half a beat after a bar line brings the next section's players in on
    the cut; the notes the section before lets go on that bar line are held on to the cut:
    released there, nothing had sounded from the bar line to the cut (0.06-0.33 s at 16 of
    18 such cuts on 8-30 s clips; a music review heard the downbeat as missed)."""
    from services.generator.backends.composer.arrangement import HANDOVER_MIN_BEATS

    checked = 0
    for bounds, seed in itertools.product((CLIP_15_S, CLIP_30_S), (1, 2)):
        segments, cuts = _shots(beat_analysis, bounds)
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=bounds[-1],
                          segments=segments, cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, drums = score.plan, set(score.roles.of("drums"))
        pitched = [n for n in score.notes if n.instrument not in drums]
        for cut in bounds[1:-1]:
            beat = plan.beat_at(cut)
            bar_line = max(b for b in plan.bar_starts if b <= beat + 1e-6)
            if not 0.1 < beat - bar_line < HANDOVER_MIN_BEATS:
                continue
            checked += 1
            assert any(n.start < bar_line and n.end >= beat - 1e-6 for n in pitched), (
                seed, cut, sorted((n.instrument, n.start, n.end) for n in pitched
                                  if bar_line - 1 < n.end <= beat + 0.5))  # fmt: skip
    assert checked >= 2, checked


def test_a_cut_just_before_the_final_chord_is_marked_by_the_drums_alone(generator,
                                                                        beat_analysis):  # fmt: skip
    """A strong cut less than half a beat before the final chord's bar line is marked by its
    drums' hit, not by a stab of the band's: its stab had struck the chord before and the
    final chord a moment later on another (lo-fi's 8 s clip, the cut at 5.6 s: piano and
    bass at 110-113, then the final chord 0.2 s later; a music review)."""
    from services.generator.backends.composer.arrangement import HANDOVER_MIN_BEATS

    checked = 0
    for genre, seed in itertools.product(("lo-fi", "pop", "rock", "acoustic"), (1, 2, 3)):
        bounds = (0.0, 2.9, 5.6, 8.0)
        segments, cuts = _shots(beat_analysis, bounds)
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=bounds[-1],
                          segments=segments, cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        final = score.arrangement.final
        if final is None:
            continue
        drums = set(score.roles.of("drums"))
        for cut in bounds[1:-1]:
            beat = score.plan.beat_at(cut)
            if not 0.05 < final.start - beat < HANDOVER_MIN_BEATS:
                continue
            checked += 1
            stabs = [(n.instrument, n.pitch, round(n.start, 3)) for n in score.notes
                     if n.instrument not in drums
                     and beat - 0.01 <= n.start < final.start - 0.01]  # fmt: skip
            assert not stabs, (genre, seed, cut, final.start, stabs)
    assert checked >= 2, checked


def test_a_cut_just_before_a_bar_line_pushes_its_downbeat(generator, beat_analysis):
    """Cut-heavy videos, in every genre: where a cut that the band stabs at lies less than
    HANDOVER_MIN_BEATS before a bar line, the band strikes that bar line's downbeat at the
    cut, its bass on the bar line's root, and no player strikes again on the bar line (the
    cut's stab had struck the old chord and the bar line the new one a moment later: 67
    strikes twice at these 36 cuts; a music review had found 15 of 23 such cuts so)."""
    from services.generator.backends.composer.arrangement import HANDOVER_MIN_BEATS

    rng = np.random.default_rng(11)
    checked, twice, off_chord = 0, [], []
    for video in range(6):
        gaps = rng.uniform(1.2, 3.5, 30)
        times = np.cumsum(gaps)
        cut_times = [round(float(t), 3) for t in times if t < 29.0]
        end = 30.0
        segments, cuts = _shots(beat_analysis, (0.0, *cut_times, end))
        for genre in STYLES:
            brief = brief_for(beat_analysis, genre, seed=1, cuts=cuts, segments=segments,
                              duration_s=end)  # fmt: skip
            score = generator.compose(brief, Heartbeat(lambda f: None))
            plan, final = score.plan, score.plan.final_beat
            drums = score.roles.of("drums")
            pitched = [n for n in score.notes if n.instrument not in drums]
            harmony = score.arrangement.harmony
            for (beat, strong, between), time_s in zip(
                _marked_cuts(plan, cut_times), cut_times, strict=True
            ):
                bar_line = next((b for b in plan.bar_starts if b > beat + 1e-6), None)
                if (
                    not between
                    or (drums and not strong)
                    or bar_line is None
                    or bar_line - beat >= HANDOVER_MIN_BEATS
                    or (final is not None and bar_line >= final)
                ):
                    continue
                checked += 1
                at_cut = {n.instrument for n in pitched if abs(n.start - beat) < 1e-6}
                on_line = {n.instrument for n in pitched if abs(n.start - bar_line) < 1e-6}
                twice += [(genre, video, time_s, player) for player in at_cut & on_line]
                chord = next(span.chord for span in reversed(harmony)
                             if span.start <= bar_line + 1e-6)  # fmt: skip
                bass = {n.pitch % 12 for n in pitched if abs(n.start - beat) < 1e-6
                        and n.instrument in score.roles.of("bass")}  # fmt: skip
                if bass and bass != {chord.root}:
                    off_chord.append((genre, video, time_s, sorted(bass), chord.root))
    assert checked >= 20, checked
    assert not twice, (len(twice), twice[:4])
    assert not off_chord, (len(off_chord), off_chord[:4])


def test_the_genre_brings_its_band(generator, beat_analysis):
    brief = brief_for(beat_analysis, "rock")
    picture = ["piano", "pads", "woodwinds", "strings"]
    origins = [TagOrigin("instrument", i, "picture", 0.5) for i in picture]
    origins.append(TagOrigin("instrument", "brass", "user", 1.0))
    tags = dataclasses.replace(brief.tags, instruments=["brass", *picture], origins=origins)
    music = generator.generate(dataclasses.replace(brief, tags=tags))
    band = music.plan.instruments
    # Rock's core, the user's brass, and only the picture's colours rock admits.
    assert {"drums", "bass", "electric-guitar", "brass"} <= set(band)
    assert "pads" not in band and "woodwinds" not in band
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    played = {i.name for i in song.instruments if i.notes}
    assert {"drums", "bass", "electric-guitar", "brass"} <= played


@pytest.mark.parametrize("genre", ["ambient", "cinematic", "pop"])
def test_a_calm_piece_brings_in_its_whole_band(generator, beat_analysis, genre):
    """Every section at the lowest level (a calm picture): the instrument the user asked for
    plays throughout, and no part's player sits the piece out, ambient's pads and
    cinematic's strings (the genres' beds) least of all. They had played only the final
    chord, and the brass asked for with them. A part's second player (the picture's synth,
    beside cinematic's strings) is not brought in to double the first in unison: it had
    played every note of the string ostinato over the tune."""
    brief = brief_for(beat_analysis, genre)
    colours = [*brief.tags.instruments, "synth"]
    picture = [TagOrigin("instrument", i, "picture", 0.5) for i in colours]
    tags = dataclasses.replace(
        brief.tags,
        energy=0.2,
        instruments=["brass", *colours],
        origins=[TagOrigin("instrument", "brass", "user", 1.0), *picture],
    )
    calm = [dataclasses.replace(segment, energy=0.2) for segment in brief.segments]
    music = generator.generate(dataclasses.replace(brief, tags=tags, segments=calm))
    assert {section.intensity for section in music.plan.sections} == {1}  # the lowest
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    band = {i.name: i for i in song.instruments}
    assert set(band) == set(music.plan.instruments) and "brass" in band
    final = music.plan.final_chord_s
    for name, instrument in band.items():
        # Heard from its first bars on, not only in the final chord.
        before = [n.start for n in instrument.notes if n.start < final - 0.05]
        assert before and min(before) < brief.duration_s / 3, (genre, name, before[:3])
    if genre == "cinematic" and "synth" in band:
        # The second player of the strings' ostinato.
        strings, synth = ({(round(n.start / 0.05), n.pitch % 12) for n in band[name].notes}
                          for name in ("strings", "synth"))  # fmt: skip
        assert len(strings & synth) < 0.9 * len(synth)


def _notes(music) -> set[tuple[float, int, bool]]:
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    return {(round(n.start / 0.05), n.pitch, i.is_drum) for i in song.instruments for n in i.notes}


def test_two_genres_never_render_the_same_piece(composed):
    pieces = {g: composed(g, 3) for g in STYLES}
    notes = {g: _notes(m) for g, m in pieces.items()}
    for a, b in itertools.combinations(STYLES, 2):
        assert not np.array_equal(pieces[a].audio, pieces[b].audio)
        overlap = len(notes[a] & notes[b]) / min(len(notes[a]), len(notes[b]))
        # At most a fifth of their notes, even where two genres settle on one tempo map
        # (benchmarks/bench_music.py prints every pair over seven videos and two seeds).
        assert overlap <= 0.2, (a, b, overlap)
        assert pieces[a].plan.instruments != pieces[b].plan.instruments or (
            pieces[a].plan.bpm != pieces[b].plan.bpm
        )


def test_seeds_in_turn_are_other_takes_in_other_keys_and_tempos(generator, beat_analysis):
    """Candidates are seeds in turn: each of four takes its own key of the genre's four, and
    where the cuts fit another tempo as well (every cut still on a beat), a seed plays it.
    Seeds 0, 2 and 3 had drawn one key, and every seed had played one tempo map."""
    keys = {generator.generate(brief_for(beat_analysis, "pop", seed=s)).plan.key
            for s in range(4)}  # fmt: skip
    assert len(keys) == 4, keys
    takes = [generator.generate(brief_for(beat_analysis, "cinematic", seed=s)).plan
             for s in range(2)]  # fmt: skip
    assert abs(math.log(takes[0].bpm / takes[1].bpm)) >= 0.04, [t.bpm for t in takes]
    for plan in takes:
        assert plan.alignment.on_beat_count == plan.alignment.cut_count


def _drum_strokes(generator, beat_analysis, genre: str, seeds: range) -> list[set]:
    """Each seed's drum strokes, (beat, key), as the composer writes them."""
    strokes = []
    for seed in seeds:
        notes = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None)).notes  # fmt: skip
        strokes.append({(n.start, n.pitch) for n in notes if n.instrument == "drums"})
    return strokes


def test_seeds_in_turn_play_other_grooves(generator, beat_analysis):
    """Twelve seeds in turn (candidates) of a groove-led genre: most pairs play other drums
    (at most a third of the 66 pairs share over 80% of their (onset, drum) strokes), and no
    two of the first four play the very same drums. With two grooves a level, which each seed
    alternated, two of electronic's first four had. (With three grooves a level, four seeds
    share one at a level: some pairs of four may sound alike where one level holds most of
    the piece.)"""
    for genre in ("electronic", "pop"):
        drums = _drum_strokes(generator, beat_analysis, genre, range(12))
        alike = [len(a & b) / len(a | b) > 0.8 for a, b in itertools.combinations(drums, 2)]
        assert sum(alike) <= len(alike) / 3, (genre, sum(alike))
        assert all(a != b for a, b in itertools.combinations(drums[:4], 2)), genre


def test_another_seed_seldom_plays_the_same_drums_throughout(generator, beat_analysis):
    """Eight seeds in every genre with drums: few pairs play the very same drums from the
    first bar to the last. One draw had chosen the grooves of every level, so seeds drawn a
    multiple of the level's count of grooves apart played the same drums throughout: 9 of
    the 308 pairs here (orchestral 5, cinematic 2); 4 now."""
    same = []
    for genre in STYLES:
        drums = _drum_strokes(generator, beat_analysis, genre, range(1, 9))
        same += [(genre, a, b) for (a, one), (b, other) in itertools.combinations(
                 enumerate(drums, 1), 2) if one and one == other]  # fmt: skip
    assert len(same) <= 5, same


def test_seeds_vary_harmony_and_groove_not_only_the_tune(composed):
    plans = [composed("pop", s).plan for s in range(4)]
    progressions = {tuple(c for s in p.sections for c in s.chords) for p in plans}
    assert len(progressions) >= 3


def test_a_short_video_is_a_complete_little_piece(generator, beat_analysis):
    brief = brief_for(
        beat_analysis,
        "pop",
        duration_s=4.0,
        cuts=[Cut(2.1, "hard", 0.7)],
        segments=[dataclasses.replace(beat_analysis.segments[0], start_s=0.0, end_s=4.0)],
    )
    music = generator.generate(brief)
    plan = music.plan
    assert plan.ending == "cadence"
    tonic = "I" if plan.key.endswith("major") else "i"
    assert plan.sections[-1].chords[-1] == tonic
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    drums = next(i for i in song.instruments if i.name == "drums")
    # A groove from the first beat, a melody, and a last chord inside the clip.
    assert min(n.start for n in drums.notes) == 0.0
    assert len(drums.notes) >= 8
    melody = next(i for i in song.instruments if i.name == "synth")
    assert len(melody.notes) >= 3
    assert plan.final_chord_s <= 4.0 - 0.5


def test_form_intro_intensity_and_ending(composed, beat_analysis):
    music = composed("electronic")
    plan = music.plan
    assert plan.sections[0].role == "intro"
    assert plan.ending == "cadence"
    tonic = "I" if plan.key.endswith("major") else "i"
    assert plan.sections[-1].chords[-1] == tonic
    assert plan.sections[-1].chords[-2] == "V"
    # The final chord rings out inside the piece: silence only in the last moments.
    final = plan.final_chord_s
    assert final <= beat_analysis.duration_s - 1.2
    tail = music.audio[int(final * 44100) :]
    assert np.abs(tail[: 44100 // 2]).max() > 0.05
    # Intensity follows segment energy.
    energies = [s.energy for s in plan.sections]
    intensities = [s.intensity for s in plan.sections]
    assert intensities[int(np.argmax(energies))] >= intensities[int(np.argmin(energies))]


@pytest.mark.parametrize("genre", ["ambient", "orchestral"])
def test_the_final_chord_rings_out_to_silence(composed, genre):
    """In a hall, the final chord still rings when the video ends: its tail is faded to
    silence, not cut (the last 50 ms had lain 15 to 22 dB under the piece's loudest)."""
    music = composed(genre)
    assert music.plan.ending == "cadence"
    assert _end_under_loudest_db(music, window_s=0.4, end_s=0.05) <= -40.0


def _end_under_loudest_db(music, window_s: float, end_s: float) -> float:
    """The level of the last `end_s` of the piece under its loudest `window_s`, dB."""
    rate = music.sample_rate
    mono = music.audio.mean(axis=1).astype(np.float64)
    window = round(window_s * rate)
    loudest = max(
        np.sqrt(np.mean(mono[i : i + window] ** 2)) for i in range(0, len(mono) - window, window)
    )
    last = np.sqrt(np.mean(mono[-round(end_s * rate) :] ** 2))
    return float(20 * np.log10(max(last, 1e-9) / loudest))


def test_busier_sections_have_more_parts(composed):
    plan = composed("pop").plan
    by_intensity: dict[int, int] = {}
    for section in plan.sections[1:]:
        by_intensity[section.intensity] = max(
            by_intensity.get(section.intensity, 0), len(section.instruments)
        )
    levels = sorted(by_intensity)
    assert by_intensity[levels[-1]] >= by_intensity[levels[0]]


def test_voice_leading_moves_little():
    key = Key.parse("C major")
    previous = None
    moves = []
    for numeral in ["I", "V", "vi", "IV", "I", "V", "vi", "IV"]:
        current = voice(chord(numeral, key), previous, 52, 76)
        if previous is not None:
            moves.append(
                sum(abs(a - b) for a, b in zip(sorted(current), sorted(previous), strict=True))
            )
        previous = current
    # Root-position jumping would move about 15 semitones per change.
    assert max(moves) <= 5


@pytest.mark.parametrize("genre", list(STYLES))
def test_every_genre_composes(composed, beat_analysis, genre):
    music = composed(genre)
    assert music.plan.genre == genre
    total = round(beat_analysis.duration_s * 44100)
    assert music.audio.shape == (total, 2)
    assert music.audio.dtype == np.float32
    assert np.abs(music.audio).max() > 0.05


def test_same_seed_same_music_different_seed_different(generator, beat_analysis):
    first = generator.generate(brief_for(beat_analysis, "acoustic", seed=7))
    again = generator.generate(brief_for(beat_analysis, "acoustic", seed=7))
    other = generator.generate(brief_for(beat_analysis, "acoustic", seed=8))
    assert np.array_equal(first.audio, again.audio)
    assert first.midi == again.midi
    assert not np.array_equal(first.audio, other.audio)
    assert first.midi != other.midi


@pytest.mark.parametrize(("duration", "rate"), [(2.0, 48000), (2.3456, 44100), (61.03, 48000)])
def test_length_is_exact(generator, beat_analysis, duration, rate):
    # The video's timeline cut to (or its last segment held for) the length.
    brief = brief_for(beat_analysis, "folk", duration_s=duration, sample_rate=rate)
    music = generator.generate(brief)
    assert len(music.audio) == round(duration * rate)


def test_negative_tags_remove_what_they_name(generator, beat_analysis):
    brief = brief_for(beat_analysis, "rock", negative=["drums"])
    brief = dataclasses.replace(
        brief,
        tags=dataclasses.replace(
            brief.tags, instruments=[i for i in brief.tags.instruments if i != "drums"]
        ),
    )
    music = generator.generate(brief)
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    assert not any(instrument.is_drum for instrument in song.instruments)
    assert "drums" not in music.plan.instruments


def test_midi_has_a_track_per_instrument_and_the_plan_tempo(generator, beat_analysis, monkeypatch):
    # The stems sum to the mix the bus receives: with the bus's compressor at 1:1, that is
    # the piece.
    style = STYLES["corporate"]
    production = dataclasses.replace(style.production, bus_compression=(0.0, 1.0))
    monkeypatch.setitem(STYLES, "corporate", dataclasses.replace(style, production=production))
    music = generator.generate(brief_for(beat_analysis, "corporate", stems=True))
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    names = {instrument.name for instrument in song.instruments}
    assert names == set(music.plan.instruments)
    drums = next(i for i in song.instruments if i.name == "drums")
    assert drums.is_drum
    # pretty_midi's beat grid, from the tempo map in the file, is the plan's.
    beats = song.get_beats()
    common = min(len(beats), len(music.plan.beats_s))
    assert common >= len(music.plan.beats_s) - 4  # pretty_midi stops at the last note
    assert np.allclose(beats[:common], music.plan.beats_s[:common], atol=2e-3)
    # Stems: one per instrument, summing to the mix (before the bus).
    assert set(music.stems) == set(music.plan.instruments)
    assert np.allclose(sum(music.stems.values()), music.audio, atol=1e-5)


def test_writing_the_midi_file_hears_a_cancel(generator, beat_analysis):
    """A two-hour piece's file takes seconds to write: a cancel is heard while the notes are
    turned into messages and between the tracks written, wherever it comes."""
    score = generator.compose(brief_for(beat_analysis, "pop"), Heartbeat(lambda f: None))
    by_instrument: dict[str, list] = {}
    for note in score.notes:
        by_instrument.setdefault(note.instrument, []).append(note)
    tracks = [Track(name, 0, channel, 100, 64) for channel, name in enumerate(by_instrument)]

    def write(heartbeat) -> bytes:
        return midi_bytes(by_instrument, score.plan, tracks, [], {}, heartbeat)

    calls: list[int] = []
    whole = write(lambda: calls.append(1))
    assert pretty_midi.PrettyMIDI(io.BytesIO(whole)).instruments
    # The last heartbeat comes as the last track is written.
    for cancel_at in (1, len(calls) // 2, len(calls)):
        heartbeat, heard = cancelling_at(cancel_at)
        with pytest.raises(CancelledError):
            write(heartbeat)
        assert len(heard) == cancel_at
    assert len(calls) > len(score.notes) + len(tracks)


def test_the_progress_a_piece_reports_never_goes_back(generator, beat_analysis, monkeypatch):
    """With every heartbeat passed on (none held back by time), the planning, the parts, the
    mix, the headroom and the MIDI file report in that order, and the last report is the
    whole. (The MIDI file's heartbeats used to repeat the planning's 0.05 after the mix had
    reported 1.0: a client's progress bar went back from the end to the start.)"""
    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    fractions: list[float] = []
    generator.generate(brief_for(beat_analysis, "pop", duration_s=20.0), fractions.append)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    # Each of the mix's 20 blocks reports its own fraction.
    assert len(set(fractions)) > 20


@pytest.mark.parametrize("genre", ["hip-hop", "lo-fi"])
def test_the_midi_file_carries_the_mixs_balance_and_pan(composed, generator, beat_analysis,
                                                         genre):  # fmt: skip
    """Each track starts with the volume and pan the mix gave its part, so a General MIDI
    player with the same bank hears the band near the levels the mix set (without the mix's
    processing, which moves a part by a few LU). At one volume each, the presets' own
    loudness decided: hip-hop's piano lay 18 LU over its level, lo-fi's plucks 14 under."""
    import pyloudnorm

    rate = 44100
    song = pretty_midi.PrettyMIDI(io.BytesIO(composed(genre).midi))
    roles = generator.compose(brief_for(beat_analysis, genre), Heartbeat(lambda f: None)).roles
    meter = pyloudnorm.Meter(rate)
    asked = balance.levels(STYLES[genre].production, roles, [t.name for t in song.instruments])
    off = {}
    for track in song.instruments:
        first = {c.number: c.value for c in track.control_changes if c.time == 0.0}
        # The tune in the middle; the others at their distance from it, on either side.
        pan = PANS[track.name]
        placed = {64} if track.name in roles.of("melody") else {pan, min(128 - pan, 127)}
        assert first[CC_PAN] in placed, (track.name, first[CC_PAN])
        assert 1 <= first[CC_VOLUME] <= 100
        # pretty_midi plays a track into one channel: centred, it is heard whole (on a 16-bit
        # scale: only the differences between tracks count).
        track.control_changes = [c for c in track.control_changes if c.number != CC_PAN]
        heard = meter.integrated_loudness(track.fluidsynth(rate, str(generator.bank.path)))
        off[track.name] = heard - asked[track.name]
    # Lo-fi's drums are raised to be heard at their level through the bus's saturation,
    # which a MIDI player lacks (lo-fi's parts lie 8.0 LU apart in it).
    assert max(off.values()) - min(off.values()) <= 9.0, off


@pytest.mark.parametrize("key", ["D minor", "Eb major", "F# minor"])
def test_midi_carries_the_key_signature(generator, beat_analysis, key):
    brief = brief_for(beat_analysis, "pop", key_is_fixed=True)
    brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, key=key))
    music = generator.generate(brief)
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))

    # pretty_midi numbers keys 0-11 major, 12-23 minor, by the tonic's pitch class.
    def number(name: str) -> int:
        parsed = Key.parse(name)
        return parsed.tonic + (12 if parsed.mode == "minor" else 0)

    keys = [section.key for section in music.plan.sections]
    changes = [k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    assert keys[0] == key
    assert [k.key_number for k in song.key_signature_changes] == [number(k) for k in changes]
    assert song.key_signature_changes[0].time == 0.0


def test_stems_only_when_asked(composed):
    assert composed("pop").stems == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bpm", 20.0, "outside 30..300"),
        ("genres", ["polka"], "valid: ambient"),
        ("moods", ["grumpy"], "unknown mood grumpy"),
        ("instruments", ["kazoo"], "unknown instrument kazoo"),
        ("key", "H major", "bad key"),
    ],
)
def test_bad_briefs_are_refused(generator, beat_analysis, field, value, message):
    brief = brief_for(beat_analysis, "pop")
    brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, **{field: value}))
    with pytest.raises(InvalidInputError, match=message):
        generator.generate(brief)


@pytest.mark.parametrize(
    ("duration", "rate", "message"),
    [
        (0.0, 48000, "outside 0 < duration"),
        (7200.5, 48000, "outside 0 < duration"),
        (10.0, 22050, "sample rate 22050"),
    ],
)
def test_bad_lengths_and_rates(generator, beat_analysis, duration, rate, message):
    with pytest.raises(InvalidInputError, match=message):
        generator.generate(brief_for(beat_analysis, "pop", duration_s=duration, sample_rate=rate))


def test_instruments_are_spread_in_stereo(generator, beat_analysis):
    music = generator.generate(brief_for(beat_analysis, "acoustic", stems=True))
    left, right = music.stems["acoustic-guitar"].T
    assert np.sqrt(np.mean(left**2)) > 1.2 * np.sqrt(np.mean(right**2))  # panned left
    assert not np.allclose(music.audio[:, 0], music.audio[:, 1])


def test_melody_repeats_its_motif(composed, beat_analysis):
    music = composed("pop")
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    melody = next(i for i in song.instruments if i.name == "synth")
    beats = np.array(music.plan.beats_s)
    bars = [*music.plan.bars_s, beat_analysis.duration_s]
    rhythms = []
    for start, end in itertools.pairwise(bars):
        onsets = [n.start for n in melody.notes if start - 1e-3 <= n.start < end - 1e-3]
        positions = tuple(
            round(
                float(np.interp(t, beats, np.arange(len(beats))))
                - float(np.interp(start, beats, np.arange(len(beats)))),
                2,
            )
            for t in onsets
        )
        if len(positions) > 1:
            rhythms.append(positions)
    # Music, not random notes: bars reuse a few rhythms (the motif and its variations).
    assert len(rhythms) >= 6
    assert len(set(rhythms)) <= len(rhythms) / 2


def _tunes(generator, analysis):
    """Each genre's tune on the video, seeds 1-3: (its first player's notes in order, beats a
    bar, the first downbeat)."""
    for genre, seed in itertools.product(STYLES, (1, 2, 3)):
        score = generator.compose(brief_for(analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        tune = score.roles.of("melody")[0]
        notes = sorted((n for n in score.notes if n.instrument == tune), key=lambda n: n.start)
        yield notes, score.plan.meter.beats, score.plan.first_downbeat


def test_the_motif_comes_back_in_its_shape(generator, beat_analysis):
    """Bars of the tune that share a rhythm (the motif, its sequence a step higher, its
    returns) mostly share their shape too (up, down or the same from note to note): 78% of
    them over every genre and three seeds (83% where a bar could start by any leap to fit).
    A bar begun near the edge of the register had turned back there, the sequence had varied
    another step than the motif, and a strong beat's chord tone had been the nearest even
    back across the note before: 62%."""
    kept = total = 0
    for tune, bar_beats, first in _tunes(generator, beat_analysis):
        bars: dict[int, list[Note]] = {}
        for note in tune:
            bars.setdefault(int((note.start - first) // bar_beats), []).append(note)
        shapes: dict[tuple[float, ...], list[tuple[int, ...]]] = {}
        for notes in bars.values():
            rhythm = tuple(round((n.start - first) % bar_beats, 2) for n in notes)
            if len(rhythm) >= 3:
                steps = tuple(int(np.sign(b.pitch - a.pitch)) for a, b in
                              itertools.pairwise(notes))  # fmt: skip
                shapes.setdefault(rhythm, []).append(steps)
        for group in shapes.values():
            if len(group) >= 2:
                kept += Counter(group).most_common(1)[0][1]
                total += len(group)
    assert total >= 200 and kept / total >= 0.75, (kept, total)


def test_a_bar_of_the_tune_starts_within_a_fifth_of_the_note_before(generator, beat_analysis):
    """A tune bar starts where its contour fits the register, but not by a leap a singer would
    not take: within a phrase (notes less than a bar apart) no bar starts more than a fifth from
    the note before, and leaps over a fifth are under 1% of all. Taken wherever the contour
    fitted, 57 of 639 bars had started by a leap over a fifth (11 by an octave, one by an
    octave and a fourth): 2% of all steps."""
    starts = leaps = steps = 0
    for tune, bar_beats, first in _tunes(generator, beat_analysis):
        for a, b in itertools.pairwise(tune):
            if b.start - a.start >= bar_beats:
                continue
            leap = abs(b.pitch - a.pitch) > 7
            steps += 1
            leaps += leap
            at_bar = math.isclose((b.start - first) % bar_beats, 0.0, abs_tol=1e-6)
            starts += leap and at_bar
    assert steps >= 1000 and starts == 0 and leaps / steps < 0.01, (starts, leaps, steps)


def test_a_second_tune_player_doubles_the_tune_at_the_unison(generator, beat_analysis):
    """Folk's fiddle and whistle (strings and woodwinds) play the tune together in its busiest
    bars, note for note. Each had composed its bar from where the other ended, and met the
    tune at the unison or octave on only 76% of their shared onsets (seconds and sevenths on
    2%)."""
    doubled = 0
    for seed in range(1, 7):
        score = generator.compose(brief_for(beat_analysis, "folk", seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        first, *others = score.roles.of("melody")
        tune = {(n.start, n.pitch) for n in score.notes if n.instrument == first}
        for note in score.notes:
            if note.instrument in others:
                assert (note.start, note.pitch) in tune, (seed, note)
                doubled += 1
    assert doubled >= 100


# Rock's guitar plays the tune and strums the chords, so its tune cannot be told apart.
@pytest.mark.parametrize("genre", [g for g in STYLES if g != "rock"])
def test_the_tune_stays_in_its_key_and_its_register(generator, beat_analysis, genre):
    """A tune that meets the edge of its register turns back in the key: every melody note
    lies in the style's range (or its instrument's) and in its section's scale or the chord
    under it (a borrowed chord's tone). Clamped to the edge, it had sat on a note outside the
    key (E over B-flat major) for bars at a time."""
    style = STYLES[genre]
    low, high = style.melody_range
    for seed in range(1, 5):
        score = generator.compose(
            brief_for(beat_analysis, genre, seed=seed), Heartbeat(lambda f: None)
        )
        players = [p for p in score.roles.of("melody") if score.roles.parts_of(p) == ["melody"]]
        tune = [n for n in score.notes if n.instrument in players]
        # An instrument with a range of its own may play the tune an octave away (a whistle).
        free = [n for n in tune if style.program(n.instrument) not in PLAYABLE]
        assert tune and all(low <= n.pitch <= high for n in free), seed
        strays = []
        for note in tune:
            form = next(f for f in score.forms if f.start_beat <= note.start < f.end_beat)
            span = _span_at(score, note.start)
            under = span.chord.pitch_classes if span else ()
            if note.pitch % 12 not in {*form.key.scale, *under}:
                strays.append((note.start, note.pitch))
        assert not strays, (seed, strays)


@pytest.mark.parametrize("genre", list(STYLES))
def test_the_cadence_keeps_its_whole_bar(generator, beat_analysis, genre):
    """The chord before the final tonic holds until the final downbeat: a strong cut in that
    bar is marked, but does not pull the tonic forward (it had arrived a beat or two early
    and was struck again on the downbeat)."""
    for seed in range(1, 5):
        score = generator.compose(
            brief_for(beat_analysis, genre, seed=seed), Heartbeat(lambda f: None)
        )
        final = score.plan.final_beat
        assert final is not None
        before = [s for s in score.arrangement.harmony if s.start < final]
        assert before[-1].end == final, (seed, before[-1])
        assert before[-1].numeral not in ("I", "i"), (seed, before[-1])


@pytest.mark.parametrize("genre", list(STYLES))
def test_every_instrument_plays_inside_its_range(generator, beat_analysis, genre):
    """Whichever instrument the genre casts is asked for (and so which part it takes), it
    plays only notes its instrument has (styles.PLAYABLE): woodwinds asked of cinematic took
    the pad, and its flute played down to D2."""
    style = STYLES[genre]
    cast = list(dict.fromkeys(i for players in style.casting.values() for i in players))
    brief = brief_for(beat_analysis, genre, seed=1)
    checked = set()
    for asked in [i for i in cast if i not in style.core]:
        tags = dataclasses.replace(brief.tags, instruments=[*style.core, asked])
        score = generator.compose(dataclasses.replace(brief, tags=tags), Heartbeat(lambda f: None))
        for instrument in score.band:
            playable = PLAYABLE.get(style.program(instrument)) if instrument != "drums" else None
            pitches = [n.pitch for n in score.notes if n.instrument == instrument]
            if playable is None or not pitches:
                continue
            assert playable[0] <= min(pitches) and max(pitches) <= playable[1], (
                asked, instrument, min(pitches), max(pitches), playable
            )  # fmt: skip
            checked.add(instrument)
    assert checked or not any(PLAYABLE.get(style.program(i)) for i in cast if i != "drums")


def test_cuts_packed_closer_than_a_tenth_of_a_second_are_one_event(generator, beat_analysis):
    """Four hundred weaker cuts packed into the 80 ms after each of the video's cuts change
    nothing: the music meets each cluster once, at its strongest cut (4,000 cuts in half a
    second had taken a minute to plan and starved other callers)."""
    brief = brief_for(beat_analysis, "pop", seed=1)
    packed = [
        Cut(cut.time_s + 0.001 + 0.079 * k / 400, cut.kind, max(0.0, cut.strength - 0.1))
        for cut in brief.cuts
        for k in range(400)
    ]
    dense = dataclasses.replace(brief, cuts=sorted([*brief.cuts, *packed], key=lambda c: c.time_s))
    alone = generator.compose(brief, Heartbeat(lambda f: None))
    crowded = generator.compose(dense, Heartbeat(lambda f: None))
    assert len(dense.cuts) == 401 * len(brief.cuts) > 401
    assert crowded.plan.beats_s == alone.plan.beats_s
    assert crowded.notes == alone.notes


def test_swing_delays_the_second_sixteenth_of_each_eighth():
    """Swung, the second sixteenth of each eighth comes late (as a drum machine swings) and
    the eighths stay straight: long, short, long, short. Swung by the eighth, the sixteenths
    had limped (0, 0.25, 0.66, 0.83 of the beat)."""
    from services.generator.backends.composer.arrangement import swung

    assert [swung(b, 0.0) for b in (0.25, 0.5, 0.75)] == [0.25, 0.5, 0.75]
    steps = [swung(3 + k / 4, 0.16) for k in range(5)]
    assert steps == pytest.approx([3.0, 3.33, 3.5, 3.83, 4.0])
    gaps = np.diff(steps)
    assert gaps[0] == pytest.approx(gaps[2]) and gaps[1] == pytest.approx(gaps[3])
    assert gaps[0] > gaps[1]


@pytest.mark.parametrize("genre", ["hip-hop", "lo-fi"])
def test_swung_genres_play_no_flams(generator, beat_analysis, genre):
    """In a swung groove no two strokes of the drums, and no two notes of one part, fall
    closer than half a sixteenth apart, unless they are struck together (or one marks a cut,
    at its exact time)."""
    score = generator.compose(brief_for(beat_analysis, genre, seed=3), Heartbeat(lambda f: None))
    cuts = list(score.arrangement.cut_hits)
    for instrument in score.band:
        played = [n.start for n in score.notes if n.instrument == instrument]
        onsets = sorted({round(b, 6) for b in played if min(abs(b - c) for c in cuts) > 0.01})
        gaps = np.diff(onsets)
        assert gaps.size and gaps.min() >= 0.125, (instrument, onsets[int(np.argmin(gaps))])


def test_bass_plays_the_chord_roots(composed):
    # Folk does not lift the key, so every chord is in the plan's key.
    music = composed("folk")
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    bass = next(i for i in song.instruments if i.name == "bass")
    key = Key.parse(music.plan.key)
    numerals = [numeral for section in music.plan.sections for numeral in section.chords]
    checked = 0
    for bar_start, numeral in zip(music.plan.bars_s, numerals, strict=False):
        first = [n for n in bass.notes if abs(n.start - bar_start) < 0.01]
        if first:
            assert first[0].pitch % 12 == chord(numeral, key).root
            checked += 1
    assert checked >= len(numerals) // 2


def test_a_configured_soundfont_replaces_the_default(tmp_path, beat_analysis, capfd):
    from services.config import ComposerConfig
    from services.generator.backends.composer.backend import ComposerGenerator
    from services.generator.backends.composer.bank import timgm6mb
    from services.generator.backends.composer.render import RenderError

    copy = tmp_path / "mine.sf2"
    copy.write_bytes(timgm6mb().read_bytes())
    mine = ComposerGenerator(ComposerConfig(soundfont_path=copy))
    assert mine.describe().sound == "mine.sf2 with fluidsynth"
    music = mine.generate(brief_for(beat_analysis, "pop", duration_s=5.0))
    assert np.abs(music.audio).max() > 0.05
    broken = tmp_path / "broken.sf2"
    for text in (b"RIFF not really", b"hello\n", timgm6mb().read_bytes()[:4096]):
        broken.write_bytes(text)
        with pytest.raises(RenderError, match="not a usable SoundFont"):
            ComposerGenerator(ComposerConfig(soundfont_path=broken))
    # Refused before FluidSynth reads it: it had printed its own errors first.
    captured = capfd.readouterr()
    assert "fluidsynth" not in captured.err.lower() and "CRITICAL" not in captured.err
    with pytest.raises(RenderError, match=r"cannot read SoundFont .*: no such file"):
        ComposerGenerator(ComposerConfig(soundfont_path=tmp_path / "missing.sf2"))
    # A folder had been called "no such file" too.
    (tmp_path / "bank.sf2").mkdir()
    with pytest.raises(RenderError, match=r"cannot read SoundFont .*: a folder, not a file"):
        ComposerGenerator(ComposerConfig(soundfont_path=tmp_path / "bank.sf2"))


def test_form_follows_the_video_returns_and_a_lift(generator, beat_analysis):
    """Segments that look like the opening bring back its material; the strongest late turn
    lifts the key; the plan says so (meter, section keys and material)."""
    opening, other = Look(0.3, 0.4, 0.4, 0.5), Look(0.8, 0.8, 0.7, 0.6)
    turn = Look(0.95, 0.1, 0.1, 0.9)
    # The tense, dark section lasts long enough (over MODE_CHANGE_MIN_BARS) to take the
    # parallel key.
    spans = [(0.0, 8.0, opening, 0.3), (8.0, 16.0, other, 0.4), (16.0, 24.0, opening, 0.3),
             (24.0, 48.0, turn, 0.9), (48.0, 56.0, turn, 0.9)]  # fmt: skip
    moods = [["happy"], ["happy"], ["happy"], ["tense", "dark"], ["happy"]]
    segments = [
        Segment(a, b, energy, look, mood)
        for (a, b, look, energy), mood in zip(spans, moods, strict=True)
    ]
    cuts = [Cut(a, "hard", 0.8) for a, *_ in spans[1:]]
    brief = brief_for(beat_analysis, "pop", duration_s=56.0, segments=segments, cuts=cuts)
    music = generator.generate(brief)
    plan = music.plan
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    signature = song.time_signature_changes[-1]
    assert plan.meter == f"{signature.numerator}/{signature.denominator}"
    materials = [s.material for s in plan.sections]
    assert materials[:3] == ["A", "B", "A"]
    # The return starts as the opening did.
    assert plan.sections[2].chords[0] == plan.sections[0].chords[0]
    # The turn at 24 s lifts the key a whole step, to the end; the tense, dark section there
    # takes the parallel minor, the last comes home to the major.
    base = Key.parse(plan.key)
    assert base.mode == "major"
    turned, last = Key.parse(plan.sections[3].key), Key.parse(plan.sections[-1].key)
    assert (turned.tonic - base.tonic) % 12 == 2 and turned.mode == "minor"
    assert (last.tonic - base.tonic) % 12 == 2 and last.mode == "major"
    assert all(s.key == plan.key for s in plan.sections[:3])
    # The lifted key comes in from its own dominant seventh (the bar before had gone
    # straight on to the new key, a tritone's root move at times).
    into = chord(plan.sections[2].chords[-1], Key.parse(plan.sections[2].key))
    assert into.intervals == (0, 4, 7, 10) and into.root == (turned.tonic + 7) % 12
    # A user's key holds throughout: no lift, no parallel key.
    fixed = generator.generate(dataclasses.replace(brief, key_is_fixed=True)).plan
    assert fixed.key == brief.tags.key
    assert {s.key for s in fixed.sections} == {fixed.key}
    # Four bars of it would be a trip into another cue: the mode stays (3-7 bar trips had).
    short = [*segments[:3], dataclasses.replace(segments[3], end_s=32.0),
             dataclasses.replace(segments[4], start_s=32.0, end_s=40.0)]  # fmt: skip
    brief = brief_for(beat_analysis, "pop", duration_s=40.0, segments=short,
                      cuts=[Cut(a, "hard", 0.8) for a in (8.0, 16.0, 24.0, 32.0)])  # fmt: skip
    score = generator.compose(brief, Heartbeat(lambda f: None))
    assert {form.key.mode for form in score.forms} == {"major"}


def test_genres_play_in_their_own_keys_unless_the_user_fixed_one(generator, beat_analysis):
    """The picture gives the mode; each genre takes a key its players favour (seeded). A
    user's key holds in every genre."""
    for genre in ("rock", "hip-hop", "orchestral"):
        asked = brief_for(beat_analysis, genre, duration_s=8.0)
        mode = Key.parse(asked.tags.key).mode
        keys = {_chosen_key(generator, dataclasses.replace(asked, seed=s)) for s in (1, 2, 3)}
        assert keys <= {f"{Key.parse(f'{t} {mode}').name}" for t in STYLES[genre].tonics[mode]}
        fixed = dataclasses.replace(asked, key_is_fixed=True)
        assert generator.generate(fixed).plan.key == asked.tags.key
    rock = generator.generate(brief_for(beat_analysis, "rock", duration_s=8.0)).plan.key
    assert rock == _chosen_key(generator, brief_for(beat_analysis, "rock", duration_s=8.0))
    assert rock != _chosen_key(generator, brief_for(beat_analysis, "hip-hop", duration_s=8.0))


def test_one_seed_puts_two_genres_in_two_keys(generator, beat_analysis):
    """The seed picks a position in the genre's keys; no two genres list one tonic at one
    position, so the same video and seed in two genres never share a key."""
    for mode in ("major", "minor"):
        lists = [style.tonics[mode] for style in STYLES.values()]
        assert len({len(keys) for keys in lists}) == 1
        for position in range(len(lists[0])):
            column = [Key.parse(f"{keys[position]} {mode}").tonic for keys in lists]
            assert len(set(column)) == len(column), (mode, position, column)
    for seed in (1, 2, 3, 4):
        briefs = {
            genre: brief_for(beat_analysis, genre, seed=seed, duration_s=6.0)
            for genre in ("folk", "acoustic", "rock", "pop", "corporate")
        }
        keys = {genre: _chosen_key(generator, brief) for genre, brief in briefs.items()}
        assert len(set(keys.values())) == len(keys), keys


def test_the_plan_and_brief_cross_the_contract_whole(generator, beat_analysis):
    from services.contract import brief_from_proto, brief_to_proto, plan_from_proto, plan_to_proto

    brief = brief_for(beat_analysis, "folk", key_is_fixed=True)
    assert brief_from_proto(brief_to_proto(brief), stems=False).key_is_fixed
    plan = generator.generate(brief).plan
    again = plan_from_proto(plan_to_proto(plan))
    assert again.meter == plan.meter
    assert [(s.key, s.material) for s in again.sections] == [
        (s.key, s.material) for s in plan.sections
    ]
    assert all(s.key and s.material in ("A", "B") for s in plan.sections)


def test_every_style_can_voice_its_chords_in_its_registers():
    for style in STYLES.values():
        numerals = {
            n
            for pools in style.progressions.values()
            for options in pools.values()
            for progression in options
            for n in progression
        } | {"I", "i", "V", "IV", "iv", *SUBSTITUTES.values()}
        for mode, tonic in itertools.product(("major", "minor"), range(12)):
            key = Key(tonic, mode)
            for part in ("bass", "comping", "power", "pad", "pulse"):
                for numeral in numerals:
                    assert voice(chord(numeral, key), None, *style.register(part)), (
                        style.name,
                        part,
                        numeral,
                    )


def test_negatives_that_leave_no_band_are_refused(generator, beat_analysis):
    core = list(STYLES["ambient"].core)
    brief = brief_for(beat_analysis, "ambient", negative=core)
    brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, instruments=[]))
    with pytest.raises(InvalidInputError, match="no instruments left to play"):
        generator.generate(brief)


MAJOR_SEVENTHS = [g for g in STYLES
                  if any("maj7" in n for forms in STYLES[g].progressions.values()
                         for chords in forms.values() for p in chords for n in p)]  # fmt: skip


@pytest.mark.parametrize("genre", MAJOR_SEVENTHS)
def test_a_major_seventh_chord_never_puts_its_root_just_above_its_seventh(
    generator, beat_analysis, genre
):
    """Within one player's chord, the root never sounds a semitone (or an octave and a
    semitone) above the major seventh: a pianist leaves the root to the bass there and plays
    the ninth. Close inversions had put B under C in lo-fi's and hip-hop's Cmaj7."""
    clashes, seventh_chords = [], 0
    for seed in range(1, 5):
        score = generator.compose(
            brief_for(beat_analysis, genre, seed=seed), Heartbeat(lambda f: None)
        )
        chordal = {*score.roles.of("comping"), *score.roles.of("pad")} - {"drums"}
        struck: dict[tuple[str, float], list[int]] = {}
        for note in score.notes:
            if note.instrument in chordal:
                struck.setdefault((note.instrument, note.start), []).append(note.pitch)
        for span in score.arrangement.harmony:
            if 11 not in span.chord.intervals:
                continue
            root, seventh = span.chord.root, (span.chord.root + 11) % 12
            for (player, start), pitches in struck.items():
                if not span.start <= start < span.end or len(pitches) < 3:
                    continue
                seventh_chords += 1
                sevenths = [p for p in pitches if p % 12 == seventh]
                roots = [p for p in pitches if p % 12 == root]
                if any(r - s in (1, 13) for r in roots for s in sevenths):
                    clashes.append((seed, player, span.numeral, sorted(pitches)))
    assert seventh_chords
    assert not clashes, (len(clashes), seventh_chords, clashes[:4])


@pytest.mark.parametrize("genre", MAJOR_SEVENTHS)
def test_no_two_chord_parts_hold_a_major_seventh_s_root_over_its_seventh(
    generator, beat_analysis, genre
):
    """Between the parts that play chords, as within one: no root sounds a semitone or a
    minor ninth over the major seventh for a beat or more. Each player's chord kept its own
    root off its seventh, but ambient's pads had held A#3 under the strings' B4 for 6.4 s (a
    music review: in every ambient piece)."""
    clashes, together = [], 0
    for seed in range(1, 5):
        score = generator.compose(
            brief_for(beat_analysis, genre, seed=seed), Heartbeat(lambda f: None)
        )
        chordal = {*score.roles.of("comping"), *score.roles.of("pad"), *score.roles.of("pulse")}
        notes = [n for n in score.notes if n.instrument in chordal - {"drums"}]
        for span in score.arrangement.harmony:
            if 11 not in span.chord.intervals:
                continue
            root, seventh = span.chord.root, (span.chord.root + 11) % 12
            inside = [n for n in notes if n.start < span.end and n.end > span.start]
            for low in (n for n in inside if n.pitch % 12 == seventh):
                for high in (n for n in inside if n.pitch % 12 == root and n is not low):
                    overlap = min(low.end, high.end) - max(low.start, high.start)
                    if overlap <= 0:
                        continue
                    together += 1
                    if high.pitch - low.pitch in (1, 13, 25) and overlap >= 1.0:
                        clashes.append((seed, low.instrument, high.instrument, span.numeral,
                                        low.pitch, high.pitch, round(overlap, 2)))  # fmt: skip
    assert not clashes, (len(clashes), together, clashes[:4])


def test_a_horn_takes_a_breath(generator, beat_analysis):
    """Blown instruments tie a held chord tone across bars for no longer than a breath
    (BREATH_S), then play it again: at 60 BPM cinematic's horns, when they held its chords,
    had held one note 40 s."""
    brief = brief_for(beat_analysis, "orchestral", seed=2, bpm_is_fixed=True)
    tags = dataclasses.replace(brief.tags, bpm=60.0, bpm_min=60.0, bpm_max=60.0)
    music = generator.generate(dataclasses.replace(brief, tags=tags))
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    horns = next(track for track in song.instruments if track.name == "brass")
    lengths = [note.end - note.start for note in horns.notes]
    # Held past a bar (4 s) still, but never past a breath.
    assert any(length > 4.1 for length in lengths)
    assert max(lengths) <= BREATH_S["brass"] + 0.01


def test_cinematic_s_horns_sing_over_held_strings_and_a_piano_ostinato(generator, beat_analysis):
    """Cinematic is underscore's layout: the horns carry the theme in their singing range,
    the strings hold the chords, the piano's broken chords run under them. A piano's tune
    over a string ostinato of one repeated root had carried the cue alone (a music review:
    a piano trio with a band, heard as jazz)."""
    brief = brief_for(beat_analysis, "cinematic", duration_s=24.0)
    score = generator.compose(brief, Heartbeat(lambda f: None))
    assert score.roles.of("melody")[:1] == ("brass",)
    assert score.roles.of("comping")[:1] == ("strings",)
    assert score.roles.of("pulse")[:1] == ("piano",)
    final_start, before = _before_final(score)

    def notes(instrument: str) -> list:
        return [n for n in before if n.instrument == instrument]

    horns, strings, piano = notes("brass"), notes("strings"), notes("piano")
    assert all(55 <= n.pitch <= 74 for n in horns)
    # Held a beat and more (the ostinato had bowed sixteenths).
    assert np.median([n.end - n.start for n in strings]) >= 1.0
    # The piano's figure: a chord's tones in turn, eighths or sixteenths.
    assert len(piano) >= 2 * final_start * 0.8
    assert len({n.pitch for n in piano}) >= 6


def _before_final(score: Score) -> tuple[float, list[Note]]:
    """The beat the score's final chord starts on (the piece must have one), and the notes
    struck before it."""
    final = score.arrangement.final
    assert final is not None
    return final.start, [n for n in score.notes if n.start < final.start]


def _busy(brief: MusicBrief, **tags) -> MusicBrief:
    """The brief with every shot and the piece at energy 0.9 (its sections at the busiest
    level), and any other tags given."""
    segments = [dataclasses.replace(segment, energy=0.9) for segment in brief.segments]
    busy = dataclasses.replace(brief.tags, energy=0.9, **tags)
    return dataclasses.replace(brief, segments=segments, tags=busy)


def _on_the_fifth(score, notes) -> int:
    """How many of `notes` sound the fifth of the chord under them (a boom-chick bass's)."""
    return sum(n.pitch % 12 == (_span_at(score, n.start).chord.root + 7) % 12 for n in notes)


def test_acoustic_is_a_singer_songwriter_s_guitar_and_piano_not_a_country_band(
    generator, beat_analysis
):
    """Acoustic is acoustic pop: a nylon guitar's strum, a pianist's broken chords under the
    piano's tune, a bass that holds its roots, a shaker keeping time. Its root-fifth bass
    (41 of its 116 notes here on the chord's fifth) and a tambourine on two and four over a
    cajon were a country band's (a music review: musicnn's "country" 0.23 first, "acoustic"
    eighth), with no broken chords: the harp cast for them was a colour these videos never
    brought in."""
    from services.generator.backends.composer.arrangement import hit_key
    from services.generator.backends.composer.styles import SHAKER, TAMBOURINE

    fifths, bass_notes, shaken, backbeat_tambourines = 0, 0, 0, 0
    for seed in (1, 2, 3):
        brief = brief_for(beat_analysis, "acoustic", seed=seed, duration_s=24.0)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        final_start, before = _before_final(score)
        bass = [n for n in before if n.instrument == "bass"]
        bass_notes += len(bass)
        fifths += _on_the_fifth(score, bass)
        drums = [n for n in before if n.instrument == "drums"]
        shaken += sum(n.pitch == SHAKER for n in drums)
        # A tambourine marks a light cut, never the backbeat.
        backbeat_tambourines += sum(n.pitch == TAMBOURINE
                                    and hit_key(n.start) not in score.arrangement.cut_hits
                                    for n in drums)  # fmt: skip
        tune = [n.pitch for n in before if n.instrument == "piano"]
        broken = [n.pitch for n in before if n.instrument in score.roles.of("pulse")]
        assert len(broken) >= final_start and np.median(broken) < np.median(tune), seed
    assert fifths <= 0.1 * bass_notes, (fifths, bass_notes)
    assert backbeat_tambourines == 0 and shaken >= 3 * 24, (backbeat_tambourines, shaken)
    # The broken chords' player is a piano (the row's "plucks", program 0); the guitar nylon.
    assert score.roles.of("pulse")[:1] == ("plucks",)
    assert STYLES["acoustic"].program("plucks") == 0
    assert STYLES["acoustic"].program("acoustic-guitar") == 24


def _folk_in(meter: str, generator, beat_analysis) -> list[tuple[int, Score, list[Note]]]:
    """Folk's 24 s pieces on the beat video, seeds 1-8, that play in `meter`: the seed, the
    score and its notes before the final chord."""
    pieces = []
    for seed in range(1, 9):
        brief = brief_for(beat_analysis, "folk", seed=seed, duration_s=24.0)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        if score.plan.meter.name == meter:
            pieces.append((seed, score, _before_final(score)[1]))
    return pieces


def test_folk_s_jig_drones_under_a_bodhran(generator, beat_analysis):
    """Folk's 6/8 is a jig: roots droning under a bodhran's strokes. It had a root-fifth bass
    (17 of 36 notes on the fifth) under a side stick on four, a country shuffle (a music
    review: musicnn's "country" first on 6/8 pieces)."""
    from services.generator.backends.composer.styles import LOW_TOM

    jigs = _folk_in("6/8", generator, beat_analysis)
    for seed, score, before in jigs:
        bass = [n for n in before if n.instrument == "bass"]
        fifths = _on_the_fifth(score, bass)
        assert fifths <= 0.25 * len(bass), (seed, fifths, len(bass))
        assert sum(n.pitch == LOW_TOM for n in before if n.instrument == "drums") >= 12, seed
    assert len(jigs) >= 2


def test_folk_s_upright_holds_its_roots_in_its_register(generator, beat_analysis):
    """Folk's bass in 4/4 is an upright's roots, in its register: its root-fifth walk (a
    country bass) had reached the octave over its top, A3 (5-7 notes a piece)."""
    low, high = STYLES["folk"].register("bass")
    pieces = _folk_in("4/4", generator, beat_analysis)
    for seed, score, before in pieces:
        bass = [n for n in before if n.instrument == "bass"]
        assert all(low <= n.pitch <= high for n in bass), (seed, [n.pitch for n in bass])
        assert _on_the_fifth(score, bass) <= 0.1 * len(bass), seed
    assert len(pieces) >= 2


def test_hip_hop_s_808_rides_its_kick_under_a_looped_sample(generator, beat_analysis):
    """Hip-hop is a beat: its 808 bass struck with the kick, the piano a sampled chord's loop
    (a chord and a stab or two a bar, with a cut's stab now and then). In its full sections
    its bass had played a line of its own (47-56% of its notes on a kick, seeds 1-6) and
    its piano block chords five times a bar, a jazz pianist's comping (a music review:
    musicnn's "jazz" 0.14 and MTT's "techno" 0.47 on its pieces, "Hip-Hop" fifth)."""
    from services.generator.backends.composer.styles import KICK

    for seed in (1, 2, 3):
        brief = _busy(brief_for(beat_analysis, "hip-hop", seed=seed, duration_s=24.0))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        final_start, before = _before_final(score)
        kicks = {round(n.start, 6) for n in before if n.instrument == "drums" and n.pitch == KICK}
        bass = [round(n.start, 6) for n in before if n.instrument == "bass"]
        assert sum(start in kicks for start in bass) >= 0.7 * len(bass), seed
        chords = {round(n.start, 6) for n in before if n.instrument == "piano"}
        bars = list(itertools.pairwise(b for b in score.plan.bar_starts if b <= final_start))
        attacks = [sum(start <= t < end for t in chords) for start, end in bars]
        assert np.mean(attacks) <= 4, (seed, attacks)


@pytest.mark.parametrize("bpm", [72.0, 120.0])
def test_a_clarinet_ostinato_breathes(generator, beat_analysis, bpm):
    """Orchestral's clarinet plays its running ostinato in phrases, with a rest (a beat,
    less where a cut's hit comes in early) after each: at a phrase's end, four bars or
    fewer, never more than a breath (BREATH_S) apart. It had played 60-85 s of a music
    review's piece without one."""
    brief = brief_for(beat_analysis, "orchestral", duration_s=60.0, bpm_is_fixed=True)
    tags = dataclasses.replace(brief.tags, bpm=bpm, bpm_min=bpm, bpm_max=bpm)
    score = generator.compose(dataclasses.replace(brief, tags=tags), Heartbeat(lambda f: None))
    assert score.roles.of("pulse")[:1] == ("woodwinds",)
    time = score.plan.beat_time
    notes = sorted((time(n.start), time(n.end)) for n in score.notes
                   if n.instrument == "woodwinds")  # fmt: skip
    assert len(notes) > 60
    # A breath: a rest of 0.3 s (the ostinato's notes are at most 0.1 beat apart).
    runs, begun, last = [], notes[0][0], notes[0][1]
    for start, end in notes[1:]:
        if start - last >= 0.3:
            runs.append(last - begun)
            begun = start
        last = max(last, end)
    runs.append(last - begun)
    assert len(runs) >= 4, runs
    assert max(runs) <= BREATH_S["woodwinds"], runs


def test_no_ghost_stroke_sounds_in_the_final_chord(generator, beat_analysis):
    """Ghost strokes fill the busier sections' bars, not the final chord's ring: one 2.5 s
    into a corporate piece's dying final chord had come 19 dB over it (a music review)."""
    from services.generator.backends.composer.performance import GHOST_VELOCITY

    ghosts, late = 0, []
    for genre in ("corporate", "hip-hop", "pop", "rock", "acoustic", "folk"):
        for seed in (1, 2, 3):
            brief = brief_for(beat_analysis, genre, seed=seed)
            score = generator.compose(brief, Heartbeat(lambda f: None))
            final = score.plan.final_beat
            assert final is not None
            quiet = [n for n in score.notes
                     if n.instrument == "drums" and n.velocity <= GHOST_VELOCITY[1]]  # fmt: skip
            ghosts += len(quiet)
            late += [(genre, seed, n.start, final) for n in quiet if n.start >= final]
    assert ghosts > 100
    assert not late, late


def test_power_chords_and_the_bass_play_the_chord_s_own_fifth(generator, beat_analysis):
    """A diminished chord's fifth is diminished: rock's power chord and the bass's fifth on
    ii° in a minor key play it, not a perfect fifth from outside the key (Bb under the
    guitar's own A over ii° in C# minor, a semitone apart)."""
    # The opening's look comes back again and again: each other return is varied, one
    # chord replaced by a relative (iv by ii°, SUBSTITUTES).
    opening, other = Look(0.3, 0.4, 0.4, 0.5), Look(0.8, 0.8, 0.7, 0.6)
    segments = [Segment(8.0 * i, 8.0 * (i + 1), 0.7, (opening, other)[i % 2], ["tense"])
                for i in range(8)]  # fmt: skip
    cuts = [Cut(s.start_s, "hard", 0.8) for s in segments[1:]]
    diminished: Counter[str] = Counter()
    wrong = []
    for genre, seed in itertools.product(("rock", "pop", "electronic", "hip-hop"), range(1, 7)):
        brief = brief_for(beat_analysis, genre, seed=seed, key_is_fixed=True,
                          duration_s=64.0, segments=segments, cuts=cuts)  # fmt: skip
        brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, key="E minor"))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        power = score.roles.of("comping") if score.style.comping_technique == "power" else ()
        highest_power = score.style.register("power")[1] + 12
        for span in score.arrangement.harmony:
            if "°" not in span.chord.numeral:
                continue
            perfect_fifth = (span.chord.root + 7) % 12
            for note in score.notes:
                if not span.start <= note.start < span.end:
                    continue
                if note.instrument in power and note.pitch <= highest_power:
                    diminished["power"] += 1
                elif note.instrument == "bass":
                    diminished["bass"] += 1
                else:
                    continue
                if note.pitch % 12 == perfect_fifth:
                    wrong.append((genre, seed, span.numeral, note.instrument, note.pitch))
    assert diminished["power"] and diminished["bass"]
    assert not wrong, (len(wrong), wrong[:4])


@pytest.mark.parametrize("genre", [g for g in STYLES if STYLES[g].open_voicing])
def test_an_open_voicing_keeps_to_its_part_s_register(generator, beat_analysis, genre):
    """Drop-2 (the second voice from the top an octave down) widens a chord placed so that
    the dropped voice stays in the part's register: ambient's pad had dropped G#2 under the
    bass's A2, below the pad's register. (The final chord is voiced in the comping register,
    so only the floor is checked.)"""
    under = []
    for seed in range(1, 7):
        score = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        for part in ("pad", "comping"):
            low = score.style.register(part)[0]
            players = [p for p in score.roles.of(part) if score.roles.parts_of(p) == [part]]
            under += [(seed, n.instrument, n.pitch) for n in score.notes
                      if n.instrument in players and n.pitch < low]  # fmt: skip
    assert not under, (len(under), under[:4])


@pytest.mark.parametrize("part", ["pulse", "comping", "pad"])
def test_the_tune_is_the_top_line_over_the_pulse_and_the_chords(generator, beat_analysis, part):
    """The ear follows the highest line: a pulse, an arpeggio or a chord above the tune masks
    it. In electronic the plucks' arpeggio (72-91) had sounded above 70% of the lead's notes;
    lo-fi's Rhodes chords (57-79, over a tune from 62) above 49-82% of its tune's in two of
    three seeds (a music review), orchestral's harp and horns above 39% and 30% in one. Also
    with every instrument the picture may add, in busy sections: pop's muted guitar (64-83)
    had played its eighths above 72% of the lead's notes, acoustic's harp (62-81) above 52%,
    corporate's piano arpeggio (to G5) above 26%. Each piece on its own: where the tune dipped
    under its chords a piano had sounded over 55% of a pop lead's notes, electronic's pads
    over 51% (a music review, 18 of 120 pieces over a quarter), and stabs struck over a held
    tune note covered it. Ambient's harp and strings shimmer above its sparse tune by design
    (its style row)."""
    failing = []
    for genre in STYLES:
        if not STYLES[genre].under_the_tune:
            continue
        for seed, whole_band in itertools.product((1, 2, 3), (False, True)):
            brief = brief_for(beat_analysis, genre, seed=seed)
            if whole_band:
                style = STYLES[genre]
                brief = _busy(brief, instruments=[*style.core, *style.colours])
            score = generator.compose(brief, Heartbeat(lambda f: None))
            melody = set(score.roles.of("melody"))
            players = set(score.roles.of(part)) - melody
            others = [n for n in score.notes if n.instrument in players]
            tune = [n for n in score.notes if n.instrument in melody]
            # Over a tune note as it strikes, or struck over it while it is held.
            above = sum(any(p.pitch > note.pitch and p.start < note.end
                            and p.end > note.start for p in others)
                        for note in tune)  # fmt: skip
            if above > len(tune) / 4:
                failing.append((genre, seed, whole_band, above, len(tune)))
    assert not failing


def test_no_chord_doubles_the_tune_in_unison_as_it_strikes(generator, beat_analysis):
    """A chord or the pulse's figure struck with a tune note leaves the tune's pitch to the
    tune (the voice an octave down, or out): pop's piano had doubled 15-35% of its lead's
    notes, lo-fi's Rhodes held a tune's pitch 3.4 s after the tune moved on (a music review),
    and ambient's harp struck 11% of its notes with the tune on its pitch. (A cut's accent,
    the whole chord at once, keeps its voices.)"""
    doubled = []
    for genre, seed in itertools.product(STYLES, (1, 2)):
        score = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        tune = set(score.roles.of("melody"))
        parts = ("comping", "pad", "pulse")
        chordal = {p for part in parts for p in score.roles.of(part)} - tune - {"drums"}
        struck = {(n.pitch, round(n.start, 3)) for n in score.notes if n.instrument in tune}
        hits = {round(beat, 3) for beat in score.arrangement.cut_hits}
        doubled += [(genre, seed, n.instrument, n.pitch, n.start) for n in score.notes
                    if n.instrument in chordal and round(n.start, 3) not in hits
                    and (n.pitch, round(n.start, 3)) in struck]  # fmt: skip
    assert not doubled, (len(doubled), doubled[:4])


def _held_tune_notes(score):
    """The tune's notes held a beat or more, each with the chord span it starts in (None
    past the last)."""
    melody = set(score.roles.of("melody"))
    for note in score.notes:
        if note.instrument in melody and note.end - note.start >= 0.95:
            yield note, _span_at(score, note.start)


def test_a_held_tune_note_never_grinds_a_semitone_over_its_chord(generator, beat_analysis):
    """A tune note held a beat or more rests on a steady chord tone, never a semitone over one
    of the chord's tones: the tonic held over V's leading tone, the root over a major
    seventh, a fourth over a major third (134 of 3,694 tune notes in three seeds of every
    genre had; ambient's 39 of 188)."""
    grinding = []
    for genre, seed in itertools.product(STYLES, (1, 2)):
        score = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        for note, span in _held_tune_notes(score):
            if span is not None and (note.pitch - 1) % 12 in span.chord.pitch_classes:
                grinding.append((genre, seed, span.numeral, note.pitch, note.start))
    assert not grinding, (len(grinding), grinding[:4])


def test_a_calm_bass_holds_its_roots(generator, beat_analysis):
    """Where the band plays calmly (an intro, a quiet section) the bass holds its notes: rock's
    and pop's had struck a sixteenth on one and three and left most of every bar silent, and
    where the others stopped at a cut, the mix with it (15-18 dB under the bar before; a music
    review). No rest of a beat and a half or more between its notes in a quiet section."""
    gaps, calm = [], 0
    for genre, seed in itertools.product(STYLES, (1, 2)):
        score = generator.compose(_arc(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        bass = sorted((n for n in score.notes if n.instrument in score.roles.of("bass")),
                      key=lambda n: n.start)  # fmt: skip
        for form in score.forms:
            if form.intensity > 1:
                continue
            inside = [n for n in bass if form.start_beat <= n.start < form.end_beat]
            calm += len(inside)
            gaps += [(genre, seed, round(a.end, 2), round(b.start, 2))
                     for a, b in itertools.pairwise(inside) if b.start - a.end >= 1.5]  # fmt: skip
    assert calm > 100
    assert not gaps, (len(gaps), gaps[:4])


def test_the_bass_sounds_on_after_a_cut(generator, beat_analysis):
    """A cut's bass note is followed by the bass's next within a beat: a strong cut's stab,
    struck for half a beat, had left a band without drums with no low end to the line's next
    bar line (ambient: 1.8 s from the busiest section's first cut, the mix 9 dB down; a music
    review)."""
    gaps, cuts = [], 0
    for genre, seed in itertools.product(("ambient", "orchestral", "cinematic", "pop"), (1, 2)):
        for brief in (brief_for(beat_analysis, genre, seed=seed), _arc(beat_analysis, genre)):
            # A band without drums: the cuts' stabs mark them (with drums, the drums do).
            asked = [i for i in brief.tags.instruments if i != "drums"]
            brief = dataclasses.replace(
                brief, negative=["drums"], tags=dataclasses.replace(brief.tags, instruments=asked)
            )
            score = generator.compose(brief, Heartbeat(lambda f: None))
            assert "drums" not in score.roles.of("drums")
            bass = sorted((n for n in score.notes if n.instrument in score.roles.of("bass")),
                          key=lambda n: n.start)  # fmt: skip
            final = score.arrangement.final.start if score.arrangement.final else math.inf
            for cut in brief.cuts:
                beat = score.plan.beat_at(cut.time_s)
                after = [n for n in bass if n.start >= beat - SAME_BEAT]
                if len(after) < 2 or beat >= final:
                    continue
                cuts += 1
                if after[1].start - after[0].end > 1.0:
                    gaps.append((genre, seed, cut.time_s, after[0].end, after[1].start))
    assert cuts > 60
    assert not gaps, (len(gaps), gaps[:4])


def test_a_waltz_s_drums_strike_its_downbeat_hardest(generator, beat_analysis):
    """In 3/4 the first beat leads: orchestral's busiest groove had accented its snares on two
    and three, over the downbeat (a music review: onset strength 0.72 / 0.87 / 1.00 on the
    three beats)."""
    overruled, bars = [], 0
    for seed in (1, 2, 3):
        score = generator.compose(_arc(beat_analysis, "orchestral", seed=seed),
                                  Heartbeat(lambda f: None), meter="3/4")  # fmt: skip
        loudest: dict[tuple[int, int], int] = defaultdict(int)
        # A cut's hit is accented wherever it falls.
        hits = set(score.arrangement.cut_hits)
        for note in score.notes:
            if (
                note.instrument == "drums"
                and note.start % 1 == 0
                and hit_key(note.start) not in hits
            ):
                key = (int(note.start // 3), int(note.start % 3))
                loudest[key] = max(loudest[key], note.velocity)
        # The busiest groove's bars (its downbeat accented, at level 3's 112 give or take
        # a player's touch; quieter levels strike their beats alike).
        for bar in {bar for bar, _ in loudest}:
            if loudest[(bar, 0)] >= 105 and (loudest[(bar, 1)] or loudest[(bar, 2)]):
                bars += 1
                if loudest[(bar, 0)] <= max(loudest[(bar, 1)], loudest[(bar, 2)]):
                    overruled.append((seed, bar, [loudest[(bar, b)] for b in range(3)]))
    assert bars > 10
    assert not overruled, (len(overruled), overruled[:4])


def test_no_chord_crowds_the_low_register(generator, beat_analysis):
    """From A2 down (110 Hz) no two parts (the bass among them, not the drums) sound notes a
    third or less apart at once (the ear's lower limit for a third): cinematic's pad, down to
    A2 over the bass's G2, had voiced thirds at 100 Hz with it (a music review: 2 of 6
    pieces). A fifth and an octave are clear there."""
    muddy = []
    for genre, (seed, key) in itertools.product(STYLES, ((1, None), (2, "F# minor"),
                                                         (3, "G minor"))):  # fmt: skip
        for brief in (brief_for(beat_analysis, genre, seed=seed), _arc(beat_analysis, genre, seed)):
            # With pads: the picture's asking for them brings them into cinematic's band.
            asked = [*brief.tags.instruments, "pads"]
            tags = dataclasses.replace(brief.tags, key=key or brief.tags.key, instruments=asked)
            score = generator.compose(dataclasses.replace(brief, tags=tags),
                                      Heartbeat(lambda f: None))  # fmt: skip
            drums, bass = set(score.roles.of("drums")), set(score.roles.of("bass"))
            low = sorted((n for n in score.notes if n.pitch < 52 and n.instrument not in drums),
                         key=lambda n: n.start)  # fmt: skip
            for a, b in itertools.combinations(low, 2):
                if b.start >= a.end or {a.instrument, b.instrument} <= bass:
                    continue
                if (min(a.pitch, b.pitch) < 45 and 0 < abs(a.pitch - b.pitch) <= 4
                        and min(a.end, b.end) - b.start > 0.25):  # fmt: skip
                    muddy.append((genre, seed, a.instrument, a.pitch, b.instrument, b.pitch,
                                  b.start))  # fmt: skip
    assert not muddy, (len(muddy), muddy[:4])


def test_rock_s_bass_plays_under_the_power_chords(generator, beat_analysis):
    """Rock's bass sounds under the rhythm guitar's power chords, not on their root in
    unison: sharing their register, it had doubled the chord's lowest note on 43% of its
    notes in B minor (a music review)."""
    doubled, notes = [], 0
    for seed, key in zip((1, 2, 3), ("B minor", "G major", "D major"), strict=True):
        brief = brief_for(beat_analysis, "rock", seed=seed)
        brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, key=key))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        guitar = {(n.pitch, round(n.start, 3)) for n in score.notes
                  if n.instrument == "electric-guitar"}  # fmt: skip
        bass = [n for n in score.notes if n.instrument == "bass"]
        notes += len(bass)
        doubled += [(key, n.pitch, n.start) for n in bass if (n.pitch, round(n.start, 3)) in guitar]
    assert notes > 100
    assert not doubled, (len(doubled), doubled[:4])


def test_no_part_sounds_a_minor_second_against_a_held_tune_note(generator, beat_analysis):
    """Where a tune note is held a beat or more, no other part holds a note a semitone from it
    beside it: ambient voices its chords over the tune, and a ninth held under the strings'
    minor third (C#5 under D5) had ground against it (10 times in 5 ambient pieces; a music
    review)."""
    clashes, held = [], 0
    for genre, seed in itertools.product(STYLES, (1, 2, 3)):
        score = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        tune = set(score.roles.of("melody"))
        drums = set(score.roles.of("drums"))
        others = [n for n in score.notes if n.instrument not in tune | drums]
        for note, _span in _held_tune_notes(score):
            held += 1
            clashes += [(genre, seed, note.pitch, note.start, other.instrument, other.pitch)
                        for other in others if abs(other.pitch - note.pitch) == 1
                        and other.start < note.end - 0.25
                        and other.end > note.start + 0.25]  # fmt: skip
    assert held > 300
    assert not clashes, (len(clashes), clashes[:4])


def test_a_held_tune_note_is_no_tritone_over_a_triad_s_root(generator, beat_analysis):
    """A tune note held a beat or more over a plain triad is not the tritone over its root:
    the leading tone held over IV (G over Db in A-flat major, a semitone under the chord's
    fifth) is heard as a wrong note (a music review; 10 of 1,112 held tune notes on three
    of bench_music's videos). Over a major seventh chord it is the lydian colour, kept."""
    grating, held = [], 0
    for genre, seed in itertools.product(STYLES, (1, 2, 3)):
        score = generator.compose(brief_for(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        for note, span in _held_tune_notes(score):
            held += 1
            chord = span.chord if span is not None else None
            if (
                chord is not None
                and len(chord.intervals) == 3
                and 7 in chord.intervals
                and (note.pitch - chord.root) % 12 == 6
            ):
                grating.append((genre, seed, span.numeral, note.pitch, note.start))
    assert held > 200
    assert not grating, (len(grating), grating[:4])


def test_a_held_tune_note_keeps_clear_of_the_tones_its_chord_alters(generator, beat_analysis):
    """A tune note held a beat or more is no semitone from a tone the chord under it brings
    from outside the key: a minor key's seventh held over V's leading tone (F# minor's E over
    C#-E#-G#), or its second under a dorian ii's sixth, is heard as a wrong note (6 of the
    1,116 held here had been, in five genres)."""
    crossing, held = [], 0
    keys = enumerate(("F# minor", "C minor", "A minor"), start=1)
    for genre, (seed, key) in itertools.product(STYLES, keys):
        brief = brief_for(beat_analysis, genre, seed=seed)
        brief = dataclasses.replace(brief, tags=dataclasses.replace(brief.tags, key=key))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        for note, span in _held_tune_notes(score):
            form = next(f for f in reversed(score.forms) if f.start_beat <= max(0, note.start))
            held += 1
            if span is not None and span.chord.crosses(note.pitch, form.key):
                crossing.append((genre, key, span.numeral, note.pitch, note.start))
    assert held > 200
    assert not crossing, (len(crossing), crossing[:4])


def _arc(beat_analysis, genre: str, seed: int = 3, duration_s: float = 75.0, every_s: float = 0.0):
    """A video's arc: a quiet intro, a build, a contrasting middle, the opening's look again,
    a loud climax and a quiet close, with a cut at each turn and one within each (or, with
    `every_s`, one every so often)."""
    opening, other = Look(0.35, 0.4, 0.4, 0.5), Look(0.8, 0.8, 0.75, 0.7)
    shape = [(0.0, 0.1, opening), (0.13, 0.45, opening), (0.3, 0.55, other),
             (0.48, 0.5, opening), (0.66, 0.95, opening), (0.87, 0.1, opening)]  # fmt: skip
    starts = [round(at * duration_s, 2) for at, _, _ in shape]
    ends = [*starts[1:], duration_s]
    segments = [Segment(a, b, energy, look, ["happy"])
                for (_, energy, look), a, b in zip(shape, starts, ends, strict=True)]  # fmt: skip
    within = [round(a + (b - a) / 2, 2) for a, b in zip(starts, ends, strict=True)]
    if every_s:
        within = [round(t, 2) for t in np.arange(2.0, duration_s - 1.0, every_s)
                  if min(abs(t - a) for a in starts) > 0.5]  # fmt: skip
    cuts = sorted([Cut(s, "hard", 0.9) for s in starts[1:]] + [Cut(t, "hard", 0.5) for t in within],
                  key=lambda c: c.time_s)  # fmt: skip
    return brief_for(beat_analysis, genre, seed=seed, duration_s=duration_s, segments=segments,
                     cuts=cuts)  # fmt: skip


def test_the_key_lifts_into_a_rise_never_into_a_quiet_close(generator, beat_analysis):
    """A whole step up is the last chorus's lift: it comes with a rise in the picture's
    energy. The drop from the climax into a quiet close had been the strongest late turn, so
    seven of eleven genres lifted the key into their quiet ending."""
    lifts = 0
    for genre in (g for g in STYLES if STYLES[g].lift == "up2"):
        brief = _arc(beat_analysis, genre)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        keys = [form.key.tonic for form in score.forms]
        for i in range(1, len(keys)):
            if keys[i] != keys[i - 1] and keys[i] != score.home.tonic:
                lifts += 1
                assert score.forms[i].energy > score.forms[i - 1].energy, (genre, i)
        assert score.forms[-1].energy < score.forms[-2].energy
    assert lifts


def test_the_lifted_key_is_heard_before_the_final_chord(generator, beat_analysis):
    """A 30 s video whose biggest rise is its last shot: the key lifts, if at all, at
    least arrangement.LIFT_MIN_BARS before the final chord (it had lifted on the ending's
    section alone, the piece building on the home key's dominant and resolving a whole step
    higher: three of four 30 s cinematic and orchestral pieces in a music review)."""
    from services.generator.backends.composer.arrangement import LIFT_MIN_BARS

    dim, bright = Look(0.3, 0.4, 0.4, 0.5), Look(0.9, 0.9, 0.8, 0.8)
    times = [0.0, 2.6, 8.7, 12.0, 19.4, 21.2, 26.1, 30.0]
    # A rise at 12 s, and the biggest at 26.1 s.
    shape = [(0.3, dim), (0.4, dim), (0.35, dim), (0.7, bright), (0.5, bright), (0.4, dim),
             (0.95, bright)]  # fmt: skip
    spans = zip(shape, itertools.pairwise(times), strict=True)
    segments = [Segment(a, b, energy, look, ["happy"]) for (energy, look), (a, b) in spans]
    cuts = [Cut(t, "hard", 0.9) for t in times[1:-1]]
    checked = 0
    for genre, seed in itertools.product((g for g in STYLES if STYLES[g].lift == "up2"), (1, 2)):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=30.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        final = score.plan.final_beat
        assert final is not None
        lifted = [f for f in score.forms if f.key.tonic != score.home.tonic]
        if lifted:
            checked += 1
            room = final - lifted[0].start_beat
            assert room >= LIFT_MIN_BARS * score.plan.meter.beats, (genre, seed, room)
    assert checked


def _played_at_cuts(score) -> Iterator[tuple[SectionForm, int, list[int]]]:
    """Per cut before the final chord, as performed (velocities shaped): the section whose
    texture sounds at it, the loudest drum stroke of its hit, and the loudest drum stroke of
    each other bar line that texture plays (the groove's accented downbeats)."""
    plan, arrangement = score.plan, score.arrangement
    drums = [n for n in shaped(score.notes, plan, score.roles, arrangement, lambda: None)
             if n.instrument == "drums"]  # fmt: skip
    hits = {round(plan.beat_at(cut)) for cut in arrangement.cut_times}
    bar_lines = set(plan.bar_starts)
    loudest: dict[int, int] = {}
    for note in drums:
        beat = round(note.start)
        if abs(note.start - beat) < 0.01 and beat in bar_lines:
            loudest[beat] = max(loudest.get(beat, 0), note.velocity)
    starts = arrangement.texture_starts
    for cut in arrangement.cut_times:
        beat = plan.beat_at(cut)
        if arrangement.final is not None and beat > arrangement.final.start:
            continue
        index = bisect.bisect_right(starts, beat + 0.05) - 1
        low, high = starts[index], starts[index + 1] if index + 1 < len(starts) else math.inf
        hit = max(n.velocity for n in drums if abs(n.start - beat) < 0.01
                  or abs(n.start - round(beat)) < 0.01)  # fmt: skip
        others = [v for b, v in loudest.items() if low <= b < high and b not in hits]
        yield score.forms[index], hit, others


def test_a_cut_in_a_quiet_section_is_marked_softly(generator, beat_analysis):
    """Cut hits stand out from the section they mark, not above every other sound: a crash
    at 112 in the quiet close had come 8 dB over it."""
    score = generator.compose(_arc(beat_analysis, "pop"), Heartbeat(lambda f: None))
    plan = score.plan
    drums = [n for n in score.notes if n.instrument == "drums"]
    quiet: list[int] = []
    loud: list[int] = []
    for cut in score.arrangement.cut_times:
        beat = plan.beat_at(cut)
        form = next(f for f in score.forms if f.start_beat <= beat < f.end_beat)
        hits = [
            n.velocity for n in drums if min(abs(n.start - beat), abs(n.start - round(beat))) < 0.01
        ]
        (quiet if form.intensity <= 1 else loud if form.intensity >= 3 else []).append(max(hits))
    assert quiet and loud
    assert max(quiet) <= 100 and max(quiet) < min(loud), (quiet, loud)


@pytest.mark.parametrize("genre", ["pop", "rock", "electronic", "corporate"])
def test_a_strong_cut_s_hit_is_struck_harder_than_its_section_s_beats(generator, beat_analysis,
                                                                       genre):  # fmt: skip
    """A strong cut's hit (a crash and kick or the like) is played harder than the groove's
    strokes on the other bar lines of the section it opens: held to 112 it had come under a busy
    section's accented downbeats (118-122), and a cut inside a bar had been marked at the
    level of the calmer section before it, under the first beats of the busier one it
    opens."""
    look = Look(0.5, 0.5, 0.5, 0.5)
    shots = ((0.0, 6.3, 0.15), (6.3, 14.6, 0.9), (14.6, 21.2, 0.45), (21.2, 30.0, 0.95))
    segments = [Segment(a, b, energy, look, ["happy"]) for a, b, energy in shots]
    cuts = [Cut(a, "hard", 0.9) for a, _, _ in shots[1:]]
    checked = 0
    for seed in (1, 2):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=30.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        for form, hit, others in _played_at_cuts(score):
            checked += 1
            assert hit > float(np.median(others)), (seed, form, hit, sorted(others))
    assert checked >= 4


@pytest.mark.parametrize("genre", ["pop", "rock", "electronic", "hip-hop"])
def test_a_cut_s_accent_is_never_softer_than_the_groove_around_it(generator, beat_analysis,
                                                                  genre):  # fmt: skip
    """On a fast montage, each cut's accent in the drums, as arranged, is at least as loud as
    every other stroke its section's drums play: a light accent is level with the loudest, a
    strong one over it. The player's touch (a few steps either way from note to note) had
    left light accents up to 8 steps under the strokes around them."""
    end = 29.833
    segments, _ = _shots(beat_analysis, (0.0, *MONTAGE_CUTS_S[2::3], end))
    cuts = [Cut(t, "hard", 0.9) for t in MONTAGE_CUTS_S]
    checked = 0
    for seed in (1, 2):
        brief = brief_for(beat_analysis, genre, seed=seed, cuts=cuts, segments=segments,
                          duration_s=end)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        arrangement = score.arrangement
        final = arrangement.final.start if arrangement.final is not None else math.inf
        drums = [n for n in score.notes if n.instrument in score.roles.of("drums")[:1]]
        starts = arrangement.texture_starts
        section_of = [bisect.bisect_right(starts, n.start + 0.05) - 1 for n in drums]
        for hit in arrangement.cut_hits:
            if hit >= final:
                continue
            accent = [n.velocity for n in drums if hit_key(n.start) == hit]
            section = bisect.bisect_right(starts, hit + 0.05) - 1
            around = [n.velocity for n, s in zip(drums, section_of, strict=True)
                      if s == section and n.start < final
                      and hit_key(n.start) not in arrangement.cut_hits]  # fmt: skip
            if not accent or not around:
                continue
            checked += 1
            assert max(accent) >= max(around), (seed, hit, sorted(accent), max(around))
    assert checked >= 20


def _calm_turning_busy_at_9_s(beat_analysis, genre: str) -> MusicBrief:
    """A 16 s video at a user's 120 BPM: a calm shot, a cut at 4 s (on a bar line), another
    calm shot and, at 9 s (the second half of a bar), a busy one."""
    look = Look(0.5, 0.5, 0.5, 0.5)
    shots = ((0.0, 4.0, 0.1), (4.0, 9.0, 0.1), (9.0, 16.0, 0.95))
    segments = [Segment(a, b, energy, look, ["happy"]) for a, b, energy in shots]
    cuts = [Cut(4.0, "hard", 0.9), Cut(9.0, "hard", 0.9)]
    brief = brief_for(beat_analysis, genre, bpm_is_fixed=True, duration_s=16.0,
                      segments=segments, cuts=cuts)  # fmt: skip
    return dataclasses.replace(
        brief, tags=dataclasses.replace(brief.tags, bpm=120.0, bpm_min=120.0, bpm_max=120.0)
    )


@pytest.mark.parametrize("genre", ["pop", "cinematic", "ambient"])
def test_the_texture_changes_at_the_cut_not_at_the_bar_line_beside_it(generator, beat_analysis,
                                                                        genre):  # fmt: skip
    """At a user's 120 BPM the grid puts the cut at 4 s on a bar line and the cut at 9 s,
    where a calm video turns busy, on the second half of a bar. The band plays as calmly as
    before up to that cut and harder from it; it had turned busy at the bar line, a second
    before the picture."""
    score = generator.compose(_calm_turning_busy_at_9_s(beat_analysis, genre),
                              Heartbeat(lambda f: None))  # fmt: skip
    plan = score.plan
    cut = plan.beat_at(9.0)
    busy = next(i for i, s in enumerate(plan.sections) if s.start_s <= 9.0 < s.end_s)
    bar_line = score.forms[busy].start_beat
    assert cut - bar_line == pytest.approx(2.0, abs=0.05), (cut, bar_line)
    calm, loud = score.forms[busy - 1], score.forms[busy]
    assert calm.intensity < loud.intensity
    # How hard the accompaniment is played (the drums and a drumless band's chord mark the
    # cut itself), and the tune, which keeps to the bar lines but not to their level.
    tune = set(score.roles.of("melody"))
    accompaniment = {n.instrument for n in score.notes} - tune - {"drums"}

    def played(players: set[str], low: float, high: float) -> float:
        struck = [n.velocity for n in score.notes
                  if n.instrument in players and low <= n.start < high]  # fmt: skip
        assert struck, (players, low, high)
        return float(np.mean(struck))

    for players in (accompaniment, tune):
        before_cut = played(players, bar_line, cut - 1e-6)
        assert abs(before_cut - played(players, calm.start_beat, bar_line)) < 8.0, players
        assert before_cut < played(players, cut + 1.0, loud.end_beat) - 8.0, players


@pytest.mark.parametrize("genre", ["cinematic", "hip-hop", "lo-fi", "acoustic"])
def test_the_bass_strikes_on_a_cut_that_hands_the_texture_over(generator, beat_analysis, genre):
    """Where a section's texture takes over at its cut on a beat inside a bar, its bass
    sounds from the cut, as on a downbeat: its line's rhythm, bar by bar, had left it
    silent from the cut for up to a beat (0.3-1 s) at 76 of 432 such cuts."""
    rng = np.random.default_rng(5)
    times = [round(t, 2) for t in np.cumsum(rng.uniform(1.6, 6.0, 20)) if t < 56.0]
    segments, cuts = _shots(beat_analysis, [0.0, *times, 60.0])
    segments = [dataclasses.replace(s, energy=0.3 + 0.4 * (i % 2)) for i, s in enumerate(segments)]
    checked = 0
    for seed in (1, 2, 3):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=60.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        bass = score.roles.of("bass")[:1]
        assert bass
        line = [n for n in score.notes if n.instrument == bass[0]]
        starts = score.arrangement.texture_starts
        for index, start in enumerate(starts[1:], 1):
            on_bar_line = abs(start - score.forms[index].start_beat) < 1e-6
            end = starts[index + 1] if index + 1 < len(starts) else math.inf
            plays = any(start - 1e-6 <= n.start < end for n in line)
            if on_bar_line or abs(start - round(start)) > 1e-6 or not plays:
                continue
            checked += 1
            near = sorted((n.start, n.end) for n in line if abs(n.start - start) < 2)
            assert any(n.start <= start + 0.05 and n.end > start + 0.1 for n in line), (
                seed, start, near)  # fmt: skip
    assert checked >= 3


def test_the_expression_rises_at_the_cut_not_at_the_bar_line_before_it(generator, beat_analysis):
    """Where a busier section's texture comes in at its cut inside a bar, the players'
    expression (CC 11) rises into that cut, not into the bar line before it: the calm
    texture had played its last two beats at the busy section's expression."""
    score = generator.compose(_calm_turning_busy_at_9_s(beat_analysis, "pop"),
                              Heartbeat(lambda f: None))  # fmt: skip
    plan = score.plan
    busy = next(i for i, s in enumerate(plan.sections) if s.start_s <= 9.0 < s.end_s)
    calm, loud = score.forms[busy - 1], score.forms[busy]
    assert plan.beat_at(9.0) - loud.start_beat == pytest.approx(2.0, abs=0.05)
    performance = _performed(score)

    def expression(controls, time_s: float) -> int:
        return [c.value for c in controls
                if c.controller == 11 and c.sample <= time_s * 48000][-1]  # fmt: skip

    bar_line_s = plan.beat_time(loud.start_beat)
    checked = 0
    for instrument in ("bass", "drums"):
        controls = performance.controls[instrument]
        assert expression(controls, bar_line_s + 0.1) == EXPRESSION[calm.intensity], instrument
        assert expression(controls, 9.05) == EXPRESSION[loud.intensity], instrument
        checked += 1
    assert checked == 2


def test_the_contrast_is_not_the_opening_s_loop_started_elsewhere():
    """B's progression is never A's loop begun on another chord (pop's IV I V vi against
    I V vi IV was heard as the same section with a new tune) where the pool holds another."""
    for style, mode, seed in itertools.product(STYLES.values(), ("major", "minor"), range(12)):
        chosen = choose_progressions(style, mode, np.random.default_rng(seed))
        for key_mode in style.progressions:
            opening, contrast = chosen[key_mode, "A"], chosen[key_mode, "B"]
            loops = {tuple([*opening, *opening][i : i + len(opening)]) for i in range(len(opening))}
            others = [p for p in style.progressions[key_mode]["B"] if tuple(p) not in loops]
            assert tuple(contrast) not in loops or not others, (style.name, key_mode, seed)


def test_a_piece_of_a_few_samples_is_that_long_and_one_of_none_is_refused(generator, beat_analysis):
    """Durations under a note's length (the generator's port takes any positive one): a few
    samples are a piece of a few samples; less than one is the caller's error, not INTERNAL
    (1e-4 s had raised in the parts' balance, with nothing to measure)."""
    for duration_s in (1e-4, 5e-4):
        brief = brief_for(beat_analysis, "pop", duration_s=duration_s)
        music = generator.generate(brief)
        assert len(music.audio) == round(duration_s * brief.sample_rate)
    with pytest.raises(InvalidInputError, match="shorter than one sample"):
        generator.generate(brief_for(beat_analysis, "pop", duration_s=1e-5))


def test_no_stroke_of_the_drums_smears_a_cut_s_hit(generator, beat_analysis):
    """A cut every 1.7 s in every genre: no stroke of the drums sounds within FLAM_S of a
    cut's hit unless struck with it (left out beside a strong cut's hit, struck with a light
    one's). The groove's own strokes had stayed beside the hits, a flam: a snare 42 ms after
    a strong cut's crash and kick, a kick and hat 43 ms after a cowbell (11 beside the 440
    cuts of the ten genres with drums)."""
    from services.generator.backends.composer.arrangement import FLAM_S

    smeared, checked = [], 0
    for genre in STYLES:
        brief = _arc(beat_analysis, genre, seed=1, every_s=1.7)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        onsets = sorted({score.plan.beat_time(n.start) for n in score.notes
                         if n.instrument == "drums"})  # fmt: skip
        if not onsets:
            continue  # ambient: no drums
        checked += 1
        hits = [score.plan.beat_time(beat) for beat in score.arrangement.cut_hits]
        smeared += [(genre, round(hit, 3), round((t - hit) * 1000))
                    for hit in hits for t in onsets
                    if 0.001 < abs(t - hit) <= FLAM_S]  # fmt: skip
    assert checked >= 9 and not smeared, (checked, smeared)


def test_a_drum_struck_twice_at_once_sounds_once_at_the_louder(generator, beat_analysis):
    """Where a cut's hit and the groove's own stroke strike one drum at the same moment,
    what is played is one stroke, the louder: the accent. Whichever came later in the score
    had been kept: with a cut every 2.3 s, the groove's stroke took the accent's place at 13
    of rock's 18 doubled strokes, 15 of electronic's 38 and 10 of hip-hop's 13, all at cuts."""
    from services.generator.backends.composer.backend import _without_overlaps

    lost, doubled = [], 0
    for genre in ("pop", "rock", "electronic", "corporate", "hip-hop"):
        score = generator.compose(_arc(beat_analysis, genre, seed=1, every_s=2.3),
                                  Heartbeat(lambda f: None))  # fmt: skip
        drums = [n for n in score.notes if n.instrument == "drums"]
        loudest: dict[tuple[float, int], int] = {}
        for note in drums:
            key = (round(note.start, 6), note.pitch)
            doubled += key in loudest
            loudest[key] = max(loudest.get(key, 0), note.velocity)
        played = _without_overlaps([dataclasses.replace(n) for n in drums], score.plan,
                                   Heartbeat(lambda f: None))  # fmt: skip
        assert len(played) == len(loudest)
        lost += [(genre, n.start, n.pitch, n.velocity) for n in played
                 if n.velocity < loudest[round(n.start, 6), n.pitch]]  # fmt: skip
    assert doubled > 0 and not lost, (doubled, lost)


def test_a_cut_beside_a_bar_line_is_one_crash_not_two(generator, beat_analysis):
    """Where a cut falls within a beat of a section's bar line (the tempo map could not put it
    on it), the cut's hit is the accent: the bar line's crash a beat after a cut's had
    sounded as a second crash (pop, a cut at 9.75 s and the section at 10.24 s)."""
    cymbals = {CRASH, CRASH_2, SPLASH, CHINA}
    doubled = []
    for genre, seed in itertools.product(("pop", "corporate", "cinematic", "hip-hop"), (1, 2, 3)):
        brief = _arc(beat_analysis, genre, seed=seed, every_s=3.3)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        hits = sorted(n.start for n in score.notes
                      if n.instrument == "drums" and n.pitch in cymbals)  # fmt: skip
        cuts = [score.plan.beat_at(t) for t in score.arrangement.cut_times]
        marks = [min(abs(hit - c) for c in cuts) < 0.05 or min(abs(hit - round(c)) for c in cuts)
                 < 0.05 for hit in hits]  # fmt: skip
        # Two cuts a beat apart are marked each by its own hit; a crash of the music's own
        # within a beat of a cut's hit is the second crash.
        marked = list(zip(hits, marks, strict=True))
        doubled += [(genre, seed, a, b) for (a, mark_a), (b, mark_b) in itertools.pairwise(marked)
                    if 0.05 < b - a <= 1.05 and mark_a != mark_b]  # fmt: skip
    assert not doubled, (len(doubled), doubled[:4])


def test_a_video_cut_every_bar_gets_a_cymbal_every_four_bars_and_every_cut_a_hit(
    generator, beat_analysis
):
    """A video whose every cut is strong, one every 2.5 s (a bar or less): a marking cymbal
    (a section's crash, a strong cut's) sounds at most once in CYMBAL_GAP_BARS but at the
    rises, where one always sounds; every cut is still struck by the drums, and one without a
    cymbal by the band too, over what it plays around it. Each cut had struck its crash, one
    a bar, 23-40 cymbals a minute (a music review); spaced out, a rise's crash had been lost
    to a flat cut's, and a cut without its crash was a harder kick alone (a second review);
    its accent had stood under the bass's swell a third of a beat before it (108 against
    110, hip-hop, seed 1, once the groove turned with the tune's phrases). A rise handed
    over where its segment turns without a cut had no crash at all."""
    close, unmarked, unstabbed, flat_rises = [], [], [], []
    for genre, seed in itertools.product(("pop", "hip-hop", "electronic", "cinematic"), (1, 2)):
        brief = _arc(beat_analysis, genre, seed=seed, duration_s=70.0)
        cuts = [Cut(float(t), "hard", 0.9) for t in np.arange(2.5, 68.0, 2.5)]
        brief = dataclasses.replace(brief, cuts=cuts)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        style, plan = score.style, score.plan
        marking = {style.crash, style.cut_hits[0][0]}
        final = plan.final_beat if plan.final_beat is not None else math.inf
        struck = sorted({round(n.start, 3) for n in score.notes if n.instrument == "drums"
                         and n.pitch in marking and n.start < final - 0.05})  # fmt: skip
        rises = [beat for before, form, texture in zip(score.forms, score.forms[1:],
                                                        score.arrangement.texture_starts[1:],
                                                        strict=False)
                 if form.intensity > before.intensity
                 for beat in (form.start_beat, texture)]  # fmt: skip
        flat_rises += [(genre, seed, form.start_beat) for before, form, texture in
                       zip(score.forms, score.forms[1:], score.arrangement.texture_starts[1:],
                           strict=False)
                       if form.intensity > before.intensity
                       and not any(abs(b - c) <= 1.05 for b in struck
                                   for c in (form.start_beat, texture))]  # fmt: skip
        gap = CYMBAL_GAP_BARS * plan.meter.beats
        close += [(genre, seed, a, b) for a, b in itertools.pairwise(struck)
                  if b - a < gap - 0.05 and not any(abs(x - r) <= 1.05 for x in (a, b)
                                                    for r in rises)]  # fmt: skip
        drums = {round(n.start, 3) for n in score.notes if n.instrument == "drums"}
        # The band's stab is the loudest its accompaniment plays in the two beats around it.
        band: dict[float, int] = defaultdict(int)
        tune = {"drums", *score.roles.of("melody")}
        for note in score.notes:
            if note.instrument not in tune:
                band[round(note.start, 3)] = max(band[round(note.start, 3)], note.velocity)
        around = {round(hit, 3): max((v for b, v in band.items() if 0.01 < abs(b - hit) <= 2),
                                     default=0)
                  for hit in score.arrangement.cut_hits}  # fmt: skip
        unmarked += [(genre, seed, hit) for hit in score.arrangement.cut_hits
                     if round(hit, 3) not in drums]  # fmt: skip
        unstabbed += [(genre, seed, hit) for hit in score.arrangement.cut_hits
                      if round(hit, 3) not in struck
                      and band[round(hit, 3)] < around[round(hit, 3)]
                      and hit < final - 0.05]  # fmt: skip
        assert len(struck) >= 3, (genre, seed, struck)
    assert not close, (len(close), close[:4])
    assert not unmarked, unmarked[:4]
    assert not unstabbed, (len(unstabbed), unstabbed[:4])
    assert not flat_rises, flat_rises


def test_strong_cuts_keep_the_backbeat_on_two_and_four(generator, beat_analysis):
    """Electronic's and corporate's strong cuts, one every 2.5 s on the bar line: no cut's
    hit strikes a clap or snare on beats 1 or 3 (a fill's roll may). Their cut hits had, 12%
    of their claps (18-21% and 10-16% of them on a music review's videos)."""
    on_one = []
    for genre, seed in itertools.product(("electronic", "corporate", "pop"), (1, 2)):
        brief = _arc(beat_analysis, genre, seed=seed, duration_s=70.0)
        cuts = [Cut(float(t), "hard", 0.9) for t in np.arange(2.5, 68.0, 2.5)]
        score = generator.compose(dataclasses.replace(brief, cuts=cuts), Heartbeat(lambda f: None))
        bars = score.plan.bar_starts
        for note in score.notes:
            if note.instrument != "drums" or note.pitch not in (CLAP, SNARE):
                continue
            if hit_key(note.start) not in score.arrangement.cut_hits:
                continue
            bar = bars[max(0, bisect.bisect_right(bars, note.start + 1e-6) - 1)]
            if abs(note.start - bar) < 1e-6 or abs(note.start - bar - 2) < 1e-6:
                on_one.append((genre, seed, note.start))
    assert not on_one, (len(on_one), on_one[:4])


def test_electronic_breaks_down_in_a_calm_stretch_and_drops_on_the_rise(generator, beat_analysis):
    """A busy shot, a calm one, then the busiest: electronic's calm section after the busy
    one is a breakdown, its kick out between the cut's hit and the build's last bar, its pad
    holding the harmony, and the rise is its drop, on a crash and the kick. Its kick had
    played 97-99% of every piece's beats, with no breakdown or drop (a music review); the
    breakdown had been the calm level's thin texture, its pad silent, and a calm close after
    one had brought the kick back (a second review). Its last two bars build to the drop, the
    claps gathering from the beat to the sixteenth (one bar of claps had built to it), and
    its cuts' hits leave the kick out (they had brought it back; a fifth review)."""
    look = Look(0.6, 0.6, 0.5, 0.5)
    shape = [(0.0, 10.0, 0.7), (10.0, 20.0, 0.1), (20.0, 30.0, 0.95), (30.0, 40.0, 0.6),
             (40.0, 44.0, 0.15), (44.0, 50.0, 0.1)]  # fmt: skip
    segments = [Segment(a, b, energy, look, ["happy"]) for a, b, energy in shape]
    cuts = [Cut(t, "hard", 0.9) for t in (10.0, 20.0, 30.0, 40.0, 44.0)]
    kicks, crash = {KICK, ACOUSTIC_KICK}, STYLES["electronic"].crash
    for seed in (1, 2, 3):
        brief = brief_for(beat_analysis, "electronic", seed=seed, duration_s=50.0,
                          segments=segments, cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        calm = [form for before, form in itertools.pairwise(score.forms)
                if form.intensity <= 1 < before.intensity]  # fmt: skip
        assert calm, (seed, [(f.start_beat, f.intensity) for f in score.forms])
        form = calm[0]
        last_bar = max(b for b in score.plan.bar_starts if b < form.end_beat)
        drums = [n for n in score.notes if n.instrument == "drums"]
        # No kick from its first beat to the drop: the cuts' hits (its opening cut's, a
        # strong one at 40 s in the calm close) and the fills leave it out too.
        inside = [n.start for n in drums if n.pitch in kicks
                  and form.start_beat - 1e-6 < n.start < form.end_beat - 1e-6]  # fmt: skip
        assert not inside, (seed, form.start_beat, last_bar, inside)
        assert any(n.pitch in (CLAP, HAT) and form.start_beat < n.start < last_bar
                   for n in drums), seed  # fmt: skip
        drop = {n.pitch for n in drums if abs(n.start - form.end_beat) < 1e-6}
        assert crash in drop and drop & kicks, (seed, drop)
        bars = [b for b in score.plan.bar_starts if form.start_beat <= b < form.end_beat]
        claps = [sum(1 for n in drums if n.pitch == CLAP and bar <= n.start < bar + 4)
                 for bar in bars[-3:]]  # fmt: skip
        assert claps[0] < claps[1] < claps[2] and claps[2] >= 10, (seed, bars, claps)
        pads = [n for n in score.notes if n.instrument == "pads"
                and form.start_beat <= n.start < form.end_beat]  # fmt: skip
        assert pads, seed
        # The calm close, after the busy section's breakdown, keeps the kick out to its
        # final chord (but for its cut's hit).
        close = [f for f in score.forms if f.start_beat >= form.end_beat and f.intensity <= 1]
        assert close, (seed, [(f.start_beat, f.intensity) for f in score.forms])
        final = score.plan.final_beat
        assert final is not None
        late = [n.start for n in drums if n.pitch in kicks
                and close[0].start_beat - 1e-6 < n.start < final - 1e-6]  # fmt: skip
        assert not late, (seed, close[0].start_beat, final, late)


@pytest.mark.parametrize("genre", ["pop", "lo-fi"])
def test_a_long_take_s_groove_turns_with_the_tune_s_phrases(generator, beat_analysis, genre):
    """One minute-long shot: the drums' groove turns only where the tune starts a phrase
    (every four bars from its entry). Counted from the section's start, it had turned two
    bars into each of the tune's phrases after a two-bar intro (a music review, 6 of 6
    genres)."""
    segments = [Segment(0.0, 60.0, 0.6, Look(0.6, 0.6, 0.5, 0.5), ["happy"])]
    brief = brief_for(beat_analysis, genre, seed=1, duration_s=60.0, segments=segments, cuts=[])
    score = generator.compose(brief, Heartbeat(lambda f: None))
    beats = score.plan.meter.beats
    bars = [b for b in score.plan.bar_starts if score.plan.final_beat is None
            or b + beats <= score.plan.final_beat]  # fmt: skip
    melody = set(score.roles.of("melody"))
    first = min(n.start for n in score.notes if n.instrument in melody)
    entry = max(i for i, bar in enumerate(bars) if bar <= first + 1e-6)
    assert entry > 0, "the test wants an intro before the tune"
    # Each bar's strokes but on its last beat, where a fill may go.
    grooves = [frozenset((round(n.start - bar, 3), n.pitch) for n in score.notes
                         if n.instrument == "drums" and bar <= n.start < bar + beats - 1)
               for bar in bars]  # fmt: skip
    turns = [i for i in range(1, len(bars)) if grooves[i] != grooves[i - 1]]
    assert turns, genre
    assert all((i - entry) % 4 == 0 for i in turns if i > entry), (genre, entry, turns)


def test_the_bass_s_fifth_lies_under_the_chord_not_over_its_root(generator, beat_analysis):
    """The bass plays a chord's fifth within its register, below the root where above would
    leave it: over its top it had sounded over the strummed guitar's low root (B2 under the
    bass's F#3 on IV in acoustic, 17 times in three minutes)."""
    over = []
    for genre, seed in itertools.product(("acoustic", "folk", "rock", "pop"), (1, 2, 3)):
        score = generator.compose(_arc(beat_analysis, genre, seed=seed),
                                  Heartbeat(lambda f: None))  # fmt: skip
        chordal = {*score.roles.of("comping"), *score.roles.of("pad"), *score.roles.of("pulse")}
        chordal -= {"bass", "drums"}
        for bass in (n for n in score.notes if n.instrument == "bass"):
            span = _span_at(score, bass.start)
            if span is None or bass.pitch % 12 != (span.chord.root + span.chord.fifth) % 12:
                continue
            under = [n.pitch for n in score.notes if n.instrument in chordal
                     and bass.start <= n.start < bass.end and n.pitch < bass.pitch]  # fmt: skip
            if under:
                over.append((genre, seed, span.numeral, bass.pitch, min(under)))
    assert not over, (len(over), over[:4])


def test_a_cancelled_piece_leaves_no_memory_for_the_cycle_collector(generator, beat_analysis):
    """A piece cancelled while it renders: its error, kept as the job's result, had held the
    frames of its traceback (the audio) in a reference cycle until the collector's next full
    pass (2 GB for a long piece, seen in a server after a cancel; 2237 objects here)."""
    import gc

    from services.generator.backend import GenerationJob

    def progress(fraction: float) -> None:
        if fraction > 0.5:
            raise CancelledError("cancelled")

    gc.collect()
    gc.disable()
    try:
        results = generator.generate_batch(
            [GenerationJob(brief_for(beat_analysis, "pop"), progress)]
        )
        assert isinstance(results[0], CancelledError)
        del results
        assert gc.collect() < 100
    finally:
        gc.enable()


@pytest.mark.parametrize("genre", ["cinematic", "orchestral"])
def test_an_orchestral_kits_timpani_play_the_chord(generator, beat_analysis, genre):
    """On the Orchestra kit the toms are timpani at fixed pitches (F2-F3): played as a
    standard kit's keys they had ignored the key (63% of cinematic's hits off the chord, its
    section crashes a C# timpano). They play the chord's root and fifth, and the cymbals are
    the kit's own; on a standard kit the drums are as written."""
    from bisect import bisect_right

    from services.generator.backends.composer.arrangement import on_kit

    score = generator.compose(brief_for(beat_analysis, genre), Heartbeat(lambda f: None))
    spans = [*score.arrangement.harmony, score.arrangement.final]
    starts = [span.start for span in spans]
    played = on_kit(score.notes, 48, score.arrangement)
    timpani = [n for n in played if n.instrument == "drums" and 41 <= n.pitch <= 53]
    assert len(timpani) > 20
    for note in timpani:
        sounding = spans[bisect_right(starts, note.start + 1e-9) - 1].chord
        assert note.pitch % 12 in sounding.pitch_classes, (note, sounding)
    # The crash (49) and the ride (51) on the kit's concert cymbal and ride.
    cymbals = [(w.pitch, p.pitch) for w, p in zip(score.notes, played, strict=True)
               if w.instrument == "drums" and w.pitch in (49, 51)]  # fmt: skip
    assert cymbals and all(kit_key == {49: 57, 51: 30}[key] for key, kit_key in cymbals)
    assert on_kit(score.notes, 0, score.arrangement) == score.notes


def test_no_groove_opens_and_closes_the_hi_hat_at_once():
    """One hi-hat is not open and closed at once (a GM kit's closed hat chokes the open one):
    electronic's and hip-hop's busiest grooves had struck the closed hat with every open
    one, 77 of 129 and 12 of 12 open hats on a music review's video."""
    from services.generator.backends.composer.styles import HAT, OPEN_HAT, PEDAL_HAT

    both = []
    for style in STYLES.values():
        for meter, grooves in style.grooves.items():
            for level, variants in grooves.items():
                for number, groove in enumerate(variants):
                    opened = groove.get(OPEN_HAT, "")
                    for closed in (groove.get(HAT, ""), groove.get(PEDAL_HAT, "")):
                        steps = [i for i, (a, b) in enumerate(zip(opened, closed, strict=False))
                                 if a != "." and b != "."]  # fmt: skip
                        if steps:
                            both.append((style.name, meter, level, number, steps))
    assert not both, both


def test_a_soft_toned_tune_is_touched_gently(generator, beat_analysis):
    """Ambient's piano and lo-fi's kalimba play their tunes gently, mellow rather than
    struck (the mix's balance keeps them forward); pop's lead keeps its edge over the band.
    Every tune had been played at a median velocity of 104-108, ambient's piano 108 and
    lo-fi's vibraphone 106 (a music review)."""
    medians = {}
    for genre in ("ambient", "lo-fi", "pop"):
        brief = brief_for(beat_analysis, genre, duration_s=30.0)
        tune = generator.compose(brief, Heartbeat(lambda f: None)).roles.of("melody")[0]
        song = pretty_midi.PrettyMIDI(io.BytesIO(generator.generate(brief).midi))
        played = [n.velocity for i in song.instruments if i.name == tune for n in i.notes]
        medians[genre] = float(np.median(played))
    assert medians["ambient"] <= 90 and medians["lo-fi"] <= 90, medians
    assert medians["pop"] >= 100, medians


def test_corporate_runs_one_layer_of_sixteenths_at_most(generator, beat_analysis):
    """A busy corporate section runs one part in sixteenths at most and strikes no cowbell:
    its shaker, marimba and piano had all run in sixteenths, with a cowbell, heard as
    techno (a music review: 394 shaker strokes and 445 marimba notes in 59 s)."""
    from services.generator.backends.composer.styles import COWBELL

    brief = _busy(brief_for(beat_analysis, "corporate", duration_s=30.0))
    score = generator.compose(brief, Heartbeat(lambda f: None))
    assert {form.intensity for form in score.forms[1:]} == {3}
    assert not any(n.pitch == COWBELL for n in score.notes if n.instrument == "drums")
    layers = []
    for bar in score.plan.bar_starts[2:-2]:
        steps: dict[str, set[int]] = {}
        for note in score.notes:
            if bar <= note.start < bar + 4:
                steps.setdefault(note.instrument, set()).add(round((note.start - bar) * 4))
        layers.append({i for i, s in steps.items() if len(s) >= 12})
    # A layer runs for two bars at least: one bar of a fill, or of a cut's accents, runs
    # nothing.
    running = [now & before for before, now in itertools.pairwise(layers)]
    assert len(layers) > 8 and max(len(parts) for parts in running) <= 1, layers


def test_the_orchestra_keeps_no_kit_cymbal_time(generator, beat_analysis):
    """Orchestral percussion is timpani and a bass drum, its cymbal the crash at a section's
    peak: no ride or hi-hat keeps time through a loud orchestral piece (a ride in quarter
    notes had, 93 strokes in a music review's 97 s piece)."""
    from services.generator.backends.composer.styles import (
        HAT,
        OPEN_HAT,
        PEDAL_HAT,
        RIDE,
        RIDE_BELL,
    )

    # The groove's own keys, before the kit plays them: on the orchestra set 41-53 are
    # timpani (42 a timpano's F#, not a hi-hat), its hi-hats and ride at 27-30.
    timekeepers = {HAT, PEDAL_HAT, OPEN_HAT, RIDE, RIDE_BELL}
    brief = _busy(brief_for(beat_analysis, "orchestral", duration_s=30.0))
    score = generator.compose(brief, Heartbeat(lambda f: None))
    drums = score.roles.of("drums")
    strokes = [n.pitch for n in score.notes if n.instrument in drums]
    assert len(strokes) > 50
    assert not timekeepers & set(strokes), sorted(timekeepers & set(strokes))


def test_a_theme_comes_back_where_it_began(generator, beat_analysis):
    """A video whose look goes back and forth, in every genre: the tune comes in after the
    intro on its progression's first chord with its motif, and the returns of a material
    (in the same key) begin on the note its first statement began on (all but those where
    it lies more than a fifth from the tune, as no bar starts: 26 of 27 here). The returns
    had begun wherever the line stood (the first notes matched in 30 of 148 returns of a
    music review's 97 s video), and after an intro the tune had come in on its phrase's
    third bar over the progression's third chord, so no return sounded like the opening."""
    opening, other = Look(0.3, 0.4, 0.4, 0.5), Look(0.8, 0.8, 0.7, 0.6)
    segments = [Segment(8.0 * i, 8.0 * (i + 1), 0.4, opening if i % 2 == 0 else other,
                        ["happy"]) for i in range(5)]  # fmt: skip
    cuts = [Cut(8.0 * i, "hard", 0.8) for i in range(1, 5)]
    returns, entries, again = 0, 0, 0
    for genre in STYLES:
        brief = brief_for(beat_analysis, genre, duration_s=40.0, segments=segments, cuts=cuts)
        score = generator.compose(brief, Heartbeat(lambda f: None))
        tune = score.roles.of("melody")[:1]
        if not tune:
            continue
        harmony = score.arrangement.harmony
        # The tune's entry (after the pickup's anacrusis), on its section's first chord (a
        # first shot of up to three bars is all intro: the tune comes in with the second).
        downbeat = score.plan.first_downbeat
        entry = min(n.start for n in score.notes
                    if n.instrument == tune[0] and n.start >= downbeat - 1e-6)  # fmt: skip
        bar_line = max(b for b in score.plan.bar_starts if b <= entry + 1e-6)
        section = next(f for f in reversed(score.forms) if f.start_beat <= bar_line)
        opening = (
            harmony[0]
            if section is score.forms[0]
            else next(span for span in harmony if span.start >= section.start_beat - 1e-6)
        )
        chord = next(span for span in reversed(harmony) if span.start <= bar_line)
        assert chord.numeral == opening.numeral, (genre, chord.numeral, opening.numeral)
        entries += 1
        first: dict[str, tuple[Key, int]] = {}
        for before, form in zip([None, *score.forms[:-1]], score.forms, strict=True):
            if before is not None and before.material == form.material:
                continue
            # (The pickup's anacrusis, before the first bar line, leads into the tune.)
            downbeat = max(form.start_beat, score.plan.first_downbeat)
            notes = sorted((n for n in score.notes if n.instrument == tune[0]
                            and downbeat - 1e-6 <= n.start < form.end_beat),
                           key=lambda n: n.start)  # fmt: skip
            if not notes:
                continue
            if form.material not in first:
                first[form.material] = (form.key, notes[0].pitch % 12)
            elif first[form.material][0] == form.key:
                returns += 1
                again += notes[0].pitch % 12 == first[form.material][1]
    assert entries >= 10 and returns >= 25, (entries, returns)
    assert again >= 0.9 * returns, (again, returns)


def test_a_long_tune_develops_and_closes_on_its_opening(generator, beat_analysis):
    """Two minutes of a montage whose shots never look like the first: the tune's bars are
    not one rhythm looped (its motif is answered within each phrase and varied on each
    return: one bar rhythm had filled 76-79% of the tune's bars in a music review), and the
    last section brings back the opening material (it had never come back)."""
    looks = [Look(0.2 + 0.05 * (i % 5), 0.9 - 0.1 * (i % 4), 0.8, 0.3 + 0.1 * (i % 3))
             for i in range(15)]  # fmt: skip
    segments = [Segment(8.0 * i, 8.0 * (i + 1), 0.3 + 0.2 * (i % 3), look, ["happy"])
                for i, look in enumerate(looks)]  # fmt: skip
    cuts = [Cut(8.0 * i, "hard", 0.8) for i in range(1, 15)]
    brief = brief_for(beat_analysis, "pop", duration_s=120.0, segments=segments, cuts=cuts)
    score = generator.compose(brief, Heartbeat(lambda f: None))
    materials = [form.material for form in score.forms]
    assert materials[0] == materials[-1] == "A" and "B" in materials
    melody = score.roles.of("melody")[0]
    bar_beats = score.plan.meter.beats
    rhythms: Counter[tuple[float, ...]] = Counter()
    for first in score.plan.bar_starts:
        onsets = {round(n.start - first, 2) for n in score.notes if n.instrument == melody
                  and first - 1e-6 <= n.start < first + bar_beats - 1e-6}  # fmt: skip
        if onsets:
            rhythms[tuple(sorted(onsets))] += 1
    assert sum(rhythms.values()) > 30
    assert max(rhythms.values()) <= 0.4 * sum(rhythms.values()), rhythms.most_common(3)


def test_a_tune_s_phrases_go_on_through_cuts_between_shots_alike(generator, beat_analysis):
    """Shots that look alike, cut at irregular times: one material throughout, and the tune's
    four-bar phrases go on through the cuts to their closing notes, as its chords do
    (restarted at every section, a music review's 4-minute pop piece had closed 18 of its 41
    phrases)."""
    look = Look(0.5, 0.5, 0.5, 0.5)
    times = [0.0, 5.3, 11.9, 15.2, 22.8, 27.1, 34.6, 39.0, 45.5, 51.2, 56.0, 63.4, 70.0]
    segments = [Segment(a, b, 0.5, look, ["happy"]) for a, b in itertools.pairwise(times)]
    cuts = [Cut(a, "hard", 0.8) for a in times[1:-1]]
    brief = brief_for(beat_analysis, "pop", duration_s=70.0, segments=segments, cuts=cuts)
    score = generator.compose(brief, Heartbeat(lambda f: None))
    assert {form.material for form in score.forms} == {"A"} and len(score.forms) > 6
    melody = score.roles.of("melody")[0]
    bar_beats = score.plan.meter.beats
    tune_bars = closing = 0
    for first in score.plan.bar_starts:
        notes = [n for n in score.notes if n.instrument == melody
                 and first - 1e-6 <= n.start < first + bar_beats - 1e-6]  # fmt: skip
        tune_bars += bool(notes)
        held = len(notes) == 1 and abs(notes[0].start - first) < 1e-6
        closing += held and notes[0].end - notes[0].start >= 1.5
    assert tune_bars > 24
    assert closing >= tune_bars // 4 - 1, (closing, tune_bars)


def test_a_long_scene_is_not_one_four_bar_unit_looped(generator, beat_analysis):
    """A scene of a minute and a half: the tune and its chords are stated again developed every
    STATEMENT_BARS (a minute-long scene had played one four-bar unit, tune and chords, six
    times over: 25 bars each the copy of the bar four before)."""
    segment = Segment(0.0, 90.0, 0.5, Look(0.5, 0.5, 0.5, 0.5), ["happy"])
    brief = brief_for(beat_analysis, "pop", duration_s=90.0, segments=[segment], cuts=[])
    score = generator.compose(brief, Heartbeat(lambda f: None))
    melody = score.roles.of("melody")[0]
    bar_beats = score.plan.meter.beats
    bars = []
    for first in score.plan.bar_starts:
        tune = tuple(sorted((round(n.start - first, 2), n.pitch) for n in score.notes
                            if n.instrument == melody
                            and first - 1e-6 <= n.start < first + bar_beats - 1e-6))  # fmt: skip
        chords = tuple(span.numeral for span in score.arrangement.harmony
                       if first - 1e-6 <= span.start < first + bar_beats - 1e-6)  # fmt: skip
        bars.append((tune, chords))
    assert len(bars) > 40
    longest = run = 0
    for i in range(4, len(bars)):
        run = run + 1 if bars[i] == bars[i - 4] and bars[i][0] else 0
        longest = max(longest, run)
    # Within a statement its second phrase may repeat the first: four bars, and at most a
    # few more where the next statement's change comes later in its phrase.
    assert longest < 2 * STATEMENT_BARS - 4, longest
    # And the drums' groove turns over every four bars (counted from the statements too, it
    # had held for eight at each statement's turn): the main strokes of a phrase's first
    # three bars differ from the phrase's before.
    drums = score.roles.of("drums")[0]
    entry = next(i for i, (tune, _) in enumerate(bars) if tune)
    strokes = [tuple(sorted((round(n.start - first, 2), n.pitch) for n in score.notes
                            if n.instrument == drums and n.velocity >= 70
                            and first - 1e-6 <= n.start < first + bar_beats - 1e-6))
               for first in score.plan.bar_starts[entry:]]  # fmt: skip
    phrases = [strokes[i : i + 3] for i in range(0, len(strokes) - 3, 4)]
    assert all(a != b for a, b in itertools.pairwise(phrases)), phrases


@pytest.mark.parametrize(
    ("genre", "duration_s"),
    [*[("pop", d) for d in (1.0, 2.0, 3.0, 5.0, 17.0)], *[("rock", d) for d in (3.0, 5.0, 17.0)]],
)
def test_a_cadence_rings_out_inside_the_video_whatever_its_length(
    generator, beat_analysis, genre, duration_s
):
    """The final chord is let go inside the video with room to ring: the pitched parts' last
    notes end before the video does and the last 10 ms are near silence. A 1-2 s piece had
    been cut mid-chord (the MIDI ran 0.26 s past the video, its last 10 ms at -7 dBFS) and a
    3-17 s one faded in 0.1-0.25 s, where the hold of a second pushed the release to the end."""
    music = generator.generate(brief_for(beat_analysis, genre, duration_s=duration_s))
    assert music.plan.ending == "cadence"
    midi = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    # (A drum may still mark a cut in the tail.)
    last_note_off = max(n.end for i in midi.instruments if not i.is_drum for n in i.notes)
    final = music.plan.final_chord_s
    ring_s = STYLES[genre].production.space.ring_s
    assert last_note_off <= duration_s - min(ring_s, 0.4 * (duration_s - final)) + 1e-3
    assert _end_under_loudest_db(music, window_s=0.1, end_s=0.01) <= -30.0


def test_the_final_chord_is_held_before_it_is_let_go(generator, beat_analysis):
    """Whatever the length, the final chord sounds three quarters of a second at least before
    its release, the rest of the time left ringing out (where the last bar line left little
    room it had been let go within 0.3 s, a stab)."""
    from services.generator.backends.composer.arrangement import release_tail_s
    from services.generator.backends.composer.timing import ENDING_HOLD_S

    held = []
    for duration_s in np.arange(20.0, 24.0, 0.25):
        brief = brief_for(beat_analysis, "hip-hop", duration_s=float(duration_s))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        final = score.arrangement.final
        assert final is not None
        held.append(score.plan.beat_time(final.end) - score.plan.beat_time(final.start))
    ring_s = STYLES["hip-hop"].production.space.ring_s
    shortest = ENDING_HOLD_S + ring_s - release_tail_s(ENDING_HOLD_S + ring_s, ring_s)
    assert shortest >= 0.75
    assert min(held) >= shortest - 1e-3, held


def test_a_final_chord_with_time_to_spare_is_held_until_its_ring(generator, beat_analysis):
    """Slow genres on a 15 s clip whose last cut is 3.6 s before the end: where the final
    chord comes a bar early, it is held until its space's ring before the end (it had been let
    go 1.44 s before it, a 40% share, its room's 0.9 s ring spent early and the last 0.7-1.0 s
    30 dB under the music; a music review)."""
    from services.generator.backends.composer.arrangement import FINAL_HOLD_S

    segments, cuts = _shots(beat_analysis, CLIP_15_S)
    spare = 0
    for genre, seed in itertools.product(("hip-hop", "lo-fi", "acoustic", "folk"), (1, 2)):
        brief = brief_for(beat_analysis, genre, seed=seed, duration_s=15.0, segments=segments,
                          cuts=cuts)  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, final = score.plan, score.arrangement.final
        assert final is not None
        ring_s = plan.ring_s
        after = 15.0 - plan.beat_time(final.start)
        released = plan.beat_time(score.arrangement.end_beat)
        if after >= FINAL_HOLD_S + 2.5 * ring_s:
            spare += 1
        if after >= FINAL_HOLD_S + ring_s:
            assert released == pytest.approx(15.0 - ring_s, abs=0.01), (genre, seed, after)
    assert spare >= 2


def test_a_hall_lets_its_final_chord_ring(generator, beat_analysis):
    """In a hall (ambient, cinematic, orchestral) a piece of LONG_RING_MIN_S or more has its
    final chord come early enough for its release to ring out (Space.ring_s, 1.6 s, where the
    piece leaves room), not faded within 0.9 s as in a room, or less: a hall's 2.8 s ring had
    been faded in 0.5-0.7 s, at 32-48 dB/s where it decays at 21 (a music review). A shorter
    piece places its final chord as in a room (a bar's earlier final chord would be much of
    it), and where that chord has time it still rings the hall's ring: it had been held to
    0.9 s before the end, and the last 0.3 s fell 13 dB in 125 ms (15 s clips, a review)."""
    from services.generator.backends.composer.arrangement import FINAL_HOLD_S
    from services.generator.backends.composer.production import HALL, ROOM_RING_S
    from services.generator.backends.composer.timing import ENDING_HOLD_S

    def tails(genre: str, shortest_s: float = 30.0) -> list[float]:
        left = []
        for duration_s in np.arange(shortest_s, shortest_s + 4.0, 0.5):
            brief = brief_for(beat_analysis, genre, duration_s=float(duration_s))
            score = generator.compose(brief, Heartbeat(lambda f: None))
            assert score.arrangement.final is not None
            left.append(float(duration_s) - score.plan.beat_time(score.arrangement.end_beat))
        return left

    room = float(np.mean(tails("pop")))
    for genre in ("ambient", "cinematic", "orchestral"):
        hall = tails(genre)
        assert min(hall) >= 0.95 and float(np.mean(hall)) >= max(1.3, room + 0.3), (hall, room)
    rung = 0
    for duration_s in np.arange(15.0, 21.0, 0.5):
        brief = brief_for(beat_analysis, "cinematic", duration_s=float(duration_s))
        score = generator.compose(brief, Heartbeat(lambda f: None))
        plan, final = score.plan, score.arrangement.final
        assert final is not None
        struck = plan.beat_time(final.start)
        later_bars = [plan.beats_s[b] for b in plan.bar_starts if plan.beats_s[b] > struck]
        assert all(t > duration_s - ENDING_HOLD_S - ROOM_RING_S for t in later_bars), duration_s
        if duration_s - struck >= FINAL_HOLD_S + HALL.ring_s:
            released = plan.beat_time(score.arrangement.end_beat)
            assert duration_s - released == pytest.approx(HALL.ring_s, abs=0.01), duration_s
            rung += 1
    assert rung >= 3


@pytest.mark.parametrize("genre", ["pop", "cinematic", "ambient"])
def test_a_calm_piece_ends_as_softly_as_it_plays(generator, beat_analysis, genre):
    """The final chord is played as its section's bars are: in a calm piece no part's last
    chord stands over what it played before, and no crash marks it (a calm section's bar
    lines have none). It had come at one velocity whatever the section: a calm piece's
    pads 10 over their bars, its strings 6, and a kick and crash over any drum before."""
    brief = brief_for(beat_analysis, genre, duration_s=16.0)
    calm = [dataclasses.replace(segment, energy=0.2) for segment in brief.segments]
    # No cut at the final chord, whose hit would stand over it.
    brief = dataclasses.replace(brief, segments=calm, cuts=[],
                                tags=dataclasses.replace(brief.tags, energy=0.2))  # fmt: skip
    score = generator.compose(brief, Heartbeat(lambda f: None))
    assert {form.intensity for form in score.forms} == {1}
    final = score.arrangement.final
    assert final is not None
    by_instrument: dict[str, tuple[list[Note], list[Note]]] = {}
    for note in score.notes:
        body, last = by_instrument.setdefault(note.instrument, ([], []))
        (last if abs(note.start - final.start) < 1e-6 else body).append(note)
    for instrument, (body, last) in by_instrument.items():
        if instrument == "drums":
            assert not any(n.pitch == STYLES[genre].crash for n in last), genre
            # No louder than the calm grooves' strokes (before: 100-108 with a crash).
            assert max(n.velocity for n in last) <= max(n.velocity for n in body), last
        else:
            velocities = [n.velocity for n in body]
            assert last and np.mean([n.velocity for n in last]) <= np.percentile(velocities, 90)


def test_keys_are_spelled_as_musicians_write_them():
    """C# and G# minor, not Db and Ab minor (8 and 7 flats), which a music review found in
    plans (a B minor piece lifted a whole step read "Db minor"); major keys keep their flats."""
    assert [Key(tonic, "minor").name for tonic in (1, 3, 6, 8, 10)] == [
        "C# minor", "Eb minor", "F# minor", "G# minor", "Bb minor"]  # fmt: skip
    assert [Key(tonic, "major").name for tonic in (1, 3, 6, 8, 10)] == [
        "Db major", "Eb major", "F# major", "Ab major", "Bb major"]  # fmt: skip
    assert all(
        Key.parse(Key(t, m).name) == Key(t, m) for t in range(12) for m in ("major", "minor")
    )


@pytest.mark.parametrize("genre", ["pop", "ambient", "folk"])
def test_a_long_scene_s_tune_rests_for_whole_phrases_while_the_band_plays_on(
    generator, beat_analysis, genre
):
    """A scene of a minute and a half: the tune rests now and then for a whole four-bar
    phrase, the band playing on (a tune in 113-125 bars of 118-126 had tired four- and
    five-minute pieces in a music review), as often as the genre's row says."""
    segment = Segment(0.0, 90.0, 0.5, Look(0.5, 0.5, 0.5, 0.5), ["happy"])
    brief = brief_for(beat_analysis, genre, duration_s=90.0, segments=[segment], cuts=[])
    score = generator.compose(brief, Heartbeat(lambda f: None))
    melody = score.roles.of("melody")[0]
    bar_beats = score.plan.meter.beats
    final = score.plan.final_beat

    def playing(first: int, tune: bool) -> bool:
        return any((n.instrument == melody) == tune and first - 1e-6 <= n.start
                   < first + bar_beats - 1e-6 for n in score.notes)  # fmt: skip

    bars = [b for b in score.plan.bar_starts if final is None or b < final]
    tune = [playing(first, True) for first in bars]
    entry = tune.index(True)
    rests = [len(gap) for gap in "".join("x" if t else "." for t in tune[entry:]).split("x")
             if gap]  # fmt: skip
    every = STYLES[genre].tune_rests
    statements = (len(bars) - entry) // STATEMENT_BARS
    assert len(rests) >= max(1, statements // every - 1), (rests, statements, every)
    assert all(rest == 4 for rest in rests[:-1]) and 0 < rests[-1] <= 4, rests
    assert all(playing(first, False) for first in bars[entry:]), "the band stopped too"


@pytest.mark.parametrize(
    ("genre", "holder"),
    [("lo-fi", "pads"), ("hip-hop", "pads"), ("lo-fi", "strings"), ("ambient", "strings")],
)
def test_a_pad_strikes_a_held_tone_again_rather_than_droning_it(generator, beat_analysis, genre,
                                                                 holder):  # fmt: skip
    """A minute and a half of one contrasting scene, with pads or strings asked for: they tie
    a tone their chords share across bars for LONGEST_TIE_S at most, then strike it again
    with the next chord (here a lo-fi and a hip-hop pad had held one note 69 s; in a
    long-form review 87-105 s, under every chord of three sections; lo-fi's strings, playing
    the pad, had held one note through a whole 3-minute piece)."""
    opening, contrast = Look(0.3, 0.4, 0.4, 0.5), Look(0.8, 0.8, 0.7, 0.6)
    segments = [Segment(0.0, 20.0, 0.5, opening, ["happy"]),
                Segment(20.0, 90.0, 0.5, contrast, ["happy"])]  # fmt: skip
    brief = brief_for(beat_analysis, genre, duration_s=90.0, segments=segments,
                      cuts=[Cut(20.0, "hard", 0.8)])  # fmt: skip
    tags = dataclasses.replace(brief.tags, instruments=[*brief.tags.instruments, holder])
    music = generator.generate(dataclasses.replace(brief, tags=tags))
    song = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    track = next(track for track in song.instruments if track.name == holder)
    held = [note.end - note.start for note in track.notes]
    bar_s = music.plan.bars_s[2] - music.plan.bars_s[1]
    assert max(held) <= LONGEST_TIE_S[holder] + 0.01, max(held)
    assert max(held) > 1.5 * bar_s, f"the {holder} no longer tie a held tone"


@pytest.mark.parametrize("genre", ["acoustic", "folk", "orchestral", "cinematic"])
def test_the_tempo_meets_irregular_cuts_without_rushing(generator, beat_analysis, genre):
    """Cuts 1.5-6 s apart at random, in the genres whose tempo map may drift most (8%): the
    map still puts most of them on beats, and within any 3 s its fastest beat is at most 6%
    faster than its slowest (gliding 2% a beat, it had swung 7-8% within 3 s here to meet
    them, 10% on bench_music's videos: a band heard rushing into its cuts)."""
    gaps = np.random.default_rng(7).uniform(1.5, 6.0, 40)
    bounds = [0.0, *np.cumsum(gaps)[np.cumsum(gaps) < 58.0].tolist(), 60.0]
    segments, cuts = _shots(beat_analysis, bounds)
    on_beats = swings = 0.0
    for seed in (1, 2):
        brief = brief_for(beat_analysis, genre, duration_s=60.0, segments=segments, cuts=cuts,
                          seed=seed)  # fmt: skip
        plan = generator.compose(brief, Heartbeat(lambda f: None)).plan
        beats = np.asarray(plan.beats_s)
        periods = np.diff(beats)
        for start in beats[:-1]:
            inside = periods[(beats[:-1] >= start) & (beats[1:] <= start + 3.0)]
            if inside.size:
                swings = max(swings, inside.max() / inside.min() - 1.0)
        nearest = np.abs(beats[None, :] - np.array([c.time_s for c in cuts])[:, None]).min(1)
        on_beats += float(np.mean(nearest <= ON_BEAT_S)) / 2
    assert swings <= 0.06, swings
    assert on_beats >= 0.7, on_beats


def _groove_figures(score) -> tuple[float, float]:
    """The share of whole beats (before the final chord) whose drums strike a kick, and the
    share of the backbeat's strokes (snare, clap, side stick) on beats 1 and 3 of a 4/4 bar."""
    from services.generator.backends.composer.styles import CLAP, KICK, SIDE_STICK, SNARE

    kicks = {KICK, 35}
    backbeat = {SNARE, CLAP, SIDE_STICK, 40}
    final = score.arrangement.final.start if score.arrangement.final is not None else math.inf
    drums = [n for n in score.notes
             if n.instrument in score.roles.of("drums")[:1] and n.start < final]  # fmt: skip
    first = min(n.start for n in drums)
    whole = range(math.ceil(first), math.floor(min(final, score.arrangement.end_beat)))
    on_beats = [n for n in drums if abs(n.start - round(n.start)) < 0.05]
    kicked = {round(n.start) for n in on_beats if n.pitch in kicks}
    strokes = [n for n in on_beats if n.pitch in backbeat]
    odd = [n for n in strokes if (round(n.start) - score.plan.first_downbeat) % 2 == 0]
    return len(kicked & set(whole)) / max(1, len(whole)), len(odd) / max(1, len(strokes))


@pytest.mark.parametrize("genre", ["hip-hop", "lo-fi", "pop", "corporate", "rock"])
def test_a_flurry_of_cuts_keeps_the_groove(generator, beat_analysis, genre):
    """A montage of 0.8 s shots: each cut is marked without the groove giving way to the
    marks. Every weak cut on a beat had struck the genre's whole weak hit (a cowbell with a
    kick, a splash with a snare), so a montage cut on every beat turned hip-hop's boom-bap
    into a kick on 93% of its beats (36% with a cut every 2.5 s), lo-fi's into a side stick
    on 97% and put pop's snare on beats 1 and 3 (a music review)."""
    figures = {}
    for name, gap in (("montage", 0.8), ("shots", 8.0)):
        bounds = [round(gap * i, 3) for i in range(round(32.0 / gap) + 1)]
        segments, cuts = _shots(beat_analysis, bounds)
        brief = brief_for(beat_analysis, genre, seed=1, cuts=cuts, segments=segments,
                          duration_s=bounds[-1])  # fmt: skip
        figures[name] = _groove_figures(generator.compose(brief, Heartbeat(lambda f: None)))
    (montage_kicks, montage_odd), (shots_kicks, shots_odd) = figures["montage"], figures["shots"]
    assert montage_kicks <= shots_kicks + 0.15, figures
    assert montage_odd <= shots_odd + 0.1, figures


@pytest.mark.parametrize("genre", ["pop", "hip-hop", "lo-fi", "corporate", "rock", "acoustic"])
def test_a_long_calm_shot_s_drums_mark_its_phrases(generator, beat_analysis, genre):
    """One calm 60 s shot: the drums mark the end of every eighth bar's phrase with a fill
    on its last beat. They had looped two bars for the whole minute (AAAABBBBAAAA...), no
    bar unlike its neighbours (a music review)."""
    shot = dataclasses.replace(beat_analysis.segments[0], start_s=0.0, end_s=60.0, energy=0.1)
    brief = brief_for(beat_analysis, genre, seed=1, cuts=[], segments=[shot], duration_s=60.0)
    score = generator.compose(brief, Heartbeat(lambda f: None))
    drums = score.roles.of("drums")[:1]
    starts = score.plan.bar_starts
    final = score.arrangement.final.start if score.arrangement.final is not None else math.inf
    bars: list[frozenset] = []
    for start, end in itertools.pairwise(starts):
        if end > final:
            break
        bars.append(frozenset((n.pitch, round(n.start - start, 3)) for n in score.notes
                              if n.instrument in drums and start <= n.start < end))  # fmt: skip
    one_offs = [i for i in range(1, len(bars) - 1)
                if bars[i] and bars[i] != bars[i - 1] and bars[i] != bars[i + 1]]  # fmt: skip
    assert len(one_offs) >= len(bars) // 8 - 1 >= 1, (len(bars), one_offs)


@pytest.mark.parametrize("genre", ["pop", "corporate", "electronic"])
def test_a_hook_comes_back_note_for_note(generator, beat_analysis, genre):
    """In pop, corporate and electronic the material's first bars come back note for note
    at its statements where the chords take them (Style.hook_bars): their tunes had come back
    only as related material, the opening bar at its pitches in 0-1 of 17-32 bars (a music
    review)."""
    returns = []
    clip_gaps = [b - a for a, b in itertools.pairwise(CLIP_30_S)]
    for seed, gaps in itertools.product((1, 2), ([2.5] * 28, clip_gaps * 2)):
        times = [0.0, *itertools.accumulate(gaps)]
        segments, cuts = _shots(beat_analysis, times)
        brief = brief_for(beat_analysis, genre, seed=seed, cuts=cuts, segments=segments,
                          duration_s=times[-1])  # fmt: skip
        score = generator.compose(brief, Heartbeat(lambda f: None))
        tune = score.roles.of("melody")[:1]
        bars: list[tuple] = []
        for start, end in itertools.pairwise(score.plan.bar_starts):
            bars.append(tuple((n.pitch, round(n.start - start, 3)) for n in score.notes
                              if n.instrument in tune and start <= n.start < end))  # fmt: skip
        played = [bar for bar in bars if len(bar) >= 3]
        returns.append(sum(bar == played[0] for bar in played[1:]))
    assert sum(returns) >= 2 * len(returns), returns
