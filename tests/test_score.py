"""`bgm score` end to end: outputs, lengths, loudness, muxing, controls and bad input."""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from pathlib import Path

import av
import numpy as np
import pretty_midi
import pyloudnorm
import pytest
from scipy.signal import resample, resample_poly

from services.config import RequestLimits
from services.domain import GeneratorInfo, OutputOptions, UserControls
from services.errors import BgmError, InvalidInputError, ResourceExhaustedError
from services.gateway.mastering import master
from services.generator.backends.composer.backend import ComposerGenerator
from services.media.synth import Shot, SyntheticVideo, write_video
from services.pipeline import ScorePipeline
from services.tagger.backends.vision import VisionTagger
from services.vocabulary import load_vocabulary
from tests.bgm_command import bgm, bgm_process
from tests.hand_made_media import sound_marked_at


@pytest.fixture(scope="module")
def pipeline(tagger: VisionTagger, generator: ComposerGenerator) -> ScorePipeline:
    return ScorePipeline(tagger, generator, load_vocabulary(), RequestLimits())


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> SyntheticVideo:
    shots = [
        Shot(3.0, speed=0.3, hue=0.1),
        Shot(2.5, speed=0.7, hue=0.5),
        Shot(3.5, speed=0.2, hue=0.8, brightness=0.4),
    ]
    return write_video(media_dir / "clip.mp4", shots, loud_intervals=[(2.0, 5.0)])


def decoded_samples(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)), stream.rate


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The file's audio as float32 (samples x 2) at its own rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        chunks = [c.to_ndarray() for f in container.decode(stream) for c in resampler.resample(f)]
        chunks += [c.to_ndarray() for c in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).T.astype(np.float32), rate


def video_packets_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                digest.update(bytes(packet))
                count += 1
    return digest.hexdigest(), count


@pytest.mark.parametrize(
    ("extension", "rate"), [(".wav", 48000), (".flac", 44100), (".mp3", 44100), (".ogg", 48000)]
)
def test_audio_files_are_exactly_as_long_as_the_video(pipeline, clip, tmp_path, extension, rate):
    out = tmp_path / f"music{extension}"
    pipeline.score(clip.path, UserControls(), OutputOptions(out, sample_rate=rate))
    samples, file_rate = decoded_samples(out)
    assert file_rate == rate
    assert samples == round(clip.duration_s * rate)
    # Lossy or not, the decoded file keeps its true peak at or under -1 dBTP.
    audio, _ = decode(out)
    assert 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max()) <= -1.0


def test_unasked_the_rate_is_one_the_generator_makes(tagger, generator, clip, tmp_path):
    """A generator that makes 44.1 kHz alone: music asked for at no rate comes at it (48 kHz
    had been asked for by default, by `bgm score`, `bgm client` and the studio alike, and
    such a generator refused every request that named none), and `bgm client` sends none."""
    import dataclasses

    from services.gateway.client import output_options_message

    class FortyFourOnly(ComposerGenerator):
        def describe(self) -> GeneratorInfo:
            return dataclasses.replace(super().describe(), sample_rates=(44100,))

    only = FortyFourOnly(generator.config)
    out = tmp_path / "music.wav"
    ScorePipeline(tagger, only, load_vocabulary(), RequestLimits()).score(
        clip.path, UserControls(), OutputOptions(out)
    )
    assert decoded_samples(out)[1] == 44100
    assert output_options_message(OutputOptions(out)).sample_rate == 0
    # Named, a rate it does not make is refused, naming it.
    with pytest.raises(InvalidInputError, match=r"sample rate 48000 .* choose 44100"):
        ScorePipeline(tagger, only, load_vocabulary(), RequestLimits()).score(
            clip.path, UserControls(), OutputOptions(tmp_path / "other.wav", sample_rate=48000)
        )


def test_loudness_true_peak_and_no_clipping(pipeline, clip, tmp_path):
    out = tmp_path / "music.wav"
    result = pipeline.score(clip.path, UserControls(), OutputOptions(out, lufs=-16.0))
    audio, rate = decode(out)
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
    assert measured == pytest.approx(-16.0, abs=0.5)
    true_peak_db = 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max())
    assert true_peak_db <= -1.0 + 0.05
    assert np.abs(audio).max() < 1.0
    assert result.loudness.integrated_lufs == pytest.approx(measured, abs=0.1)
    assert result.loudness.true_peak_dbtp == pytest.approx(true_peak_db, abs=0.1)


@pytest.mark.parametrize(
    ("extension", "codec"), [(".mp4", "aac"), (".mkv", "opus"), (".mov", "aac")]
)
def test_video_is_copied_and_the_music_muxed(pipeline, clip, tmp_path, extension, codec):
    out = tmp_path / f"scored{extension}"
    pipeline.score(clip.path, UserControls(), OutputOptions(out))
    assert video_packets_digest(out) == video_packets_digest(clip.path)  # not re-encoded
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == codec
    samples, rate = decoded_samples(out)
    # Containers: within one audio frame (AAC 1024 samples, Opus 960 at 48 kHz).
    assert abs(samples - round(clip.duration_s * rate)) <= 1024


