"""Music that makes room for speech (issue 19): a video whose sound has known sentences
spoken by espeak-ng at known times and door slams between them."""

from __future__ import annotations

import dataclasses
import io
import shutil

import numpy as np
import pretty_midi
import pytest
from scipy.signal import butter, sosfiltfilt

from services.config import RequestLimits, SpeechDuckingConfig
from services.contract import analysis_from_proto, analysis_to_proto
from services.domain import OutputOptions, SpeechInterval, UserControls, VideoAnalysis
from services.errors import CancelledError, InvalidInputError
from services.gateway.controls import make_brief, validate_controls
from services.gateway.delivery import master_music, speech_ducking
from services.gateway.mastering import SpeechDucking, master, speech_gain
from services.generator.backends.composer.backend import ComposerGenerator
from services.generator.backends.composer.speech import PULSE_KEYS, VOICE_LOW
from services.generator.beatcheck import genre_brief
from services.media.synth import Shot, SyntheticVideo, speech_track, write_video
from services.pipeline import ScorePipeline
from services.rules import SPEECH_MODES, speech_matters
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger
from services.vocabulary import load_vocabulary
from tests.bgm_command import Finished, bgm

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng (Debian) makes the speech; ./dev.sh setup installs it",
)
LINES = [
    (1.0, "Welcome to the workshop. Today we build a small wooden box."),
    (8.0, "First, measure the boards twice and cut them once."),
    (15.0, "Thanks for watching, and see you next time."),
]
SLAMS = [6.5, 13.2]
DURATION_S = 20.0
RATE = 48000


