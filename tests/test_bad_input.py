"""Every kind of bad input gets a typed error with a clear message, promptly."""

from __future__ import annotations

import dataclasses
import functools
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from services import progress as progress_module
from services.config import RequestLimits, TaggerConfig
from services.domain import GeneratorInfo, OutputOptions, UserControls
from services.errors import (
    CancelledError,
    InvalidInputError,
    InvalidVideoError,
    MediaNotFoundError,
)
from services.gateway.delivery import check_request
from services.media.audio import decode_audio, decode_audio_bytes, mono_blocks, mux_into_video
from services.media.synth import Shot, SyntheticVideo, write_video
from services.media.video import VideoLimits, frames_at, iter_small_frames, probe_video
from services.tagger.backend import AnalysisRequest
from services.tagger.backends import vision
from services.tagger.backends.vision import VisionTagger
from services.vocabulary import load_vocabulary
from tests.hand_made_media import (
    PHONE_TAGS,
    at_ntsc_film_rate,
    cut_at_an_open_gop,
    declaring_samples,
    holding_last_frame,
    many_pictures,
    mpeg_ts,
    recorded_live,
    shot_on_a_phone,
    showing_last,
    song_with_cover_art,
    sound_marked_at,
    stating_frame_ticks,
    stating_length,
    stating_track_length,
    tagged,
    thumbnail_first,
    tone_with_a_late_stamp,
    with_a_huge_picture,
    with_track_statistics,
    write_frames_at,
    write_sound,
    write_streams,
)
from tests.heartbeats import cancelling_at


def refuse(tagger: VisionTagger, path: Path, reason: str) -> InvalidVideoError:
    """The analysis refuses the file for `reason`, naming it, having read little of it:
    counted in this process's CPU time, which other work on the machine does not stretch (on
    the wall clock a refusal of 1.2 s had taken 7.4 s with the suite and a benchmark sharing
    two cores)."""
    started = time.process_time()
    with pytest.raises(InvalidVideoError) as caught:
        tagger.analyze(AnalysisRequest(path))
    assert caught.value.reason == reason, str(caught.value)
    assert caught.value.status_code == "INVALID_ARGUMENT"
    assert path.name in str(caught.value)
    assert time.process_time() - started < 5.0
    return caught.value


def test_missing_file(tagger: VisionTagger, tmp_path: Path):
    with pytest.raises(MediaNotFoundError, match="not found"):
        tagger.analyze(AnalysisRequest(tmp_path / "nothing.mp4"))


def test_zero_bytes(tagger: VisionTagger, tmp_path: Path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert "empty" in str(refuse(tagger, path, "empty"))


def test_text_file(tagger: VisionTagger, tmp_path: Path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 200)
    refuse(tagger, path, "not_a_video")


def test_random_bytes(tagger: VisionTagger, tmp_path: Path):
    path = tmp_path / "noise.mkv"
    path.write_bytes(np.random.default_rng(1).bytes(200_000))
    refuse(tagger, path, "not_a_video")


def test_audio_only(tagger: VisionTagger, tmp_path: Path):
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        for i in range(50):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 48000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "no video" in str(refuse(tagger, path, "audio_only"))


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "photo.bmp", "photo.webp"])
def test_still_image(tagger: VisionTagger, tmp_path: Path, name: str):
    # A 640x360 JPEG is one FFmpeg takes by its name for an image sequence (image2, not a
    # demuxer a caller's file may use): it had been "not in a format bgm reads".
    path = tmp_path / name
    cv2.imwrite(str(path), np.full((360, 640, 3), 128, np.uint8))
    refuse(tagger, path, "still_image")


def test_single_frame_video(tagger: VisionTagger, tmp_path: Path):
    video = write_video(tmp_path / "one.mp4", [Shot(1 / 30)], audio=False)
    refuse(tagger, video.path, "still_image")


def test_a_matroska_sound_a_little_longer_than_its_picture_sets_no_length(
    tagger: VisionTagger, tmp_path: Path
):
    """Matroska states the longest track's length: AAC ending 0.2 s after the last picture
    had made the music 0.2 s longer than the video (under the half second a shorter picture
    is warned about). The video track's own length is the picture's."""
    video = write_streams(tmp_path / "longer-sound.mkv", frames=90, sound_s=3.2,
                          container_format="matroska")  # fmt: skip
    assert probe_video(video).duration_s == pytest.approx(3.0, abs=1e-3)
    analysis = tagger.analyze(AnalysisRequest(video))
    assert analysis.duration_s == pytest.approx(3.0, abs=1e-3) and analysis.warnings == []


@pytest.mark.parametrize("sound_s", [0.0, 3.0])
def test_a_matroska_whose_clock_starts_late_is_as_long_as_its_picture(
    tagger: VisionTagger, tmp_path: Path, sound_s: float
):
    """Matroska states where its clock ends: a file whose picture starts 10 s into its clock
    (a cut from a longer recording; with or without sound from 0 s) had been taken for 13 s
    long, its 3 s of picture called truncated and the music cut to them under a warning."""
    video = write_streams(tmp_path / "late.mkv", frames=90, first_pts=10 * 90000,
                          sound_s=sound_s, container_format="matroska")  # fmt: skip
    assert probe_video(video).duration_s == pytest.approx(3.0, abs=1e-3)
    analysis = tagger.analyze(AnalysisRequest(video))
    assert analysis.duration_s == pytest.approx(3.0, abs=1e-3) and analysis.warnings == []


def test_a_last_frame_held_for_seconds_is_part_of_the_video(tagger: VisionTagger,
                                                             tmp_path: Path):  # fmt: skip
    """A screen recording may hold its last picture for seconds: it had been taken for the
    average frame's length, the file called truncated and the music cut 4 s short."""
    video = holding_last_frame(tmp_path / "held.mp4", frames=50, fps=25, held_s=4.0)
    analysis = tagger.analyze(AnalysisRequest(video))
    assert analysis.duration_s == pytest.approx(1.96 + 4.0, abs=0.01)
    assert analysis.warnings == []