def test_a_scored_video_s_sound_decodes_to_a_wav_as_it_comes(pipeline, clip, tmp_path):
    """The studio's player file: the scored video's sound, written as it decodes (the studio
    had decoded each finished piece whole, 2.8 GB for a two-hour one), the same sound as
    decoded whole, exactly as long as asked, padded with silence past the track."""
    import soundfile

    from services.media.audio import decode_audio, decode_audio_to_wav

    out = tmp_path / "scored.mp4"
    pipeline.score(clip.path, UserControls(), OutputOptions(out))
    samples = round(clip.duration_s * 48000)
    assert decode_audio_to_wav(out, tmp_path / "music.wav", 48000, samples)
    written, rate = soundfile.read(tmp_path / "music.wav", dtype="float32")
    whole = decode_audio(out, 48000, samples)
    assert whole is not None
    assert rate == 48000 and written.shape == whole.shape == (samples, 2)
    np.testing.assert_allclose(written, whole, atol=1.5 / 32767)
    longer = samples + 48000
    assert decode_audio_to_wav(out, tmp_path / "longer.wav", 48000, longer)
    padded, _ = soundfile.read(tmp_path / "longer.wav", dtype="float32")
    assert len(padded) == longer and not padded[samples + 2048 :].any()
    # A minute's sound (23 MB as float32) is never held whole.
    import tracemalloc

    minute = write_video(tmp_path / "minute.mp4", [Shot(60.0)], width=64, height=36)
    tracemalloc.start()
    try:
        assert decode_audio_to_wav(minute.path, tmp_path / "minute.wav", 48000, 60 * 48000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2, peak
    mute = write_video(tmp_path / "mute.mp4", [Shot(1.0)], audio=False)
    assert not decode_audio_to_wav(mute.path, tmp_path / "mute.wav", 48000, 48000)
    assert not (tmp_path / "mute.wav").exists()


def test_rotation_survives_the_mux(pipeline, tmp_path):
    video = write_video(
        tmp_path / "phone.mp4", [Shot(1.5, hue=0.2), Shot(1.5, hue=0.7)], rotation=-90
    )
    out = tmp_path / "phone-scored.mp4"
    pipeline.score(video.path, UserControls(), OutputOptions(out))
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == -90


def test_midi_and_stems(pipeline, clip, tmp_path):
    out, midi, stems = tmp_path / "m.wav", tmp_path / "m.mid", tmp_path / "stems"
    result = pipeline.score(
        clip.path,
        UserControls(instruments=["drums", "bass"]),
        OutputOptions(out, midi=midi, stems_dir=stems),
    )
    song = pretty_midi.PrettyMIDI(io.BytesIO(midi.read_bytes()))
    assert {i.name for i in song.instruments} == set(result.plan.instruments)
    written = sorted(p.name for p in stems.iterdir())
    assert written == sorted(f"{name}.wav" for name in result.plan.instruments)
    for stem in stems.iterdir():
        assert decoded_samples(stem)[0] == round(clip.duration_s * 48000)


def test_a_part_s_midi_moves_with_its_tempo_map_and_meter():
    """Every note of a part's MIDI plays exactly `start` later, across tempo changes, and its
    meter's bars still start on the music's downbeats."""
    import mido

    from services.media.midi import delayed

    song = mido.MidiFile(ticks_per_beat=480)
    meta = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=600_000, time=0),
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.MetaMessage("set_tempo", tempo=400_000, time=960),
    ])  # fmt: skip
    notes = mido.MidiTrack([
        mido.Message("program_change", program=40, time=0),
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, time=480),
        mido.Message("note_on", note=64, velocity=90, time=960),
        mido.Message("note_off", note=64, time=480),
    ])  # fmt: skip
    song.tracks += [meta, notes]
    raw = io.BytesIO()
    song.save(file=raw)

    def heard(midi: bytes) -> tuple[list[float], list[float], list[float]]:
        parsed = pretty_midi.PrettyMIDI(io.BytesIO(midi))
        played = [t for n in parsed.instruments[0].notes for t in (n.start, n.end)]
        meters = [s.time for s in parsed.time_signature_changes]
        programs = [float(i.program) for i in parsed.instruments]
        return played, meters, programs

    before, later = heard(raw.getvalue()), heard(delayed(raw.getvalue(), 2.5))
    assert later[0] == pytest.approx([t + 2.5 for t in before[0]], abs=1e-3)
    assert later[1] == pytest.approx([2.5])
    assert later[2] == before[2] == [40.0]
    # The silence before is whole bars of 4/4: a DAW puts the 3/4 on a bar line (it had come
    # 4.17 beats in, mid-bar, and the bar grid off the music's downbeats).
    moved = mido.MidiFile(file=io.BytesIO(delayed(raw.getvalue(), 2.5)))
    meter_tick = next(tick for tick, m in zip(itertools.accumulate(m.time for m in moved.tracks[0]),
                                              moved.tracks[0], strict=True)
                      if m.type == "time_signature")  # fmt: skip
    assert meter_tick > 0 and meter_tick % (4 * moved.ticks_per_beat) == 0
    assert delayed(raw.getvalue(), 0.0) == raw.getvalue()


def test_controls_are_read_as_people_write_them(pipeline, clip, tmp_path):
    controls = UserControls(genres=["Hip Hop", "hiphop"], moods=["Chill"],
                            instruments=["guitar"], key="F#m", negative=["Piano"])  # fmt: skip
    result = pipeline.score(clip.path, controls, OutputOptions(tmp_path / "m.wav"))
    tags = result.brief.tags
    assert tags.genres[0] == "hip-hop" and tags.genres.count("hip-hop") == 1
    assert tags.moods[0] == "calm" and "acoustic-guitar" in tags.instruments
    assert result.plan.key == "F# minor" and "piano" not in tags.instruments


