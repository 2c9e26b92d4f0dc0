"""What the vision backend finds in videos whose cuts, motion and duration are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from services.media.synth import MOTION_SPEEDS, Shot, SyntheticVideo, write_video
from services.media.video import probe_video
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger, _segment_bounds


def cut_scores(found: list[float], truth: list[float], fps: float) -> tuple[float, float]:
    """(recall within one frame, share of found cuts that match no true cut)."""
    tolerance = 1.0 / fps + 1e-6
    hits = sum(any(abs(f - t) <= tolerance for f in found) for t in truth)
    false = sum(not any(abs(f - t) <= tolerance for t in truth) for f in found)
    return hits / len(truth), false / max(1, len(found))


def test_hard_cuts_found_within_one_frame(tagger: VisionTagger, cuts_video: SyntheticVideo):
    analysis = tagger.analyze(AnalysisRequest(cuts_video.path))
    recall, false_share = cut_scores(analysis.cuts_s, cuts_video.cuts_s, cuts_video.fps)
    assert recall >= 0.95, (analysis.cuts_s, cuts_video.cuts_s)
    assert false_share <= 0.05, (analysis.cuts_s, cuts_video.cuts_s)
    assert all(cut.kind == "hard" for cut in analysis.cuts)


def test_duration_and_probe(tagger: VisionTagger, cuts_video: SyntheticVideo):
    analysis = tagger.analyze(AnalysisRequest(cuts_video.path))
    assert analysis.duration_s == pytest.approx(cuts_video.duration_s, abs=1e-3)
    assert (analysis.width, analysis.height) == (cuts_video.width, cuts_video.height)
    assert analysis.fps == pytest.approx(30.0)
    assert analysis.has_audio
    assert analysis.rotation == 0
    assert analysis.warnings == []


def test_motion_curve_ranks_like_the_true_speed(tagger: VisionTagger, motion_video: SyntheticVideo):
    analysis = tagger.analyze(AnalysisRequest(motion_video.path))
    hz = analysis.motion.hz
    values = np.array(analysis.motion.values)
    assert len(values) == round(motion_video.duration_s * hz)
    assert values.min() >= 0.0 and values.max() <= 1.0
    times = np.arange(len(values)) / hz
    frame_times = np.array(motion_video.frame_times_s)
    truth = np.array(motion_video.speed_at_frame)[
        np.searchsorted(frame_times, times, side="right") - 1
    ]
    rho = spearmanr(values, truth).statistic
    assert rho >= 0.8, rho


def test_segments_follow_cuts_and_carry_energy(tagger: VisionTagger, motion_video: SyntheticVideo):
    analysis = tagger.analyze(AnalysisRequest(motion_video.path))
    assert len(analysis.segments) == len(motion_video.cuts_s) + 1
    assert analysis.segments[0].start_s == 0.0
    assert analysis.segments[-1].end_s == pytest.approx(motion_video.duration_s, abs=1e-3)
    for before, after in zip(analysis.segments, analysis.segments[1:], strict=False):
        assert before.end_s == after.start_s
    energies = [segment.energy for segment in analysis.segments]
    assert spearmanr(energies, MOTION_SPEEDS).statistic >= 0.9
    assert all(segment.moods and segment.thumbnail_jpeg for segment in analysis.segments)


def test_short_shots_merge_into_a_neighbour(tagger: VisionTagger, tmp_path: Path):
    shots = [Shot(3.0, hue=0.1), Shot(0.6, hue=0.5), Shot(3.0, hue=0.8)]
    video = write_video(tmp_path / "short.mp4", shots, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    recall, _ = cut_scores(analysis.cuts_s, video.cuts_s, video.fps)
    assert recall == 1.0  # the cuts are reported...
    assert len(analysis.segments) == 2  # ...but the 0.6 s shot is not a segment of its own


def test_a_fast_montage_keeps_every_cut_down_to_the_shortest_shot(
    tagger: VisionTagger, tmp_path: Path
):
    """Shots of 0.45 s, over tagger.min_shot_s (0.4 s): every cut is reported, and so gets
    its accent. A floor of 0.5 s written into the merging had dropped every other one."""
    shots = [Shot(0.45, hue=(0.13 * i) % 1.0, brightness=0.4 + 0.1 * (i % 3)) for i in range(12)]
    video = write_video(tmp_path / "montage.mp4", shots, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    recall, false_share = cut_scores(analysis.cuts_s, video.cuts_s, video.fps)
    assert recall == 1.0, (analysis.cuts_s, video.cuts_s)
    assert false_share == 0.0


def test_fade_through_black_is_a_fade_cut(tagger: VisionTagger, tmp_path: Path):
    shots = [
        Shot(3.0, hue=0.1, brightness=0.6),
        Shot(3.0, hue=0.6, fade_in_frames=15),
        Shot(3.0, hue=0.3, brightness=0.7),
    ]
    video = write_video(tmp_path / "fade.mp4", shots, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    kinds = {round(cut.time_s): cut.kind for cut in analysis.cuts}
    assert kinds == {3: "fade", 6: "hard"}
    fade = next(cut for cut in analysis.cuts if cut.kind == "fade")
    assert abs(fade.time_s - 3.0) <= 3 / 30


def test_a_black_shot_has_no_cut_inside_it(tagger: VisionTagger, tmp_path: Path):
    """A cut to a black shot held for seconds, and a cut out of it: two cuts, at its ends. A
    fade cut had been placed inside it (2 s into 3 s of black: the detector's middle of the
    black, moved at most 0.5 s towards its end), and the music struck a hit on nothing."""
    shots = [
        Shot(3.0, hue=0.0, brightness=0.6),
        Shot(3.0, speed=0.0, brightness=0.0, saturation=0.0),
        Shot(4.0, hue=0.66, brightness=0.6),
    ]
    video = write_video(tmp_path / "black.mp4", shots, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert [round(time_s, 1) for time_s in analysis.cuts_s] == [3.0, 6.0], analysis.cuts
    # The second on the new shot's first frame (it had been on the black's last, 33 ms early).
    assert analysis.cuts_s[1] == pytest.approx(6.0, abs=0.5 / video.fps), analysis.cuts


@pytest.mark.parametrize("before, after", [(0.9, 0.15), (0.15, 0.9), (0.5, 0.5)])
def test_a_fade_cut_is_its_black_frame(tagger: VisionTagger, tmp_path: Path, before, after):
    # The shot starts on frame 90 (3.0 s), which the fade makes black; shots of unequal
    # brightness cross the detector's threshold at unequal distances from it.
    shots = [
        Shot(3.0, hue=0.1, brightness=before),
        Shot(3.0, hue=0.6, brightness=after, fade_in_frames=12),
    ]
    video = write_video(tmp_path / "fade.mp4", shots, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert [(round(cut.time_s, 3), cut.kind) for cut in analysis.cuts] == [(3.0, "fade")]


CODECS = [
    ("libx264", "mp4"),
    ("libx265", "mp4"),
    ("libvpx-vp9", "webm"),
    ("libsvtav1", "mkv"),
    ("mpeg4", "mov"),
]


@pytest.mark.parametrize(("codec", "extension"), CODECS)
def test_codecs_and_containers(tagger: VisionTagger, tmp_path: Path, codec: str, extension: str):
    shots = [
        Shot(1.5, speed=0.2, hue=0.1),
        Shot(1.5, speed=0.5, hue=0.6),
        Shot(1.5, speed=0.1, hue=0.35, brightness=0.8),
    ]
    video = write_video(tmp_path / f"clip.{extension}", shots, codec=codec, width=256, height=144)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    recall, false_share = cut_scores(analysis.cuts_s, video.cuts_s, video.fps)
    assert recall == 1.0 and false_share == 0.0, analysis.cuts_s
    assert analysis.duration_s == pytest.approx(video.duration_s, abs=0.05)
    assert (analysis.width, analysis.height) == (256, 144)


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_a_tiny_picture_is_read_in_every_codec(tagger: VisionTagger, tmp_path: Path, codec: str):
    """A 64x36 MPEG-4 Part 2 video had been refused as corrupt: its decoder asks for 53,760
    pixels for any small picture, over the limit a picture of that size was given."""
    shots = [Shot(1.0, hue=0.1), Shot(1.0, hue=0.6, brightness=0.8)]
    video = write_video(tmp_path / "tiny.mp4", shots, codec=codec, width=64, height=36)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert (analysis.width, analysis.height) == (64, 36)
    assert analysis.duration_s == pytest.approx(video.duration_s, abs=0.05)


def test_phone_rotation_swaps_the_display_size(tagger: VisionTagger, tmp_path: Path):
    # A portrait phone clip: coded landscape, displayed after a 90 degree clockwise turn.
    video = write_video(
        tmp_path / "phone.mp4",
        [Shot(1.5, hue=0.2), Shot(1.5, hue=0.7)],
        width=320,
        height=180,
        rotation=-90,
    )
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert analysis.rotation == 90
    assert (analysis.width, analysis.height) == (180, 320)
    assert len(analysis.cuts) == 1


def test_no_audio_track(tagger: VisionTagger, motion_video: SyntheticVideo):
    assert not tagger.analyze(AnalysisRequest(motion_video.path)).has_audio


def test_variable_frame_rate_keeps_true_times(tagger: VisionTagger, tmp_path: Path):
    shots = [Shot(2.0, hue=0.1), Shot(2.5, hue=0.5, speed=0.4), Shot(2.0, hue=0.85)]
    video = write_video(tmp_path / "vfr.mp4", shots, variable_rate=True, audio=False)
    analysis = tagger.analyze(AnalysisRequest(video.path))
    # Frames here are up to 1/15 s apart: one frame is the tolerance.
    for truth in video.cuts_s:
        assert any(abs(found - truth) <= 1 / 15 + 1e-6 for found in analysis.cuts_s), (
            analysis.cuts_s
        )
    assert analysis.duration_s == pytest.approx(video.duration_s, abs=0.1)


def test_one_second_video(tagger: VisionTagger, tmp_path: Path):
    video = write_video(tmp_path / "short.mp4", [Shot(1.0, speed=0.3)])
    analysis = tagger.analyze(AnalysisRequest(video.path))
    assert analysis.duration_s == pytest.approx(1.0, abs=0.05)
    assert analysis.cuts == []
    assert len(analysis.segments) == 1
    assert len(analysis.motion.values) == 10


def test_progress_is_reported_up_to_done(tagger: VisionTagger, cuts_video: SyntheticVideo):
    seen: list[float] = []
    tagger.analyze(AnalysisRequest(cuts_video.path), progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 1.0 and len(seen) > 3


def test_short_stretches_merge_shortest_first_into_the_closer_energy():
    """Segments: a stretch shorter than the minimum joins the neighbour whose energy is
    closer, the shortest first and the leftmost of equals, until none is short. Thousands of
    cuts (the limits allow 14,400) cost a fraction of a second: they wait in a heap."""
    # 1 Hz energy: 0-4 s calm, 4-5 s busy, 5-9 s busy, 9-10 s calm.
    energy = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.8, 0.8, 0.8, 0.8, 0.1], dtype=np.float32)
    # 4-5 s (busy) joins 5-9 s; then 9-10 s, calm but with only one neighbour, joins that.
    assert _segment_bounds([4.0, 5.0, 9.0], 10.0, energy, 1.0, 2.0) == [(0.0, 4.0), (4.0, 10.0)]
    # 4-5 s calm now: it joins 0-4 s.
    energy[4] = 0.1
    assert _segment_bounds([4.0, 5.0, 9.0], 10.0, energy, 1.0, 2.0) == [(0.0, 5.0), (5.0, 10.0)]
    # A burst of short stretches: the leftmost of the shortest goes first, each into the
    # closer energy, so the calm and the busy halves stay apart.
    energy = np.repeat(np.array([0.1, 0.9], dtype=np.float32), 10)
    cuts = [float(t) for t in range(1, 20)]
    assert _segment_bounds(cuts, 20.0, energy, 1.0, 2.5) == [
        (0.0, 7.0), (7.0, 10.0), (10.0, 13.0), (13.0, 16.0), (16.0, 20.0)
    ]  # fmt: skip


def test_a_display_matrix_at_any_angle_gives_a_quarter_turn(tmp_path: Path):
    """A container may turn its picture by any angle, or hold an all-zero matrix (FFmpeg's
    angle for it is NaN): the probe says the quarter turn a player shows (45 had come back as
    45, the zero matrix as 128)."""
    for angle, shown in ((-60, 90), (-200, 180), (-20, 0)):
        video = write_video(tmp_path / f"turned{-angle}.mp4", [Shot(1.0)], audio=False,
                            rotation=angle)  # fmt: skip
        assert probe_video(video.path).rotation == shown, angle
    plain = write_video(tmp_path / "plain.mp4", [Shot(1.0)], audio=False).path.read_bytes()
    header = plain.find(b"tkhd")
    matrix = header + 4 + (40 if plain[header + 4] == 0 else 52)
    zeros = tmp_path / "zeros.mp4"
    zeros.write_bytes(plain[:matrix] + bytes(36) + plain[matrix + 36 :])
    assert probe_video(zeros).rotation == 0