def test_a_picture_far_wider_than_tall_is_analysed_or_refused(tagger: VisionTagger,
                                                               tmp_path: Path):  # fmt: skip
    """A 32:9 video shrinks to an 80x22 analysis picture, on which OpenCV's optical flow had
    died (a segmentation fault: the tagger's whole process); a sliver (16x2000 shrinks to no
    pixels across) had ended in an OpenCV traceback, INTERNAL to a caller."""
    shots = [Shot(1.5, speed=0.5), Shot(1.5, speed=0.9, hue=0.5)]
    wide = write_video(tmp_path / "wide.mp4", shots, width=640, height=180, audio=False)
    analysis = tagger.analyze(AnalysisRequest(wide.path))
    assert [round(c.time_s, 1) for c in analysis.cuts] == [1.5]
    assert max(analysis.motion.values) > 0.1
    sliver = write_video(tmp_path / "sliver.mp4", [Shot(1.0)], width=16, height=2000, audio=False)
    assert "too narrow" in str(refuse(tagger, sliver.path, "too_small"))


def test_a_picture_too_small_to_read(tagger: VisionTagger, tmp_path: Path):
    """Optical flow needs 12 pixels a side: a 10x10 video is refused as too small (it had
    ended in an internal error), and one at the smallest allowed side is analysed."""
    tiny = write_video(tmp_path / "tiny.mp4", [Shot(2.0)], width=10, height=10, audio=False)
    assert "10x10" in str(refuse(tagger, tiny.path, "too_small"))
    side = VideoLimits().min_side
    small = write_video(tmp_path / "small.mp4", [Shot(2.0)], width=side, height=side,
                        audio=False)  # fmt: skip
    assert tagger.analyze(AnalysisRequest(small.path)).duration_s == pytest.approx(2.0, abs=0.1)


def test_an_mpeg_ts_whose_clock_wraps_is_analysed(tagger: VisionTagger, tmp_path: Path):
    """MPEG-TS timestamps count 33 bits and wrap; a capture that holds the wrap is read with
    its frames' times carried past it (it had ended in an internal error), for its whole
    length (FFmpeg's estimate, 1 s of its 3 s, had been taken)."""
    # The clock wraps one second in (the muxer writes 33 bits); the sound's starts at 0.
    path = write_streams(tmp_path / "wrap.ts", frames=90, first_pts=2**33 - 90000, sound_s=3.0,
                         container_format="mpegts")  # fmt: skip
    analysis = tagger.analyze(AnalysisRequest(path))
    assert analysis.duration_s == pytest.approx(3.0)
    assert len(analysis.motion.values) == 30


def test_an_mpeg_ts_whose_sound_comes_first_is_analysed(tagger: VisionTagger, tmp_path: Path):
    """An MPEG-TS whose first stream is its sound (as many captures list theirs): measuring
    its length had looked its picture up among the video streams by its place among all
    the streams, and ended in an internal error."""
    path = write_streams(tmp_path / "sound-first.ts", frames=90, sound_s=3.0,
                         container_format="mpegts", sound_first=True)  # fmt: skip
    analysis = tagger.analyze(AnalysisRequest(path))
    assert analysis.duration_s == pytest.approx(3.0)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_thumbnail_before_the_video_is_not_read_as_it(
    tagger: VisionTagger, tmp_path: Path, suffix: str
):
    """A one-frame thumbnail not marked default, before the video (a real-world container
    review): the first video stream had been read whatever it was (an MP4 refused as a
    single picture, an MKV scored as a 0.033 s, 96x54 video)."""
    analysis = tagger.analyze(AnalysisRequest(thumbnail_first(tmp_path / f"clip{suffix}")))
    assert (analysis.width, analysis.height) == (160, 90)
    assert analysis.duration_s == pytest.approx(3.0, abs=0.05)