def test_no_guitar_means_no_guitar_of_any_kind(pipeline, clip, tmp_path):
    """`negative: guitar` in rock: its electric and lead guitars had played on ("guitar" is
    the acoustic guitar's synonym); as a negative tag it takes out every guitar."""
    controls = UserControls(genres=["rock"], negative=["guitar"])
    result = pipeline.score(clip.path, controls, OutputOptions(tmp_path / "m.wav"))
    assert {"acoustic-guitar", "electric-guitar"} <= set(result.brief.negative)
    assert result.plan.genre == "rock"
    assert not {"acoustic-guitar", "electric-guitar", "lead-guitar"} & set(result.plan.instruments)


def test_controls_win_over_the_tagger(pipeline, clip, tmp_path):
    controls = UserControls(
        genres=["rock"],
        moods=["tense"],
        instruments=["electric-guitar"],
        bpm=142.0,
        key="E minor",
        negative=["piano"],
        seed=3,
    )
    result = pipeline.score(clip.path, controls, OutputOptions(tmp_path / "m.wav"))
    tags = result.brief.tags
    assert tags.genres[0] == "rock" and result.plan.genre == "rock"
    assert tags.moods[0] == "tense"
    assert "electric-guitar" in result.plan.instruments
    assert "piano" not in tags.instruments
    assert result.plan.key == "E minor"
    assert np.allclose(np.diff(result.plan.beats_s), 60 / 142.0, atol=1e-6)
    sources = {(o.kind, o.tag): o.source for o in tags.origins}
    assert sources[("genre", "rock")] == "user"


def test_the_moods_a_user_asks_for_are_heard(pipeline, media_dir, tmp_path):
    """A mood the user asks for moves the music from what the picture gave: its mode (dark is
    minor, happy major), its tempo within the genre's range and its energy, so how many parts
    play and how busily. Asked for, moods had changed no note (the report listed them)."""
    # One shot: no cut pulls the tempo, so the plan's is the one the brief prefers.
    still = write_video(media_dir / "still.mp4", [Shot(8.0, speed=0.35, hue=0.3)])

    def scored(*moods: str):
        controls = UserControls(genres=["pop"], moods=list(moods))
        return pipeline.score(still.path, controls, OutputOptions(tmp_path / "m.wav"))

    picture, calm, energetic = scored(), scored("calm"), scored("energetic")
    assert calm.plan.bpm < picture.plan.bpm < energetic.plan.bpm
    low, high = calm.brief.tags.bpm_min, calm.brief.tags.bpm_max
    assert low <= calm.plan.bpm and energetic.plan.bpm <= high
    assert calm.brief.tags.energy < picture.brief.tags.energy < energetic.brief.tags.energy

    def intensity(result) -> int:
        return sum(section.intensity for section in result.plan.sections)

    assert intensity(calm) < intensity(energetic)
    assert scored("dark").plan.key.endswith(" minor")
    assert scored("happy").plan.key.endswith(" major")


def test_a_video_shorter_than_a_loudness_block_is_scored(pipeline, tmp_path):
    """BS.1770 measures 400 ms blocks: a 0.3 s clip (a sting, a GIF) is measured played over
    and over, in the composer's balance and in mastering (it had ended in an internal
    error)."""
    video = write_video(tmp_path / "sting.mp4", [Shot(0.3, speed=0.4)], audio=False)
    out = tmp_path / "sting.wav"
    result = pipeline.score(video.path, UserControls(), OutputOptions(out))
    audio, rate = decode(out)
    assert len(audio) == round(video.duration_s * rate)
    assert result.loudness.integrated_lufs == pytest.approx(-14.0, abs=0.5)
    assert result.loudness.true_peak_dbtp <= -1.0


@pytest.mark.parametrize("extension", [".mp4", ".mp3", ".ogg"])
def test_a_lossy_file_is_held_under_the_ceiling_as_it_decodes(tmp_path, clip, extension):
    """Whatever the encoder adds, a lossy file decodes at or under -1 dBTP, at the loudness
    asked for, and the report says what it decodes to: AAC had gone 1.5-2.4 dB over the -2
    dBTP it was given on a door slam in a video's own sound (-0.6 and +0.3 dBTP decoded, the
    summary saying -2.1). Here the mastering leaves no room at all, as if the encoder had
    already gone over. The piece had then been lowered whole, and delivered quieter than
    asked (-14.5 LUFS for -14 on the demo's sample video)."""
    from services.domain import CutAlignment, GeneratedMusic, MusicPlan
    from services.gateway.delivery import write_outputs

    rate = 48000
    rng = np.random.default_rng(5)
    t = np.arange(round(clip.duration_s * rate)) / rate
    music = np.stack([0.2 * np.sin(2 * np.pi * 110 * t)] * 2, axis=1)
    music[(t % 0.5) < 0.02] += rng.normal(0, 0.5, (int(((t % 0.5) < 0.02).sum()), 2))
    import soundfile

    mastered = master(music.astype(np.float32), rate, -14.0, true_peak_limit_db=0.0)
    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    stem = music.astype(np.float32)
    generated = GeneratedMusic(mastered.audio.copy(), rate, {"all": stem}, b"", plan)
    out, stems = tmp_path / f"music{extension}", tmp_path / "stems"
    options = OutputOptions(out, stems_dir=stems)
    _, report = write_outputs(clip.path, generated, mastered, options, lambda: None)
    # The one stem takes the limiter's gain with the mix: it is the PCM that was encoded.
    written, _ = soundfile.read(stems / "all.wav", dtype="float32")
    np.testing.assert_allclose(written, mastered.audio, atol=1e-5)
    audio, _ = decode(out)
    true_peak_db = 20 * np.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max())
    assert true_peak_db <= -1.0
    assert report.true_peak_dbtp == pytest.approx(true_peak_db, abs=0.1)
    # Limited again, not lowered: the loudness asked for (the encoders' low-pass takes a
    # little from these noise bursts as they decode).
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
    assert report.integrated_lufs == pytest.approx(-14.0, abs=0.1)
    assert measured == pytest.approx(-14.0, abs=0.5)


