"""The composer: timing, form, harmony, genres, seeds, length, MIDI and stems."""

from __future__ import annotations

import dataclasses
import io
import itertools

import numpy as np
import pretty_midi
import pytest

from services.errors import InvalidInputError
from services.generator.backends.composer.styles import STYLES
from services.generator.backends.composer.theory import Key, chord, voice
from services.generator.backends.composer.timing import HitPoint, plan_timing
from services.generator.beatcheck import genre_brief as brief_for
from services.tagger.vocabulary import load_vocabulary

VOCABULARY = load_vocabulary()
GENRES_WITH_DRUMS = [g for g in STYLES if g != "ambient"]


def test_every_segment_starts_on_a_bar_line(generator, beat_analysis):
    music = generator.generate(brief_for(beat_analysis, "pop"))
    plan = music.plan
    boundaries = [s.start_s for s in beat_analysis.segments[1:]]
    bars = np.array(plan.bars_s)
    beats = np.array(plan.beats_s)
    for boundary in boundaries:
        assert np.min(np.abs(bars - boundary)) < 1e-3
    assert plan.alignment.cut_count == len(beat_analysis.cuts)
    assert plan.alignment.worst_ms == pytest.approx(
        max(np.min(np.abs(beats - c)) for c in beat_analysis.cuts_s) * 1000, abs=0.01
    )
    for section in plan.sections:
        assert 95 <= section.bpm <= 128  # pop's range


def test_user_bpm_is_exact_and_constant(generator, beat_analysis):
    brief = brief_for(beat_analysis, "rock", bpm_is_fixed=True)
    brief = dataclasses.replace(
        brief, tags=dataclasses.replace(brief.tags, bpm=137.0, bpm_min=137.0, bpm_max=137.0)
    )
    plan = generator.generate(brief).plan
    assert np.allclose(np.diff(plan.beats_s), 60 / 137.0, atol=1e-6)
    assert {s.bpm for s in plan.sections} == {137.0}
    # Cuts land within half a beat at worst; the phase is chosen to bring them close.
    assert plan.alignment.worst_ms <= 60_000 / 137.0 / 2 + 1


def test_tempo_map_search_is_smooth_and_in_range():
    starts = [0.0, 3.1, 5.9, 9.4, 13.0, 15.2]
    plan = plan_timing(20.0, starts, [HitPoint(t, 1.0) for t in starts[1:]], (90, 110), 100)
    for section in plan.sections:
        assert 90 <= section.bpm <= 110
    for start in starts:
        assert min(abs(b - start) for b in plan.beats_s) < 1e-9
    tempos = [s.bpm for s in plan.sections]
    jumps = [abs(np.log(b / a)) for a, b in itertools.pairwise(tempos)]
    assert max(jumps) < 0.12


def test_form_intro_intensity_and_ending(generator, beat_analysis):
    music = generator.generate(brief_for(beat_analysis, "electronic"))
    plan = music.plan
    assert plan.sections[0].role == "intro"
    assert plan.ending == "cadence"
    tonic = "I" if plan.key.endswith("major") else "i"
    assert plan.sections[-1].chords[-1] == tonic
    assert plan.sections[-1].chords[-2] == "V"
    # The final chord rings out inside the piece: silence only in the last moments.
    final = plan.final_chord_s
    assert final <= beat_analysis.duration_s - 1.5
    tail = music.audio[int(final * 44100) :]
    assert np.abs(tail[: 44100 // 2]).max() > 0.05
    # Intensity follows segment energy.
    energies = [s.energy for s in plan.sections]
    intensities = [s.intensity for s in plan.sections]
    assert intensities[int(np.argmax(energies))] >= intensities[int(np.argmin(energies))]


def test_busier_sections_have_more_parts(generator, beat_analysis):
    plan = generator.generate(brief_for(beat_analysis, "pop")).plan
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
def test_every_genre_composes(generator, beat_analysis, genre):
    music = generator.generate(brief_for(beat_analysis, genre))
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
    segments = [dataclasses.replace(s) for s in beat_analysis.segments if s.start_s < duration]
    brief = brief_for(
        beat_analysis,
        "folk",
        duration_s=duration,
        sample_rate=rate,
        segments=segments,
        cuts=[c for c in beat_analysis.cuts if c.time_s < duration],
    )
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


def test_midi_has_a_track_per_instrument_and_the_plan_tempo(generator, beat_analysis):
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
    # Stems: one per instrument, summing to the mix.
    assert set(music.stems) == set(music.plan.instruments)
    assert np.allclose(sum(music.stems.values()), music.audio, atol=1e-5)


def test_stems_only_when_asked(generator, beat_analysis):
    assert generator.generate(brief_for(beat_analysis, "pop")).stems == {}


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


def test_melody_repeats_its_motif(generator, beat_analysis):
    music = generator.generate(brief_for(beat_analysis, "pop"))
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


def test_bass_plays_the_chord_roots(generator, beat_analysis):
    music = generator.generate(brief_for(beat_analysis, "rock"))
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


def test_a_configured_soundfont_replaces_the_default(tmp_path, beat_analysis):
    from services.config import ComposerConfig
    from services.generator.backends.composer.backend import ComposerGenerator
    from services.generator.backends.composer.render import RenderError, default_soundfont

    copy = tmp_path / "mine.sf2"
    copy.write_bytes(default_soundfont().read_bytes())
    music = ComposerGenerator(ComposerConfig(soundfont_path=copy)).generate(
        brief_for(beat_analysis, "pop", duration_s=5.0)
    )
    assert np.abs(music.audio).max() > 0.05
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF not really")
    with pytest.raises(RenderError, match="not a usable SoundFont"):
        ComposerGenerator(ComposerConfig(soundfont_path=broken))
    with pytest.raises(RenderError, match="cannot read SoundFont"):
        ComposerGenerator(ComposerConfig(soundfont_path=tmp_path / "missing.sf2"))