@dataclasses.dataclass(frozen=True)
class Spoken:
    video: SyntheticVideo
    truth: list[tuple[float, float]]
    analysis: VideoAnalysis


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory, tagger: VisionTagger) -> Spoken:
    track, truth = speech_track(DURATION_S, LINES, hits=SLAMS, bed_level=0.002)
    shots = [Shot(5.0, hue=0.1), Shot(5.0, hue=0.4, speed=0.3), Shot(5.0, hue=0.7),
             Shot(5.0, hue=0.9, speed=0.5)]  # fmt: skip
    video = write_video(tmp_path_factory.mktemp("speech") / "talk.mp4", shots, soundtrack=track)
    return Spoken(video, truth, tagger.analyze(AnalysisRequest(video.path)))


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def test_the_tagger_finds_the_speech_and_not_the_slams(spoken):
    found = [(i.start_s, i.end_s) for i in spoken.analysis.speech]
    overlap = _overlap(found, spoken.truth)
    precision = overlap / sum(e - s for s, e in found)
    recall = overlap / sum(e - s for s, e in spoken.truth)
    print(f"speech time: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9
    for slam in SLAMS:
        assert not any(s - 0.1 < slam < e for s, e in found)
    loudness = spoken.analysis.loudness
    assert loudness.hz == 10.0 and abs(len(loudness.values) - DURATION_S * 10) <= 1
    # The slam is loud where it is; the bed between lines is quiet.
    assert loudness.values[int(SLAMS[0] * 10)] > -25 > loudness.values[int(7.5 * 10)]
    again = analysis_from_proto(analysis_to_proto(spoken.analysis))
    assert again.speech == spoken.analysis.speech
    assert np.allclose(again.loudness.values, loudness.values, atol=0.01)


def test_a_video_without_sound_has_no_speech(tagger, tmp_path):
    video = write_video(tmp_path / "mute.mp4", [Shot(2.0)], audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert analysis.speech == [] and analysis.loudness.values == []


def _brief(spoken: Spoken, generator: ComposerGenerator, mode: str, keep: bool, genre: str = "pop"):
    controls = validate_controls(UserControls(genres=[genre], speech=mode), load_vocabulary())
    return make_brief(spoken.analysis, controls, load_vocabulary(), generator.describe(), RATE,
                      keep_original_audio=keep), controls  # fmt: skip


def test_speech_modes_decide_what_happens():
    vocabulary = load_vocabulary()
    with pytest.raises(InvalidInputError, match="unknown speech handling 'loud'") as caught:
        validate_controls(UserControls(speech="loud"), vocabulary)
    assert caught.value.field == "controls.speech"


def test_the_arrangement_steps_aside_under_speech(spoken, generator: ComposerGenerator):
    brief, _ = _brief(spoken, generator, "auto", keep=True)
    assert brief.speech == spoken.analysis.speech
    music = generator.generate(brief)
    plain = generator.generate(dataclasses.replace(brief, speech=[]))
    midi = pretty_midi.PrettyMIDI(io.BytesIO(music.midi))
    spans = [(i.start_s, i.end_s) for i in brief.speech]

    def under(note: pretty_midi.Note) -> bool:
        return any(note.start < e and note.end > s for s, e in spans)

    roles = _roles(brief)
    for instrument in midi.instruments:
        notes = [n for n in instrument.notes if under(n)]
        if instrument.is_drum:
            assert all(n.pitch in PULSE_KEYS for n in notes)
            for start, _ in spans:
                assert not any(abs(n.start - start) < 0.15 and n.pitch not in PULSE_KEYS
                               for n in instrument.notes)  # fmt: skip
        elif instrument.name in roles.of("melody"):
            # Notes that began before the breath may ring on into it; none starts in it.
            assert not any(s - 0.25 <= n.start < e for n in notes for s, e in spans)
        elif instrument.name in roles.of("comping"):
            assert all(n.pitch < VOICE_LOW for n in notes if any(
                s - 0.25 <= n.start < e for s, e in spans))  # fmt: skip
    thinned = [s.thinning for s in music.plan.sections if s.thinning]
    assert thinned and all(t.startswith("speech ") for t in thinned)
    assert not any(s.thinning for s in plain.plan.sections)
    plain_midi = pretty_midi.PrettyMIDI(io.BytesIO(plain.midi))
    plain_drums = [n for i in plain_midi.instruments if i.is_drum for n in i.notes if under(n)]
    # Without speech the same piece has its full kit under those stretches.
    assert any(n.pitch not in PULSE_KEYS for n in plain_drums)


def _roles(brief):
    from services.generator.backends.composer.arrangement import assign_roles, choose_band
    from services.generator.backends.composer.styles import STYLES

    style = STYLES[brief.tags.genres[0]]
    return assign_roles(style, choose_band(style, brief.tags, brief.negative))


def test_the_lead_is_silent_under_speech(spoken, generator: ComposerGenerator):
    brief, _ = _brief(spoken, generator, "arrange", keep=False)
    music = generator.generate(dataclasses.replace(brief, stems=True))
    roles = _roles(brief)
    assert roles.of("melody")
    for player in roles.of("melody"):
        stem = music.stems[player]
        for interval in brief.speech:
            part = stem[int((interval.start_s + 0.3) * RATE) : int(interval.end_s * RATE)]
            if len(part):
                # A release tail may ring into the first 0.3 s; then nothing.
                assert float(np.sqrt(np.mean(part**2))) < 1e-3, player


def _band_db(audio: np.ndarray, spans: list[tuple[float, float]], inside: bool) -> float:
    sos = butter(4, (200.0, 4000.0), btype="bandpass", fs=RATE, output="sos")
    band = sosfiltfilt(sos, audio.mean(axis=1))
    mask = np.zeros(len(band), bool)
    for start, end in spans:
        mask[int(start * RATE) : int(end * RATE)] = True
    chosen = band[mask if inside else ~mask]
    return float(10 * np.log10(np.mean(chosen**2) + 1e-20))


def test_arranged_and_ducked_music_is_quieter_in_the_voice_band_under_speech(
    spoken, generator: ComposerGenerator, tmp_path
):
    spans = spoken.truth
    differences = {}
    for mode in ("auto", "duck", "off"):
        brief, controls = _brief(spoken, generator, mode, keep=True)
        music = generator.generate(brief)
        options = OutputOptions(output=tmp_path / f"{mode}.wav", keep_original_audio=True)
        ducking = speech_ducking(spoken.analysis, controls, options, SpeechDuckingConfig())
        # The music as generated: master_music masters over it.
        generated = music.audio.copy()
        mastered = master_music(spoken.video.path, music, options, lambda: None, ducking)
        delivered_music = generated * mastered.music_gain[:, None]
        differences[mode] = _band_db(delivered_music, spans, False) - _band_db(
            delivered_music, spans, True
        )
    print(f"music's voice band, outside minus under speech: arrange+duck (auto) "
          f"{differences['auto']:.1f} dB, duck {differences['duck']:.1f} dB, off "
          f"{differences['off']:.1f} dB")  # fmt: skip
    assert differences["auto"] >= 6.0
    # The arrangement's part: more room than ducking alone.
    assert differences["auto"] > differences["duck"] + 1.0


def test_the_music_ducks_for_speech_not_for_a_door_slam(spoken, tmp_path):
    ducking = speech_ducking(spoken.analysis, UserControls(speech="duck"),
                             OutputOptions(output=tmp_path / "x.wav"),
                             SpeechDuckingConfig())  # fmt: skip
    assert ducking is not None and ducking.intervals == spoken.analysis.speech
    gain = speech_gain(ducking, RATE, round(DURATION_S * RATE))
    for slam in SLAMS:
        assert gain[int(slam * RATE)] == pytest.approx(1.0)
    # The second line (after a pause): down by its first word (look-ahead), level before.
    second = min((i.start_s for i in spoken.analysis.speech), key=lambda t: abs(t - 8.0))
    assert gain[int(second * RATE)] < 10 ** (-10 / 20)
    assert gain[int((second - 1.2) * RATE)] == pytest.approx(1.0)
    # "off": no ducking at all (the music had ducked by the kept sound's level, deeper than
    # "duck" and at every slam: that level-keyed ducking is left for a tagger that did not
    # listen, below).
    off = speech_ducking(spoken.analysis, UserControls(speech="off"),
                         OutputOptions(output=tmp_path / "x.wav", keep_original_audio=True),
                         SpeechDuckingConfig())  # fmt: skip
    assert off is not None and off.intervals == []
    tone = np.tile(np.sin(np.arange(RATE) / RATE * 2 * np.pi * 440)[:, None], (20, 2)) * 0.1
    from services.media.audio import decode_audio

    original = decode_audio(spoken.video.path, RATE, len(tone))
    assert original is not None
    # A quiet target, so that the limiter never acts and the gains are the ducking's alone.
    keyed = master(tone.astype(np.float32), RATE, -30.0, original=original, speech=ducking)
    by_level = master(tone.astype(np.float32), RATE, -30.0, original=original)
    level_kept = master(tone.astype(np.float32), RATE, -30.0, original=original, speech=off)
    assert not keyed.report.limited and not by_level.report.limited
    at_slam, between = int(SLAMS[0] * RATE) + 2400, int(19.5 * RATE)
    assert keyed.music_gain[at_slam] == pytest.approx(keyed.music_gain[between], rel=0.02)
    assert by_level.music_gain[at_slam] < 0.7 * by_level.music_gain[between]
    assert not level_kept.report.ducked
    assert np.ptp(level_kept.music_gain) <= 1e-6 * level_kept.music_gain.max()


def test_carving_dips_only_the_voice_band(spoken):
    ducking = SpeechDucking(spoken.analysis.speech, 12.0, 0.3, 0.6, carve=True)
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal((round(DURATION_S * RATE), 2))).astype(np.float32)
    carved = master(noise, RATE, -20.0, speech=ducking).audio
    spans = [(i.start_s, i.end_s) for i in spoken.analysis.speech]
    sos_low = butter(4, 150.0, btype="lowpass", fs=RATE, output="sos")

    def low_db(audio: np.ndarray, inside: bool) -> float:
        low = sosfiltfilt(sos_low, audio.mean(axis=1))
        mask = np.zeros(len(low), bool)
        for start, end in spans:
            mask[int(start * RATE) : int(end * RATE)] = True
        return float(10 * np.log10(np.mean(low[mask if inside else ~mask] ** 2)))

    band = _band_db(carved, spans, False) - _band_db(carved, spans, True)
    low = low_db(carved, False) - low_db(carved, True)
    assert band > 4.0 and abs(low) < 1.0


def test_speech_outside_the_music_is_refused(spoken, generator: ComposerGenerator):
    brief, _ = _brief(spoken, generator, "arrange", keep=False)
    bad = dataclasses.replace(brief, speech=[SpeechInterval(5.0, 4.0)])
    with pytest.raises(InvalidInputError, match=r"brief.speech\[0\]"):
        generator.generate(bad)


def test_bgm_score_takes_speech(spoken, tmp_path):
    def score(*extra: str) -> Finished:
        return bgm("score", str(spoken.video.path), "-o", str(tmp_path / "out.wav"), "--force",
                   "--keep-original-audio", *extra)  # fmt: skip

    done = score("--speech", "auto")
    assert done.returncode == 0, done.stderr
    assert "stretches" in done.stdout and "steps aside" in done.stdout
    assert "the music ducks under it" in done.stdout
    assert "ducked under the original sound" in done.stdout
    # Ducked under speech that the music replaces: no "original sound" it was ducked under
    # (QA: the Loudness line had said so for an audio file of the music alone).
    alone = bgm("score", str(spoken.video.path), "-o", str(tmp_path / "alone.wav"),
                "--speech", "duck")  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert "the music ducks under it" in alone.stdout
    assert "original sound" not in alone.stdout and "the music alone" in alone.stdout
    refused = score("--speech", "loud")
    assert refused.returncode != 0 and "invalid choice: 'loud'" in refused.stderr


def test_bgm_score_listens_only_when_the_voice_is_kept_or_asked_for(spoken, tmp_path):
    """Music that replaces the video's sound ("auto" without --keep-original-audio) does not
    wait for the VAD: torch and the model stay unloaded, and the summary has no Speech line
    (with the sound kept: the test above)."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom services.cli import main\ncode = main(sys.argv[1:])\n"
        "print('torch loaded:', 'torch' in sys.modules)\nsys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "score", str(spoken.video.path), "-o",
         str(tmp_path / "out.wav"), "--force"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "torch loaded: False" in done.stdout and "stretches" not in done.stdout
    assert [speech_matters(mode, keep) for mode in SPEECH_MODES for keep in (False, True)] == [
        False, True,  # auto: only with the sound kept
        True, True,  # duck
        True, True,  # arrange
        False, False,  # off
    ]  # fmt: skip


def test_the_pipeline_listens_only_when_the_speech_matters(spoken, tagger, generator, tmp_path):
    """ScorePipeline asks its tagger to listen by the rule the CLI and the gateway use: not
    for music that replaces the video's sound, but with the sound kept or a speech mode
    asked for."""
    pipeline = ScorePipeline(tagger, generator, load_vocabulary(), RequestLimits())
    for controls, keep, heard in ((UserControls(), False, False),
                                  (UserControls(), True, True),
                                  (UserControls(speech="duck"), False, True),
                                  (UserControls(speech="off"), True, False)):  # fmt: skip
        output = tmp_path / f"{controls.speech}-{keep}.wav"
        result = pipeline.score(spoken.video.path, controls,
                                OutputOptions(output, keep_original_audio=keep))  # fmt: skip
        assert bool(result.analysis.speech) == heard, (controls.speech, keep)


def test_analyses_at_once_hear_the_same_speech(spoken, tagger: VisionTagger):
    """The VAD keeps state between frames: concurrent analyses each get their own."""
    from concurrent.futures import ThreadPoolExecutor

    assert tagger.listener is not None
    listener = tagger.listener
    with ThreadPoolExecutor(4) as pool:
        seconds = spoken.analysis.duration_s
        heard = list(pool.map(lambda _: listener.hear(spoken.video.path, seconds, lambda: None),
                              range(4)))  # fmt: skip
    assert all(h.speech == spoken.analysis.speech for h in heard)


def test_bgm_analyze_lists_the_speech(spoken):
    done = bgm("analyze", str(spoken.video.path))
    assert done.returncode == 0, done.stderr
    first = spoken.analysis.speech[0]
    assert f"Speech {len(spoken.analysis.speech)}: {first.start_s:.2f}-" in done.stdout


def test_a_sound_track_longer_than_the_video_is_read_only_as_far_as_the_video(
    tagger: VisionTagger, tmp_path
):
    """A 2 s video carrying 60 s of sound: the tagger hears 2 s (its level curve covers the
    video, not the track) and mastering decodes no further (it had decoded, resampled and held
    the whole track: an hour of silent AAC cost 73 s and 4 GB)."""
    from services.media.audio import decode_audio
    from tests.hand_made_media import write_streams

    path = write_streams(tmp_path / "long_sound.mkv", frames=60, sound_s=60.0)
    analysis = tagger.analyze(AnalysisRequest(path))
    assert analysis.duration_s == pytest.approx(2.0, abs=0.1)
    hz = analysis.loudness.hz
    assert len(analysis.loudness.values) <= analysis.duration_s * hz + 1
    frames: list[int] = []
    audio = decode_audio(path, 48000, 2 * 48000, lambda: frames.append(1))
    assert audio is not None and len(audio) == 2 * 48000
    # About 2 s of 1024-sample frames were decoded, not 60 s of them.
    assert len(frames) < 3 * 48000 / 1024


def test_thousands_of_spoken_stretches_thin_like_their_union_and_hear_a_cancel(
    generator: ComposerGenerator, beat_analysis
):
    """A brief may hold 20,000 spoken stretches: the thinning joins them and finds each note's
    by bisection (it had checked every note against every stretch, with no heartbeat: a cancel
    went unheard for 16 s), and a cancel is heard while it works."""
    from services.generator.backends.composer.speech import around_speech
    from services.progress import Heartbeat
    from tests.heartbeats import cancelling_at

    score = generator.compose(genre_brief(beat_analysis, "pop"), Heartbeat(lambda f: None))
    # Stretches of 2 ms every 3 ms from 4 s to 10 s, overlapping ones among them.
    many = [SpeechInterval(4.0 + i * 0.003, 4.0 + i * 0.003 + 0.002) for i in range(2000)]
    many += [SpeechInterval(6.0, 6.5), SpeechInterval(6.2, 7.0)]
    union = [SpeechInterval(4.0, 4.0 + 1999 * 0.003 + 0.002)]
    thinned = around_speech(score.notes, score.plan, score.roles, many, lambda: None)
    joined = around_speech(score.notes, score.plan, score.roles, union, lambda: None)
    assert thinned.notes == joined.notes
    assert len(thinned.notes) < len(score.notes)
    heartbeat, _ = cancelling_at(1)
    with pytest.raises(CancelledError):
        around_speech(score.notes, score.plan, score.roles, many, heartbeat)