def test_stems_that_peak_past_full_scale_still_sum_to_the_mix(tmp_path, clip):
    """Two parts that cancel where each is loud: the mix keeps under full scale, each part
    does not. Their stems had been 16-bit WAVs, clipped (lo-fi's drums at +4 dBFS under a
    -1 dBTP master), and no longer summed to the mix; now float."""
    import soundfile

    from services.domain import CutAlignment, GeneratedMusic, MusicPlan
    from services.gateway.delivery import write_outputs

    rate = 48000
    t = np.arange(round(clip.duration_s * rate)) / rate
    low = np.stack([1.5 * np.sin(2 * np.pi * 55 * t)] * 2, axis=1).astype(np.float32)
    high = (-low + 0.05 * np.sin(2 * np.pi * 440 * t)[:, None]).astype(np.float32)
    mix = low + high
    mastered = master(mix.copy(), rate, -14.0)
    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    generated = GeneratedMusic(mastered.audio.copy(), rate, {"low": low, "high": high}, b"", plan)
    stems = tmp_path / "stems"
    write_outputs(clip.path, generated, mastered,
                  OutputOptions(tmp_path / "m.wav", stems_dir=stems), lambda: None)  # fmt: skip
    low_stem, _ = soundfile.read(stems / "low.wav", dtype="float32")
    high_stem, _ = soundfile.read(stems / "high.wav", dtype="float32")
    assert np.abs(low_stem).max() > 1.0
    np.testing.assert_allclose(low_stem + high_stem, mastered.audio, atol=1e-5)


def test_bright_transients_stay_under_the_true_peak_ceiling():
    """Strums and cymbals carry energy up to 20 kHz, where a short interpolation filter reads
    their peaks low: measured at BS.1770's four times oversampling with ideal (FFT)
    interpolation, the master still keeps -1 dBTP, and reports its true peak."""
    rate = 48000
    rng = np.random.default_rng(7)
    t = np.arange(rate * 4) / rate
    # A low tone that fades in and out (the FFT's wrap-around joins silence to silence)...
    music = np.stack([0.1 * np.sin(2 * np.pi * 110 * t) * np.sin(np.pi * t / 4)] * 2, axis=1)
    # ... and bursts of noise from 15 to 20 kHz, 30 ms every quarter of a second.
    spectrum = np.fft.rfft(rng.standard_normal((len(t), 2)), axis=0)
    frequencies = np.fft.rfftfreq(len(t), 1 / rate)
    spectrum[(frequencies < 15000) | (frequencies > 20000)] = 0
    bright = np.fft.irfft(spectrum, len(t), axis=0)
    bursts = ((t % 0.25) < 0.03) & (t > 0.1) & (t < 3.9)
    music[bursts] += 0.5 * bright[bursts] / np.abs(bright).max()
    mastered = master(music.astype(np.float32), rate, -14.0, true_peak_limit_db=-1.0)
    four_times = resample(mastered.audio.astype(np.float64), len(t) * 4, axis=0)
    true_peak_db = 20 * np.log10(np.abs(four_times).max())
    assert true_peak_db <= -1.0
    assert mastered.report.true_peak_dbtp == pytest.approx(true_peak_db, abs=0.05)