def test_a_capture_begun_mid_gop_is_copied_from_the_frame_the_music_starts_at(
    tagger: VisionTagger, tmp_path: Path
):
    """An MPEG-TS cut out of a longer capture starts between keyframes: nothing decodes before
    its first, and the analysis (and so the music) starts there. The copy into the output
    had started at the first packet: its picture 0.53 s behind the music, that much of its
    end cut off (a real-world container review)."""
    whole = write_streams(tmp_path / "whole.ts", frames=150, sound_s=5.0,
                          container_format="mpegts", keyframe_every=30)  # fmt: skip
    data = whole.read_bytes()
    path = tmp_path / "cut.ts"
    path.write_bytes(data[len(data) // 12 // 188 * 188 :])  # whole 188-byte packets
    with av.open(str(path)) as container:
        decodable = sum(1 for _ in container.decode(video=0))
    analysis = tagger.analyze(AnalysisRequest(path))
    assert analysis.duration_s == pytest.approx(decodable / 30, abs=0.04)
    music = np.zeros((round(analysis.duration_s * 48000), 2), np.float32)
    mux_into_video(path, tmp_path / "scored.mp4", music, 48000)
    with av.open(str(tmp_path / "scored.mp4")) as scored:
        shown = [f.time for f in scored.decode(video=0)]
    assert shown[0] == 0.0 and len(shown) == decodable, (shown[:2], len(shown), decodable)


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_a_phone_trim_is_copied_as_shown(tagger: VisionTagger, tmp_path: Path, suffix: str):
    """A phone's trim keeps the whole GOP around each end and an edit list that shows only
    the part kept: the scored video shows that part and nothing else, its first frame with the
    music's start and its last with the music's end (the frames the edit list hid after its
    end had been shown on, two past the music; a real-world container review)."""
    whole = write_streams(tmp_path / "whole.mp4", frames=120, sound_s=4.0,
                          container_format="mp4", keyframe_every=60)  # fmt: skip
    trimmed = showing_last(whole, tmp_path / "trimmed.mp4", 3.0)
    shown = [grey for _, grey in _greys_shown(trimmed)]
    assert len(shown) == 90
    analysis = tagger.analyze(AnalysisRequest(trimmed))
    music = np.zeros((round(analysis.duration_s * 48000), 2), np.float32)
    mux_into_video(trimmed, tmp_path / f"scored{suffix}", music, 48000)
    copied = _greys_shown(tmp_path / f"scored{suffix}")
    assert [grey for _, grey in copied] == shown
    assert copied[0][0] == 0.0
    assert copied[-1][0] == pytest.approx(analysis.duration_s - 1 / 30, abs=0.002)


def test_a_phone_trim_into_matroska_starts_its_music_at_the_first_frame_shown(
    tagger: VisionTagger, tmp_path: Path
):
    """Matroska has no edit list: the hidden start of a phone's trim is in the output, and the
    music starts where the source's first frame shown does, in sync."""
    whole = write_streams(tmp_path / "whole.mp4", frames=120, sound_s=4.0,
                          container_format="mp4", keyframe_every=60)  # fmt: skip
    trimmed = showing_last(whole, tmp_path / "trimmed.mp4", 3.0)
    first_shown = _greys_shown(trimmed)[0][1]
    analysis = tagger.analyze(AnalysisRequest(trimmed))
    music = np.zeros((round(analysis.duration_s * 48000), 2), np.float32)
    mux_into_video(trimmed, tmp_path / "scored.mkv", music, 48000)
    times = {grey: time for time, grey in _greys_shown(tmp_path / "scored.mkv")}
    with av.open(str(tmp_path / "scored.mkv")) as scored:
        music_starts = next(scored.decode(audio=0)).time
    assert music_starts is not None
    assert times[first_shown] == pytest.approx(music_starts, abs=0.002)
    assert music_starts > 0.9


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_the_output_states_the_video_s_own_frame_rate(tmp_path: Path, suffix: str):
    """The copy states the stream's own rate, not its codec clock's tick: a 23.976 clip had
    come out of Matroska at 24,000 frames/s (its frame duration 41.7 us), and bgm refused
    its own output (an output-sync review)."""
    film = at_ntsc_film_rate(tmp_path / "film.mp4")
    out = tmp_path / f"scored{suffix}"
    mux_into_video(film, out, np.zeros((2 * 48000, 2), np.float32), 48000)
    with av.open(str(out)) as scored:
        assert scored.streams.video[0].average_rate == Fraction(24000, 1001)
    assert probe_video(out).duration_s == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(
    ("codec", "tag", "pix_fmt", "options", "suffix"),
    [
        ("libx265", "hvc1", "yuv420p", {"preset": "ultrafast", "x265-params": "log-level=error"},
         ".mp4"),
        ("prores_ks", "apco", "yuv422p10le", {"profile": "0"}, ".mov"),
    ],
    ids=["iphone-hevc", "prores-proxy"],
)  # fmt: skip
def test_the_output_keeps_the_video_s_codec_tag(
    tmp_path: Path, codec: str, tag: str, pix_fmt: str, options: dict[str, str], suffix: str
):
    """The copy keeps its stream's codec tag where the container takes it: an iPhone's HEVC
    (hvc1) had come out as hev1, which Apple's players refuse, and ProRes Proxy as 422 HQ
    (apch) (an output-sync review)."""
    source = tagged(tmp_path / f"source{suffix}", codec, tag, pix_fmt, options)
    out = tmp_path / f"scored{suffix}"
    mux_into_video(source, out, np.zeros((48000, 2), np.float32), 48000)
    with av.open(str(out)) as scored:
        assert scored.streams.video[0].codec_context.codec_tag == tag
        assert sum(1 for _ in scored.decode(video=0)) == 30


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_the_output_keeps_the_source_s_tags(tmp_path: Path, suffix: str):
    """When and where a clip was shot, on what, and its picture's language stay with it, as
    ffmpeg's stream copy keeps them: the output had said nothing of them, and a photo
    library filed the scored clip under the day it was scored, with no place."""
    source = shot_on_a_phone(tmp_path / "phone.mov")
    out = tmp_path / f"scored{suffix}"
    mux_into_video(source, out, np.zeros((48000, 2), np.float32), 48000)
    with av.open(str(out)) as scored:
        # Matroska writes a tag's name in capitals.
        tags = {name.lower(): value for name, value in scored.metadata.items()}
        assert {name.lower(): value for name, value in PHONE_TAGS.items()}.items() <= tags.items()
        assert scored.streams.video[0].metadata["language"] == "fra"


def test_a_copy_cut_short_keeps_no_measure_of_the_source(tmp_path: Path):
    """mkvmerge's statistics of a track (its frames, bytes, bit rate) are not carried into a
    copy that the music's end cuts short: they would state the source's."""
    source = with_track_statistics(tmp_path / "merged.mkv")
    half = tmp_path / "half.mkv"
    mux_into_video(source, half, np.zeros((24000, 2), np.float32), 48000)
    with av.open(str(source)) as merged, av.open(str(half)) as copy:
        assert merged.streams.video[0].metadata["NUMBER_OF_FRAMES"] == "30"
        tags = copy.streams.video[0].metadata
        assert not {"NUMBER_OF_FRAMES", "BPS", "_STATISTICS_TAGS"} & set(tags)
        assert tags["DURATION"].startswith("00:00:00.5")


def _top_level_boxes(path: Path) -> list[bytes]:
    """The types of an ISO media file's top-level boxes, in order."""
    boxes, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if size == 1:
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        boxes.append(kind)
        at += size if size else len(data)
    return boxes


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_an_mp4_output_has_its_index_first(cuts_video: SyntheticVideo, tmp_path: Path, suffix: str):
    """The index (moov) comes before the media (mdat), so a browser plays the file while it
    downloads: it had come last, and a player had to fetch the file's end first."""
    out = tmp_path / f"scored{suffix}"
    mux_into_video(cuts_video.path, out, np.zeros((3 * 48000, 2), np.float32), 48000)
    boxes = _top_level_boxes(out)
    assert boxes.index(b"moov") < boxes.index(b"mdat")


def test_a_cut_at_an_open_gop_keeps_every_frame_it_shows(tmp_path: Path):
    """A Matroska file cut at an open-GOP keyframe: FFmpeg guesses one decode time for two of
    its packets, and the second (a frame shown) had been dropped from the output as going
    back in time, its picture held over two frames (an output-sync review)."""
    cut = cut_at_an_open_gop(tmp_path / "cut.mkv")
    shown = [grey for _, grey in _greys_shown(cut)]
    mux_into_video(cut, tmp_path / "scored.mp4", np.zeros((3 * 48000, 2), np.float32), 48000)
    assert len(shown) == 90
    assert [grey for _, grey in _greys_shown(tmp_path / "scored.mp4")] == shown


def _greys_shown(path: Path) -> list[tuple[float | None, int]]:
    """Each frame `path` shows: its time and its grey (the hand-made media paint each frame
    one grey)."""
    with av.open(str(path)) as container:
        return [
            (frame.time, round(frame.to_ndarray(format="gray").mean()))
            for frame in container.decode(video=0)
        ]


def test_a_recording_that_states_no_length_is_measured_by_its_frames(tmp_path: Path):
    """A WebM written live (a browser's MediaRecorder, a capture to a pipe) states no length:
    it is measured by its packets' times, and scored (it had been refused, "has no
    duration"; an output-sync review)."""
    recording = recorded_live(tmp_path / "recording.webm")
    with av.open(str(recording)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    probe = probe_video(recording)
    assert probe.duration_s == pytest.approx(3.0, abs=0.01)
    music = np.zeros((round(probe.duration_s * 48000), 2), np.float32)
    mux_into_video(recording, tmp_path / "scored.webm", music, 48000)
    assert len(_greys_shown(tmp_path / "scored.webm")) == 90
    # Measured, it is held to the limits as a stated length is.
    with pytest.raises(InvalidVideoError, match=r"lasts over 2 s") as caught:
        probe_video(recording, VideoLimits(max_duration_s=2.0))
    assert caught.value.reason == "too_long"


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
@pytest.mark.parametrize(
    ("picture_from_s", "sound_from_s", "dropped"),
    [(1.5, 1.0, None), (1.5, 2.0, None), (0.0, 0.0, (1.5, 1.9))],
    ids=["sound-first", "picture-first", "packets-dropped"],
)
def test_a_video_s_own_sound_is_read_where_its_times_put_it(
    tmp_path: Path,
    suffix: str,
    picture_from_s: float,
    sound_from_s: float,
    dropped: tuple[float, float] | None,
):
    """A video's sound, kept under the music or heard for speech, is read from the picture's
    first frame shown, each frame where its time puts it: it had been joined end to end from
    its first sample, so a sound starting 0.5 s before the picture was kept 0.5 s late (one
    starting after it, early), and a recorder's dropped packets put everything after them
    that much early (an output-sync review)."""
    video = sound_marked_at(tmp_path / f"marked{suffix}", picture_from_s=picture_from_s,
                            sound_from_s=sound_from_s, mark_s=2.5, dropped=dropped)  # fmt: skip
    due = 2.5 - picture_from_s
    kept = decode_audio(video, 48000, 3 * 48000)
    assert kept is not None and len(kept) == 3 * 48000
    assert np.argmax(np.abs(kept[:, 0]) > 0.05) / 48000 == pytest.approx(due, abs=0.01)
    heard = np.concatenate(list(mono_blocks(video, 16000, 0.5, 3.0)))
    assert np.argmax(np.abs(heard) > 0.05) / 16000 == pytest.approx(due, abs=0.01)


@pytest.mark.parametrize("late_s", [6.0, 20.0])
def test_a_picture_that_starts_long_after_its_sound_is_kept_whole(
    tagger: VisionTagger, tmp_path: Path, late_s: float
):
    """A Matroska file whose picture starts seconds after its sound (a recorder that starts
    the camera late, mkvmerge --sync): its three seconds of picture are measured, copied
    whole and in sync with its sound. FFmpeg, meeting no picture in its first 5 s, had
    started it at 0: 6 s late it lasted 9 s and came out 6 s late, cut at the music's end, 13
    of 90 frames lost; 20 s late the output had no picture (an output-sync review)."""
    video = sound_marked_at(tmp_path / "late.mkv", picture_from_s=late_s, sound_from_s=0.0,
                            mark_s=late_s + 1.5)  # fmt: skip
    assert probe_video(video).duration_s == pytest.approx(3.0, abs=0.01)
    analysis = tagger.analyze(AnalysisRequest(video))
    music = np.zeros((round(analysis.duration_s * 48000), 2), np.float32)
    mux_into_video(video, tmp_path / "scored.mp4", music, 48000)
    shown = _greys_shown(tmp_path / "scored.mp4")
    assert len(shown) == 90 and shown[0][0] == 0.0
    kept = decode_audio(video, 48000, 3 * 48000)
    assert kept is not None
    assert np.argmax(np.abs(kept[:, 0]) > 0.05) / 48000 == pytest.approx(1.5, abs=0.01)


def test_a_sound_s_jittered_stamp_is_not_a_gap(tmp_path: Path):
    """A sound frame stamped 15 ms late (a capture's jittered clock) is joined to the frames
    before it: at a 10 ms tolerance it had become a 15 ms dropout and a splice (times
    jittered by 12 ms, 35 of them in 10 s; a re-verification)."""
    video = tone_with_a_late_stamp(tmp_path / "jittered.mkv", 0.015)
    kept = decode_audio(video, 48000, 3 * 48000)
    assert kept is not None
    steps = np.abs(np.diff(kept[2400:-2400, 0]))
    # A 440 Hz tone at 0.3 moves at most 0.017 a sample.
    assert steps.max() < 0.03, (steps.max(), np.argmax(steps) / 48000)


@pytest.mark.parametrize("first_pts", [0, 2**33 - 90000], ids=["plain", "wrapping"])
def test_frames_are_found_by_their_time_in_an_mpeg_ts(tmp_path: Path, first_pts: int):
    """An MPEG-TS has no index: a seek lands between keyframes, where nothing decodes (the
    VLM tagger had refused a plain 3 s capture as corrupt at 2.5 s). Its frames are read in
    order, by their times carried on past the clock's wrap, which FFmpeg carries on for some
    frames itself (one had been moved on twice, 26.5 hours into the future)."""
    path = write_streams(tmp_path / "capture.ts", frames=90, first_pts=first_pts, sound_s=3.0,
                         container_format="mpegts")  # fmt: skip
    times = [0.2, 0.9, 1.5, 2.5]
    # write_streams paints frame i grey level (37 i) mod 255.
    levels = [round(frame.mean()) for frame in frames_at(path, 0, times, 64, 10**7)]
    assert levels == pytest.approx([(37 * round(t * 30)) % 255 for t in times], abs=2)
    probe = dataclasses.replace(probe_video(path), duration_s=3.0)
    steps = np.diff([frame.time_s for frame in iter_small_frames(probe, VideoLimits())])
    assert len(steps) == 89 and steps == pytest.approx(1 / 30, abs=1e-3)


@pytest.mark.parametrize("container_format", ["mp4", "matroska"])
def test_frames_asked_of_a_long_video_cost_about_one_pass_at_most(
    tmp_path: Path, container_format: str
):
    """The VLM tagger asks for frames spread over the video. With a keyframe every second,
    a seek to each costs about a keyframe interval of decoding. A file with one keyframe had
    cost a decode from its start for each (sixteen frames of 100 s: about 24,000 frames
    decoded for 3,000); it now costs about one pass. Either way the frames are those shown
    at the times asked, and the heartbeat (a cancel) is heard at every frame decoded."""
    times = [round(i * 100 / 17 * 30) / 30 for i in range(1, 17)]
    for keyframe_every, most in ((30, 16 * 31), (100_000, 3000 + 200)):
        path = write_streams(tmp_path / f"every-{keyframe_every}", frames=3000, sound_s=1.0,
                             container_format=container_format,
                             keyframe_every=keyframe_every)  # fmt: skip
        decoded: list[int] = []
        frames = frames_at(path, 0, times, 64, 10**7, functools.partial(decoded.append, 1))
        # write_streams paints frame i grey level (37 i) mod 255.
        levels = [round(frame.mean()) for frame in frames]
        assert levels == pytest.approx([(37 * round(t * 30)) % 255 for t in times], abs=2)
        assert len(decoded) <= most, (keyframe_every, len(decoded))


def test_frames_an_edit_list_hides_count_against_the_length(tmp_path: Path):
    """An MP4's edit list can show the last second of thousands of frames, which must all be
    decoded: the frames decoded, shown or not, count against what the shown length may cost
    (at the limits' rate, 480 for 1 s), and the probe refuses it as too large before it has
    decoded them (a 1080p file of 5,000 had cost the tagger 10 s for 1 s of video). An
    ordinary trim, its last 10 s of 12 shown from a keyframe a second before, is analysed."""
    whole = write_streams(tmp_path / "whole.mp4", frames=3000, sound_s=0.0,
                          container_format="mp4", keyframe_every=100_000)  # fmt: skip
    hidden = showing_last(whole, tmp_path / "last-second.mp4", 1.0)
    with pytest.raises(InvalidVideoError, match=r"holds over 480 frames in 1\.0 s") as caught:
        probe_video(hidden)
    assert caught.value.reason == "too_large"
    twelve = write_streams(tmp_path / "twelve.mp4", frames=360, sound_s=0.0,
                           container_format="mp4", keyframe_every=30)  # fmt: skip
    trimmed = probe_video(showing_last(twelve, tmp_path / "trimmed.mp4", 10.0))
    assert trimmed.duration_s == pytest.approx(10.0)
    assert len(list(iter_small_frames(trimmed, VideoLimits()))) == 300


def test_a_video_sound_that_would_cost_far_more_than_its_length_is_refused(tmp_path: Path):
    """Keeping a video's sound (and hearing its speech) decodes it: a track sampled at 1 Hz
    had turned 9 KB into 3 GB (48,000 samples a sample), and frames of a sample each cost
    22 us apiece, so both are refused with a clear message, as is a track that changes its
    rate part-way. An ordinary track decodes."""
    low = write_sound(tmp_path / "low.mkv", rate=1, frame_samples=4, frames=1)
    with pytest.raises(InvalidInputError, match="sampled at 1 Hz"):
        decode_audio(low, 48000, 4 * 48000)
    # Four seconds allow (4 + 1) x 1,000 frames.
    tiny = write_sound(tmp_path / "tiny.mkv", rate=48000, frame_samples=8, frames=6000)
    heard: list[int] = []
    with pytest.raises(InvalidInputError, match=r"over 5000 frames in its first 4\.0 s"):
        decode_audio(tiny, 48000, 4 * 48000, functools.partial(heard.append, 1))
    assert len(heard) == 1 + 5001  # the picture's first packet, read for its time
    with pytest.raises(InvalidInputError, match="over 5000 frames"):
        list(mono_blocks(tiny, 16000, 60.0, 4.0))
    ordinary = write_sound(tmp_path / "ordinary.mkv", rate=44100, frame_samples=1024, frames=173)
    audio = decode_audio(ordinary, 48000, 4 * 48000)
    assert audio is not None and audio.shape == (4 * 48000, 2)


def test_more_frames_than_the_stated_rate_allows_are_refused(tmp_path: Path):
    """A Matroska file may state 30 frames/s (FFmpeg's guess from its first frames) over
    frames that come every millisecond: reading it stops as too large once it holds more
    frames than its length allows at the limit. At a rate within it, it is analysed."""
    calm = [33 * i for i in range(60)]
    dense = write_frames_at(tmp_path / "dense.mkv", calm + [2000 + i for i in range(3000)])
    tagger = VisionTagger(TaggerConfig(limits=VideoLimits(max_fps=240.0)))
    assert probe_video(dense).fps == pytest.approx(30.0)
    error = refuse(tagger, dense, "too_large")
    assert "more than 240 frames/s" in str(error)
    lively = write_frames_at(tmp_path / "lively.mkv", calm + [2000 + 5 * i for i in range(600)])
    assert tagger.analyze(AnalysisRequest(lively)).duration_s == pytest.approx(5.0, abs=0.1)


def test_an_mpeg_ts_is_measured_no_further_than_the_limits(tmp_path: Path):
    """An MPEG-TS's length is read from its packets' times, and reading stops at the limits:
    a 10-minute capture against a 60 s limit, and 3,000 pictures a millisecond apart
    against 240 frames/s for 10 s, are refused without reading them all."""
    ten_minutes = write_streams(tmp_path / "long.ts", frames=30 * 600, sound_s=1.0,
                                container_format="mpegts")  # fmt: skip
    with pytest.raises(InvalidVideoError, match="lasts over 60 s") as caught:
        probe_video(ten_minutes, VideoLimits(max_duration_s=60.0))
    assert caught.value.reason == "too_long"
    calm = [33 * i for i in range(60)]
    dense = write_frames_at(tmp_path / "dense.ts", calm + [2000 + i for i in range(3000)],
                            container_format="mpegts")  # fmt: skip
    with pytest.raises(InvalidVideoError, match="holds over 2640 frames") as caught:
        probe_video(dense, VideoLimits(max_duration_s=10.0, max_fps=240.0))
    assert caught.value.reason == "too_large"
    assert probe_video(ten_minutes).duration_s == pytest.approx(600.0)


def test_a_cancel_is_heard_while_an_mpeg_ts_is_measured(
    tagger: VisionTagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Reading an MPEG-TS's length reads every packet, seconds for a file at the limits: the
    probe calls its heartbeat at each, and the tagger's probe hears its caller's cancel
    before it decodes anything (the gateway's check of a request does the same)."""
    capture = write_streams(tmp_path / "capture.ts", frames=30 * 60, sound_s=1.0,
                            container_format="mpegts")  # fmt: skip
    heartbeat, calls = cancelling_at(500)
    with pytest.raises(CancelledError):
        probe_video(capture, heartbeat=heartbeat)
    assert len(calls) == 500
    heartbeat, calls = cancelling_at(500)
    info = GeneratorInfo("composer", "1", 600.0, (48000,), ("audio",), ("pop",), ("piano",))
    with pytest.raises(CancelledError):
        check_request(capture, UserControls(), OutputOptions(tmp_path / "out.wav"), info,
                      load_vocabulary(), RequestLimits(), heartbeat)  # fmt: skip
    assert len(calls) == 500
    # Every heartbeat passed on to the progress callback, which cancels at its first.
    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    monkeypatch.setattr(vision, "_scan", lambda *args: pytest.fail("decoded after a cancel"))
    reports: list[float] = []

    def cancelled(fraction: float) -> None:
        reports.append(fraction)
        raise CancelledError("the caller cancelled the request")

    with pytest.raises(CancelledError):
        tagger.analyze(AnalysisRequest(capture), cancelled)
    assert reports == [0.0]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_container_that_states_less_than_its_frames_is_measured_by_them(
    tagger: VisionTagger, tmp_path: Path, suffix: str
):
    """A minute of frames whose header states 2 s (a Matroska Duration or an MP4 track's
    length patched, a file cut and not rewritten) is a minute of video: analysed, and its
    picture copied whole into the output, as players show it. It had been taken for 2 s: the
    output's picture cut to 60 of its 1800 frames and the music with it (an output review).
    Measured, it is held to the limits as a stated length is."""
    minute = write_streams(tmp_path / f"minute{suffix}", frames=30 * 60, sound_s=0.0,
                           container_format="matroska" if suffix == ".mkv" else "mp4")  # fmt: skip
    path = tmp_path / f"states-2s{suffix}"
    (stating_length if suffix == ".mkv" else stating_track_length)(minute, path, 2.0)
    probe = probe_video(path)
    assert probe.duration_s == pytest.approx(60.0, abs=0.05)
    assert tagger.analyze(AnalysisRequest(path)).duration_s == pytest.approx(60.0, abs=0.05)
    music = np.zeros((round(probe.duration_s * 48000), 2), np.float32)
    mux_into_video(path, tmp_path / f"scored{suffix}", music, 48000)
    assert len(_greys_shown(tmp_path / f"scored{suffix}")) == 1800
    with pytest.raises(InvalidVideoError, match=r"lasts over 30 s") as caught:
        probe_video(path, VideoLimits(max_duration_s=30.0))
    assert caught.value.reason == "too_long"


def test_a_huge_picture_in_another_stream_is_never_decoded(tmp_path: Path):
    """A second video stream holding one 11000-pixel-square 16-bit picture (a few hundred
    kilobytes in the file, 0.97 GB decoded): FFmpeg decodes a picture of every stream to learn
    its format as it opens a file, and every open of it (the probe, the sound kept or heard,
    the check that the video can be copied into the output) had decoded it: seconds of work
    no cancel could stop, and about 1.1 GB at each. Now the probe decodes no picture larger
    than the video's own, and the other reads none."""
    video = with_a_huge_picture(write_streams(tmp_path / "clip.mp4", frames=60, sound_s=2.0),
                                tmp_path / "side.mov", 11000)  # fmt: skip
    said, peak_kb = _in_a_process(
        "probe = probe_video(path)\n"
        "assert decode_audio(path, 48000, 96000) is not None\n"
        "assert list(mono_blocks(path, 16000, 1.0, 2.0))\n"
        "check_stream_copy(probe, path.with_name('out.mp4'))\n"
        "print(probe.width, probe.height)\n",
        video,
    )
    assert said == "64 36"
    assert peak_kb < 400_000, f"peak {peak_kb // 1024} MB"


def test_a_file_of_many_picture_streams_is_refused_at_little_cost(
    tagger: VisionTagger, tmp_path: Path
):
    """A 0.4 MB file of 300 1080p picture streams: FFmpeg opens a decoder for every stream
    and decodes a picture of each as it opens a file, and each open of it (the gateway's
    probe, the tagger's) had cost 1.7 GB and 1.6 s that no cancel could stop; four at once
    had taken a server to 8.4 GB (a hostile media review). Now a file of more than four
    picture streams is refused by an open that starts no picture decoder, and FFmpeg reads
    64 streams of a file at most (an MP4 of more does not open, nor as a reference's
    sound). A video of four picture streams, and one of a picture and 16 sound tracks (a
    broadcast MXF's), still open."""
    many = many_pictures(tmp_path / "many.mkv", 300, 1920, 1080)
    said, peak_kb = _in_a_process(
        "from services.errors import InvalidVideoError\n"
        "try:\n    probe_video(path)\nexcept InvalidVideoError as error:\n"
        "    print(error.reason)\n",
        many,
    )
    assert said == "too_large"
    assert peak_kb < 150_000, f"peak {peak_kb // 1024} MB"
    assert "holds at least 64 video streams" in str(refuse(tagger, many, "too_large"))
    more = refuse(tagger, many_pictures(tmp_path / "many.mp4", 70, 64, 48), "too_large")
    assert "more than 64 streams" in str(more)
    with pytest.raises(InvalidInputError, match="more than 64 streams"):
        decode_audio_bytes((tmp_path / "many.mp4").read_bytes(), 48000)
    five = refuse(tagger, many_pictures(tmp_path / "five.mkv", 5, 64, 48), "too_large")
    assert "holds 5 video streams" in str(five)
    assert probe_video(many_pictures(tmp_path / "four.mkv", 4, 64, 48)).width == 64
    broadcast = write_streams(tmp_path / "broadcast.mkv", frames=30, sound_s=1.0,
                              sound_tracks=16, container_format="matroska")  # fmt: skip
    assert probe_video(broadcast).has_audio


def _in_a_process(code: str, path: Path) -> tuple[str, int]:
    """`code` run in a process of its own with `path` (and the media readers) at hand: what it
    printed, and its peak memory in KB (the process's own high-water mark: getrusage's counts
    the parent it was forked from)."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path\n"
        "from services.media.audio import check_stream_copy, decode_audio, mono_blocks\n"
        "from services.media.video import probe_video\n"
        f"path = Path(sys.argv[1])\n{code}"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    *said, peak = done.stdout.strip().splitlines()
    return "\n".join(said), int(peak)


def test_a_song_with_cover_art_is_audio_only(tagger: VisionTagger, tmp_path: Path):
    """A song's album cover is a picture stream of its own, which FFmpeg states at 90,000
    frames/s: an M4A had been refused as running at 90000 frames/s (a hostile media review)."""
    refuse(tagger, song_with_cover_art(tmp_path / "song.m4a"), "audio_only")


def test_a_video_shorter_than_one_frame_is_refused(tagger: VisionTagger, tmp_path: Path):
    """A file stating a length under one frame's: 1 ms had been scored (1 ms of music), 1 ns
    gone on to the tagger, whose analysis had no length (INTERNAL at the gateway); and an MP4
    whose frames last 2^31 ticks each (a frame every 39 hours, in 4 s) had crashed it. One
    that states 1 ms over a second of frames is measured by them (see above)."""
    clip = write_streams(tmp_path / "clip.mkv", frames=30, sound_s=1.0,
                         container_format="matroska")  # fmt: skip
    short = probe_video(stating_length(clip, tmp_path / "short.mkv", 0.001))
    assert short.duration_s == pytest.approx(1.0, abs=0.05)
    mp4 = write_streams(tmp_path / "clip.mp4", frames=60, sound_s=2.0)
    slow = stating_frame_ticks(mp4, tmp_path / "slow.mp4", 0x7FFFFFFF)
    assert "less than one frame" in str(refuse(tagger, slow, "zero_duration"))


def test_captures_joined_out_of_order_are_refused(tagger: VisionTagger, tmp_path: Path):
    """An MPEG-TS whose clock jumps back (2 s stamped from 3000 s, then 2 s from 0) had
    crashed the analysis (INTERNAL): nothing after the jump had a place in time."""
    path = tmp_path / "joined.ts"
    path.write_bytes(mpeg_ts(320, 180, 90_000, 60) + mpeg_ts(320, 180, 0, 60))
    assert "clock jumps back" in str(refuse(tagger, path, "corrupt"))


def test_a_picture_that_changes_size_part_way_is_analysed(tagger: VisionTagger, tmp_path: Path):
    """Captures joined at two sizes: a picture that shrank part-way had crashed the analysis
    (INTERNAL), one that grew had been read as its top-left corner; both are scaled to one
    small size."""
    for name, first, then in (("shrinks.ts", (320, 180), (160, 90)),
                              ("grows.ts", (160, 90), (320, 180))):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(mpeg_ts(*first, 0, 90) + mpeg_ts(*then, 90, 90))
        analysis = tagger.analyze(AnalysisRequest(path))
        assert analysis.duration_s == pytest.approx(6.0, abs=0.1), name


def test_sample_tables_larger_than_the_file_are_refused_before_ffmpeg_reads_them(
    tagger: VisionTagger, tmp_path: Path
):
    """An MP4 of a few hundred bytes declaring 20 million samples of one size, in its sample
    tables or in a fragment's run: FFmpeg's MOV reader builds an index entry for each as it
    opens the file (50 million had taken 1.9 GB at every open, in a hostile media review,
    before any limit was checked; 20 million in a fragment, 790 MB)."""
    mp4 = write_streams(tmp_path / "clip.mp4", frames=30, sound_s=1.0)
    fragmented = declaring_samples(mp4, tmp_path / "run.mp4", 20_000_000, fragmented=True)
    assert fragmented.stat().st_size < 1000
    assert "declares 20,000,000 samples" in str(refuse(tagger, fragmented, "corrupt"))
    bomb = declaring_samples(mp4, tmp_path / "bomb.mp4", 20_000_000)
    assert bomb.stat().st_size < 1000
    assert "declares 20,000,000 samples" in str(refuse(tagger, bomb, "corrupt"))
    _, peak_kb = _in_a_process("try:\n    probe_video(path)\nexcept Exception:\n    pass\n", bomb)
    assert peak_kb < 300_000, f"peak {peak_kb // 1024} MB"
    # Samples that fit in the file, but more than any video bgm reads holds.
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(
        declaring_samples(mp4, tmp_path / "nine.mp4", 9_000_000).read_bytes()
        + struct.pack(">I4s", 8 + 9_000_000, b"free")
        + bytes(9_000_000)
    )
    assert "over 8,000,000 samples" in str(refuse(tagger, padded, "corrupt"))


def test_undecodable_codec(tagger: VisionTagger, tmp_path: Path):
    # An AVI whose codec tag no decoder knows: written as MPEG-4, then relabelled.
    video = write_video(tmp_path / "clip.avi", [Shot(1.0)], codec="mpeg4", audio=False)
    data = video.path.read_bytes()
    assert data.count(b"FMP4") >= 1
    path = tmp_path / "alien.avi"
    path.write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    assert "no decoder" in str(refuse(tagger, path, "undecodable_codec"))


def test_truncated_mp4_is_refused(tagger: VisionTagger, cuts_video: SyntheticVideo, tmp_path: Path):
    # An MP4 cut short loses its index (written last), so nothing can be decoded.
    path = tmp_path / "cut-short.mp4"
    path.write_bytes(cuts_video.path.read_bytes()[: cuts_video.path.stat().st_size // 2])
    refuse(tagger, path, "not_a_video")


def test_truncated_mkv_analyses_what_decodes(tagger: VisionTagger, tmp_path: Path):
    shots = [Shot(2.0, hue=0.1), Shot(2.0, hue=0.5, speed=0.3), Shot(2.0, hue=0.8)]
    video = write_video(tmp_path / "whole.mkv", shots, audio=False)
    path = tmp_path / "cut-short.mkv"
    path.write_bytes(video.path.read_bytes()[: video.path.stat().st_size * 6 // 10])
    analysis = tagger.analyze(AnalysisRequest(path))
    assert 1.0 < analysis.duration_s < 5.0
    assert len(analysis.warnings) == 1 and "truncated" in analysis.warnings[0]
    assert analysis.segments[-1].end_s == pytest.approx(analysis.duration_s)
    assert len(analysis.motion.values) == pytest.approx(analysis.duration_s * 10, abs=1)
    assert any(abs(cut - 2.0) < 0.05 for cut in analysis.cuts_s)


def test_longer_than_the_limit(cuts_video: SyntheticVideo):
    tagger = VisionTagger(TaggerConfig(limits=VideoLimits(max_duration_s=5.0)))
    error = refuse(tagger, cuts_video.path, "too_long")
    assert "limit is 5 s" in str(error)


def test_larger_than_the_limit(cuts_video: SyntheticVideo):
    tagger = VisionTagger(TaggerConfig(limits=VideoLimits(max_width=200, max_height=200)))
    assert "320x180" in str(refuse(tagger, cuts_video.path, "too_large"))


def test_more_pixels_a_second_than_the_limit(cuts_video: SyntheticVideo):
    """Size and rate each within their limits, their product over its own: refused before
    a frame is decoded (8K at 240 frames/s had cost the tagger 4.45 s a second of video)."""
    pixels_per_s = 320 * 180 * 30
    within = VisionTagger(TaggerConfig(limits=VideoLimits(max_pixels_per_s=pixels_per_s)))
    assert within.analyze(AnalysisRequest(cuts_video.path)).duration_s > 0
    over = VisionTagger(TaggerConfig(limits=VideoLimits(max_pixels_per_s=pixels_per_s / 2)))
    error = refuse(over, cuts_video.path, "too_large")
    says = "320x180 at 30 frames/s, 1.728 million pixels a second; the limit is 0.864 million"
    assert says in str(error)


def test_directory_is_not_a_video(tagger: VisionTagger, tmp_path: Path):
    refuse(tagger, tmp_path, "not_a_video")


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "mpeg4"), (".mkv", "mpeg4")])
def test_container_without_frames(tagger: VisionTagger, tmp_path: Path, suffix: str, codec: str):
    import av

    path = tmp_path / f"no-frames{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # the header, and not one frame
    with pytest.raises(InvalidVideoError) as caught:
        tagger.analyze(AnalysisRequest(path))
    assert caught.value.reason == "not_a_video"
    assert path.name in str(caught.value)


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_a_list_of_other_files_is_refused(tagger: VisionTagger, tmp_path: Path, kind: str):
    """A playlist or list naming other files (here one outside any folder the caller may
    name) is no video: FFmpeg would read whatever it names."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = write_video(elsewhere / "other.ts", [Shot(2.0)], audio=False)
    if kind == "hls":
        path = tmp_path / "list.m3u8"
        path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
                        f"{other.path}\n#EXT-X-ENDLIST\n")  # fmt: skip
    else:
        path = tmp_path / "list.ffconcat"
        path.write_text(f"ffconcat version 1.0\nfile '{other.path}'\n")
    assert "playlist" in str(refuse(tagger, path, "not_a_video"))