def test_mastering_holds_one_copy_of_the_music_and_measures_as_before(tmp_path):
    """The gateway masters a piece over its own mix (nothing reads it after), and measures
    each round of the limiter's gain without a copy of the result: beside 3 minutes of music,
    mastering allocates the envelope and the gain (a mono length each) and its chunks' work
    (1.45 times the music in all). It had allocated a whole copy more (2.45 times; for a
    two-hour piece 2.8 GB more). The result is the one made from a copy, to the sample."""
    import tracemalloc

    from services.domain import CutAlignment, GeneratedMusic, MusicPlan
    from services.gateway.delivery import master_music
    from services.gateway.mastering import SpeechDucking

    rate = 48000
    rng = np.random.default_rng(0)
    music = rng.normal(0, 0.1, (180 * rate, 2)) * np.linspace(0.2, 1.5, 180 * rate)[:, None]
    music = music.astype(np.float32)
    expected = master(music.copy(), rate, -14.0, true_peak_limit_db=-1.0)
    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    options = OutputOptions(tmp_path / "out.wav")
    tracemalloc.start()
    try:
        mastered = master_music(tmp_path / "unused.mp4", GeneratedMusic(music, rate, {}, b"", plan),
                                options, lambda: None)  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.6 * music.nbytes, peak / music.nbytes
    assert mastered.report == expected.report
    assert np.array_equal(mastered.audio, expected.audio)
    # With the video's own sound kept (and no speech to duck under), the mix is made over
    # the music too: a copy of it and a gain of ones had been made (2.45 times the music).
    original = (rng.normal(0, 0.05, music.shape)).astype(np.float32)
    music = (rng.normal(0, 0.1, music.shape)).astype(np.float32)
    silence = SpeechDucking([], 12.0, 0.3, 0.6, False)
    expected = master(music.copy(), rate, -14.0, original=original, speech=silence)
    tracemalloc.start()
    try:
        mastered = master(music, rate, -14.0, original=original, speech=silence, in_place=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.6 * music.nbytes, peak / music.nbytes
    assert np.array_equal(mastered.audio, expected.audio)


@pytest.mark.parametrize("speech", ["by level", "under speech"])
def test_mastering_lets_the_video_s_own_sound_go_once_it_is_mixed(tmp_path, speech):
    """With the video's own sound kept, mastering decodes it, mixes it under the music and
    lets it go before the limiter's rounds: beside 2 minutes of music, mastering allocates
    2.17 times the music ducking by the sound's level, 1.67 under its speech (4.0 and 2.67:
    the sound was held to the end, and its level was measured a minute at a time in three
    copies). The result is the one mastered from the sound decoded apart."""
    import tracemalloc

    from services.domain import CutAlignment, GeneratedMusic, MusicPlan
    from services.gateway.delivery import master_music
    from services.gateway.mastering import SpeechDucking
    from services.media.audio import decode_audio
    from tests.hand_made_media import write_streams

    rate = 48000
    video = write_streams(tmp_path / "sound.mp4", frames=30, sound_s=120.0)
    music = np.random.default_rng(0).normal(0, 0.1, (120 * rate, 2)).astype(np.float32)
    ducking = None if speech == "by level" else SpeechDucking([], 12.0, 0.3, 0.6, False)
    original = decode_audio(video, rate, len(music), lambda: None)
    expected = master(music.copy(), rate, -14.0, true_peak_limit_db=-1.0, original=original,
                      speech=ducking)  # fmt: skip
    del original
    plan = MusicPlan(120.0, "C major", [], [], [], CutAlignment(0, 0, 0, 0.0, 0.0), "fade",
                     0.0, "pop", [])  # fmt: skip
    options = OutputOptions(tmp_path / "out.wav", keep_original_audio=True)
    tracemalloc.start()
    try:
        mastered = master_music(video, GeneratedMusic(music, rate, {}, b"", plan), options,
                                lambda: None, ducking)  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{speech}: mastering allocated {peak / music.nbytes:.2f} times the music")
    assert peak <= (2.25 if speech == "by level" else 1.75) * music.nbytes
    assert mastered.report == expected.report
    assert np.array_equal(mastered.audio, expected.audio)


def test_keep_original_audio_ducks_the_music_under_speech():
    rate = 48000
    t = np.arange(rate * 6) / rate
    music = np.stack([0.2 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1).astype(np.float32)
    speech = np.zeros_like(music)
    speech[2 * rate : 4 * rate] = 0.3 * np.sin(2 * np.pi * 220 * t[2 * rate : 4 * rate])[:, None]
    mastered = master(music, rate, -16.0, original=speech)
    gain = mastered.music_gain
    quiet = np.median(gain[int(0.5 * rate) : int(1.5 * rate)])
    under_speech = np.median(gain[int(2.5 * rate) : int(3.5 * rate)])
    assert 20 * np.log10(quiet / under_speech) >= 10.0
    assert mastered.report.ducked


def test_keep_original_audio_end_to_end(pipeline, clip, tmp_path):
    out = tmp_path / "mixed.wav"
    pipeline.score(clip.path, UserControls(), OutputOptions(out, keep_original_audio=True))
    audio, rate = decode(out)
    assert len(audio) == round(clip.duration_s * rate)
    # The original's 220 Hz voice is in the mix where it spoke.
    window = audio[int(2.5 * rate) : int(4.5 * rate), 0]
    spectrum = np.abs(np.fft.rfft(window))
    frequencies = np.fft.rfftfreq(len(window), 1 / rate)
    band = (frequencies > 215) & (frequencies < 225)
    assert spectrum[band].max() > 5 * np.median(spectrum)


BAD_CONTROLS = [
    (UserControls(bpm=310.0), "outside 30..300"),
    (UserControls(bpm=12.0), "outside 30..300"),
    (UserControls(genres=["polka"]), "valid genres: ambient"),
    (UserControls(moods=["grumpy"]), "valid moods:"),
    (UserControls(instruments=["kazoo"]), "valid instruments:"),
    (UserControls(key="H major"), "bad key"),
    (UserControls(negative=["yodel"]), "unknown negative tag yodel"),
    # A family named as negative holds each of its instruments.
    (UserControls(instruments=["electric guitar"], negative=["guitar"]),
     "electric-guitar both asked for and negated"),
    (UserControls(structure="remix"), "unknown structure 'remix'"),
    (UserControls(candidates=0), "candidates must be 1..4, not 0"),
    (UserControls(structure="reference", reference_audio=b"x" * (16 * 1024 * 1024 + 1)),
     "reference audio is 16777217 bytes; at most 16777216"),
    (UserControls(structure="reference"), "needs a reference audio file"),
    # The in-process composer cannot follow a recording, before any analysis is done.
    (UserControls(structure="reference", reference_audio=b"RIFF"),
     "composer generator cannot follow structure 'reference'"),
]  # fmt: skip


@pytest.mark.parametrize(("controls", "message"), BAD_CONTROLS)
def test_bad_controls_fail_before_any_work(pipeline, clip, tmp_path, controls, message):
    with pytest.raises(InvalidInputError, match=message):
        pipeline.score(clip.path, controls, OutputOptions(tmp_path / "m.wav"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("music.aiff", "unknown extension"),
        ("missing-folder/music.wav", "does not exist"),
    ],
)
def test_bad_outputs_fail_before_any_work(pipeline, clip, tmp_path, name, message):
    with pytest.raises(InvalidInputError, match=message):
        pipeline.score(clip.path, UserControls(), OutputOptions(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lufs": -3.0}, "outside -40..-5"),
        ({"lufs": -60.0}, "outside -40..-5"),
        ({"sample_rate": 22050}, "sample rate 22050 is not supported"),
        ({"midi": "notes.txt"}, r"must end in \.mid"),
        ({"stems_dir": "stems-file"}, "is a file"),
    ],
)
def test_bad_output_options_fail_before_any_work(pipeline, clip, tmp_path, changes, message):
    if "stems_dir" in changes:
        (tmp_path / "stems-file").write_text("in the way")
    options = {
        key: tmp_path / value if isinstance(value, str) else value for key, value in changes.items()
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InvalidInputError, match=message):
        pipeline.score(clip.path, UserControls(), OutputOptions(tmp_path / "m.wav", **options))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_that_is_a_folder(pipeline, clip, tmp_path):
    (tmp_path / "taken.wav").mkdir()
    with pytest.raises(InvalidInputError, match="is a directory"):
        pipeline.score(clip.path, UserControls(), OutputOptions(tmp_path / "taken.wav"))
    assert [p.name for p in tmp_path.iterdir()] == ["taken.wav"]


def test_output_inside_a_file(pipeline, clip, tmp_path):
    (tmp_path / "notes").write_text("a file, not a folder")
    with pytest.raises(InvalidInputError, match="notes is a file, not a folder"):
        pipeline.score(clip.path, UserControls(), OutputOptions(tmp_path / "notes" / "m.wav"))


def test_output_in_a_folder_it_may_not_write(pipeline, clip, tmp_path, monkeypatch):
    # (The tests may run as root, who can write anywhere: the permission check is what is
    # tested, so os.access answers as it would for another user.)
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(InvalidInputError, match="locked is not writable"):
        pipeline.score(clip.path, UserControls(), OutputOptions(locked / "m.wav"))


def test_failure_while_writing_leaves_nothing(pipeline, clip, tmp_path, monkeypatch):
    import services.gateway.delivery as module

    def broken_mux(*args, **kwargs):
        Path(args[1]).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(module, "mux_into_video", broken_mux)
    # Said as a failure to write the output, by its name (not its temporary one).
    with pytest.raises(BgmError, match=r"cannot write output m\.mp4: disk full"):
        pipeline.score(
            clip.path,
            UserControls(),
            OutputOptions(
                tmp_path / "m.mp4", midi=tmp_path / "m.mid", stems_dir=tmp_path / "stems"
            ),
        )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def written_meanwhile(tmp_path, monkeypatch) -> Path:
    """The output m.wav, which another command writes while this one makes its piece (just
    before this one writes its own)."""
    import services.gateway.delivery as module

    write_music = module._write_music
    output = tmp_path / "m.wav"

    def another_command_writes_first(*args, **kwargs):
        output.write_bytes(b"the other command's piece")
        return write_music(*args, **kwargs)

    monkeypatch.setattr(module, "_write_music", another_command_writes_first)
    return output


def test_an_output_written_meanwhile_is_kept_unless_replacing(
    pipeline, clip, tmp_path, written_meanwhile
):
    """Two `bgm score` writing one output at once had both succeeded, the later replacing the
    earlier: the existence check comes before the work. Without --force (replace_existing
    off) the file that appeared meanwhile stays and this request fails, leaving nothing of
    its own (its MIDI file and stems included); with it, the piece replaces that file."""
    output = written_meanwhile
    options = OutputOptions(output, midi=tmp_path / "m.mid", stems_dir=tmp_path / "stems",
                            replace_existing=False)  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"m\.wav was written meanwhile .*--force"):
        pipeline.score(clip.path, UserControls(), options)
    assert [p.name for p in tmp_path.iterdir()] == ["m.wav"]
    assert output.read_bytes() == b"the other command's piece"

    output.unlink()
    pipeline.score(clip.path, UserControls(), OutputOptions(output))
    assert output.read_bytes()[:4] == b"RIFF"


def test_bgm_score_keeps_a_piece_another_command_wrote_meanwhile(clip, tmp_path, written_meanwhile):
    """The command line: without --force, the other command's piece stays and this one says
    so in one line, exit 2; with --force, its own piece is written."""
    output = written_meanwhile
    result = bgm("score", str(clip.path), "-o", str(output))
    assert result.returncode == 2 and "m.wav was written meanwhile" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1
    assert output.read_bytes() == b"the other command's piece"
    assert [p.name for p in tmp_path.iterdir()] == ["m.wav"]
    result = bgm("score", str(clip.path), "-o", str(output), "--force")
    assert result.returncode == 0 and output.read_bytes()[:4] == b"RIFF", result


def test_container_that_cannot_take_the_video_codec(pipeline, clip, tmp_path):
    with pytest.raises(InvalidInputError, match=r"cannot copy a h264 video stream into \.webm"):
        pipeline.score(clip.path, UserControls(), OutputOptions(tmp_path / "m.webm"))


def test_a_vp9_video_is_not_copied_into_mov(pipeline, tmp_path):
    """FFmpeg's MOV muxer takes no VP9: asked for, it is refused before any work (it had
    failed at the mux, an internal error), and .mkv takes it."""
    video = write_video(tmp_path / "clip.webm", [Shot(1.0)], codec="libvpx-vp9", audio=False)
    with pytest.raises(InvalidInputError, match=r"cannot copy a vp9 video stream into \.mov"):
        pipeline.score(video.path, UserControls(), OutputOptions(tmp_path / "m.mov"))
    pipeline.score(video.path, UserControls(), OutputOptions(tmp_path / "m.mkv"))
    assert video_packets_digest(tmp_path / "m.mkv") == video_packets_digest(video.path)


@pytest.mark.parametrize(
    ("codec", "named", "name", "size", "advice"),
    [
        ("flv", "flv1", "clip.flv", (320, 180), "no video container written here can carry it"),
        ("h263", "h263", "clip.avi", (352, 288), "use .mov"),
    ],
)
def test_a_stream_matroska_cannot_take_is_refused_before_the_music(
    pipeline, tmp_path, codec, named, name, size, advice
):
    """Matroska takes neither an FLV (Sorenson) nor an H.263 stream: asked for, they had
    failed at the mux once the music was made (an internal error). FFmpeg's muxers are asked
    first now: refused, saying which container can carry the stream, and that one does."""
    video = write_video(tmp_path / name, [Shot(1.0)], codec=codec, width=size[0],
                        height=size[1], audio=False)  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInputError, match=rf"cannot copy a {named} video stream into "
                                                rf"\.mkv; {advice}"):  # fmt: skip
        pipeline.score(video.path, UserControls(), OutputOptions(out / "m.mkv"))
    assert list(out.iterdir()) == []
    if advice == "use .mov":
        pipeline.score(video.path, UserControls(), OutputOptions(out / "m.mov"))
        assert video_packets_digest(out / "m.mov") == video_packets_digest(video.path)


def test_an_av1_video_is_copied_into_the_containers_that_carry_it(pipeline, tmp_path):
    """AV1 (YouTube's, a phone's): its decoder, libdav1d, names no encoder, and a stream
    made by that name had failed, so an AV1 video went into no container at all. Its own
    codec is copied now: MP4, Matroska and WebM carry it, MOV (FFmpeg's) does not."""
    video = write_video(tmp_path / "clip.mkv", [Shot(1.0), Shot(1.0, hue=0.6)],
                        codec="libsvtav1", audio=False)  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInputError, match=r"cannot copy a av1 video stream into \.mov; "
                                                r"use \.mp4 or \.mkv or \.webm"):  # fmt: skip
        pipeline.score(video.path, UserControls(), OutputOptions(out / "m.mov"))
    for suffix in (".mp4", ".mkv"):
        pipeline.score(video.path, UserControls(), OutputOptions(out / f"m{suffix}"))
        assert video_packets_digest(out / f"m{suffix}") == video_packets_digest(video.path)


def test_keep_original_audio_needs_audio(pipeline, tmp_path):
    video = write_video(tmp_path / "silent.mp4", [Shot(2.0)], audio=False)
    with pytest.raises(InvalidInputError, match="no audio track"):
        pipeline.score(
            video.path, UserControls(), OutputOptions(tmp_path / "m.wav", keep_original_audio=True)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["silent.mp4"]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_keep_original_audio_of_an_empty_audio_track_is_refused(pipeline, tmp_path, suffix):
    """A video whose audio track holds no packets has no sound to keep, whatever its
    container: Matroska's empty track had been kept as silence, delivered, where MP4's was
    refused (a QA round)."""
    import av

    video = tmp_path / f"empty-track{suffix}"
    with av.open(str(video), "w") as container:
        picture = container.add_stream("mpeg4", rate=25)
        picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        container.add_stream("aac", rate=48000)
        for index in range(50):
            image = np.full((64, 64, 3), 5 * index, np.uint8)
            container.mux(picture.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(picture.encode())
    with pytest.raises(InvalidInputError, match=r"no audio track to keep|holds no sound") as no:
        pipeline.score(
            video, UserControls(), OutputOptions(tmp_path / "m.wav", keep_original_audio=True)
        )
    assert no.value.field == "output.keep_original_audio"
    assert sorted(p.name for p in tmp_path.iterdir()) == [video.name]
    pipeline.score(video, UserControls(), OutputOptions(tmp_path / "m.wav"))


@pytest.mark.parametrize(
    ("picture_from_s", "sound_from_s", "sound_to_s", "says"),
    [(0.0, 20.0, 23.0, "stamped from 20.00 s on"), (20.0, 0.0, 5.0, "stamped up to 4.99 s")],
    ids=["sound-after", "sound-before"],
)
def test_keep_original_audio_of_a_sound_outside_its_picture_is_refused(
    pipeline, tmp_path, picture_from_s, sound_from_s, sound_to_s, says
):
    """A video whose sound its stamps put wholly after or before its picture (a track
    stamped 20 s on, a recording's sound from an earlier take) has none to keep: the request
    is refused saying so, where the music had come out over silence with nothing said. Its
    speech is listened for as before (none is heard)."""
    video = sound_marked_at(tmp_path / "apart.mkv", picture_from_s=picture_from_s,
                            sound_from_s=sound_from_s, mark_s=sound_from_s + 1.0,
                            sound_to_s=sound_to_s)  # fmt: skip
    with pytest.raises(InvalidInputError, match=says) as refused:
        pipeline.score(
            video, UserControls(), OutputOptions(tmp_path / "m.wav", keep_original_audio=True)
        )
    assert refused.value.field == "output.keep_original_audio"
    assert "lies outside its picture, which runs from" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apart.mkv"]
    pipeline.score(video, UserControls(), OutputOptions(tmp_path / "m.wav"))


def test_over_the_generator_limit(tagger, clip, tmp_path):
    from services.config import ComposerConfig

    short = ScorePipeline(
        tagger,
        ComposerGenerator(ComposerConfig(max_duration_s=5.0)),
        load_vocabulary(),
        RequestLimits(),
    )
    with pytest.raises(InvalidInputError, match="at most 5 s"):
        short.score(clip.path, UserControls(), OutputOptions(tmp_path / "m.wav"))


def test_stems_count_as_music_held(tagger, generator, clip, tmp_path):
    """With stems, each of a piece's tracks (the mix, a stem per instrument) counts against
    the music a request may ask for: a clip within the limit alone is refused with stems."""
    tight = ScorePipeline(tagger, generator, load_vocabulary(),
                          RequestLimits(max_music_s=2.5 * clip.duration_s))  # fmt: skip
    controls = UserControls(instruments=["drums", "bass"])
    assert tight.score(clip.path, controls, OutputOptions(tmp_path / "m.wav")).plan
    with pytest.raises(ResourceExhaustedError, match=r"x \d tracks each: the mix and its stems"):
        tight.score(clip.path, controls, OutputOptions(tmp_path / "s.wav",
                                                       stems_dir=tmp_path / "stems"))  # fmt: skip
    assert not (tmp_path / "stems").exists()


def test_cli_score_prints_a_summary(clip, tmp_path):
    out = tmp_path / "scored.mp4"
    result = bgm(
        "score",
        str(clip.path),
        "-o",
        str(out),
        "--genre",
        "pop",
        "--bpm",
        "100",
        "--seed",
        "2",
    )
    assert result.returncode == 0, result.stderr
    for word in ("Genres", "pop (user)", "100.0 BPM", "on a beat", "LUFS", "Wrote"):
        assert word in result.stdout
    # Which bank played it (TimGM6mb where set-up found no better one).
    assert re.search(r"Rendered +\S+\.sf[23] with (fluidsynth|tinysoundfont)", result.stdout)
    assert out.exists()


def test_cli_score_says_when_a_loudness_target_is_out_of_reach(clip, tmp_path):
    """A target louder than the limiter can reach under its true-peak ceiling is said to be
    missed: -5 LUFS had been summed up as "-9.4 LUFS (target -5)" and nothing more."""
    loud = bgm("score", str(clip.path), "-o", str(tmp_path / "loud.wav"), "--lufs", "-5")
    assert loud.returncode == 0, loud.stderr
    assert "(target -5, not reached under the -1 dBTP ceiling)" in loud.stdout, loud.stdout
    usual = bgm("score", str(clip.path), "-o", str(tmp_path / "usual.wav"), "--lufs", "-16")
    assert "(target -16)" in usual.stdout, usual.stdout


def test_cli_score_bad_input_exits_2_cleanly(clip, tmp_path):
    result = bgm_process(
        "score",
        str(clip.path),
        "-o",
        str(tmp_path / "m.wav"),
        "--genre",
        "polka",
    )
    assert result.returncode == 2
    assert "unknown genre polka" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("rate", "seconds"), [(48000, 14.46), (44100, 3.0), (48000, 61.3)])
def test_chunked_loudness_agrees_with_pyloudnorm(rate, seconds):
    from services.media.loudness import integrated_loudness

    rng = np.random.default_rng(int(seconds))
    samples = int(seconds * rate)
    ramp = np.linspace(0.01, 0.3, samples)[:, None]
    audio = (rng.standard_normal((samples, 2)) * ramp).astype(np.float32)
    audio[: samples // 4] *= 0.001  # a quiet stretch the gates must drop
    reference = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
    assert integrated_loudness(audio, rate, chunk_s=7.0) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize(("rate", "seconds"), [(48000, 14.46), (44100, 3.0)])
def test_the_gated_level_is_pyloudnorm_s_gating_without_its_weighting(rate, seconds):
    from services.media.loudness import gated_level

    rng = np.random.default_rng(int(seconds))
    samples = int(seconds * rate)
    ramp = np.linspace(0.01, 0.3, samples)[None, :]
    audio = (rng.standard_normal((2, samples)) * ramp).astype(np.float32)
    audio[:, : samples // 4] *= 0.001
    meter = pyloudnorm.Meter(rate)
    meter._filters = {}  # its K-weighting left out
    reference = meter.integrated_loudness(audio.T.astype(np.float64))
    # In chunks of 1 s, and of a length that is no whole number of its 100 ms hops.
    for chunk in (rate, 7777):
        chunks = [audio[:, at : at + chunk] for at in range(0, samples, chunk)]
        assert gated_level(chunks, rate) == pytest.approx(reference, abs=1e-6)
    assert gated_level([np.zeros((2, samples), np.float32)], rate) == -np.inf
