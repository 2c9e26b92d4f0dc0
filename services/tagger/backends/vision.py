"""The `vision` tagger backend: classic video analysis on the CPU, no model weights.

One pass over the video, decoded once at low resolution:
- cuts: PySceneDetect's AdaptiveDetector (hard cuts, robust to camera motion) and
  ThresholdDetector (fades through black), fed the small frames directly;
- motion: Farneback optical flow between consecutive small grey frames, sampled at a fixed
  rate, as pan speed in frame widths per second, mapped to 0..1 by 1 - exp(-speed / scale);
- look: brightness, saturation, warmth and contrast of the small frames at the same rate.
Then segments (short shots merged), features, and tags through the shared vocabulary rules.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import threading
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode, ThresholdDetector
from scenedetect.common import Timecode

from services.config import TaggerConfig, VisionConfig
from services.domain import Cut, Look, MotionCurve, Segment, VideoAnalysis
from services.errors import InvalidVideoError
from services.media.video import (
    SmallFrame,
    VideoLimits,
    VideoProbe,
    analysis_size,
    iter_small_frames,
    probe_video,
    upright,
)
from services.progress import Heartbeat, ProgressCallback
from services.spans import merged_spans
from services.tagger.backend import AnalysisRequest, BackendInfo
from services.tagger.hearing import Listener
from services.tagger.tagging import choose_tags, describe_music, segment_moods
from services.tagger.text_hints import PromptMatch, TextHintModel
from services.vocabulary import Features, Vocabulary, load_vocabulary

VERSION = "1.0"
# Cuts per minute at which `pace` reaches 1.
PACE_FULL_CUTS_PER_MINUTE = 30.0
# Fade cuts: frames this much darker than the black level are kept to place them; the black
# frame is looked for this far either side of the detector's time; frames within this of the
# darkest count as black.
DARK_FACTOR = 2.0
FADE_SEARCH_S = 0.5
BLACK_TOLERANCE = 0.5
# The narrowest analysis picture measured: a sliver (a 16x2000 video's is 0 pixels wide) is
# refused.
FLOW_MIN_SIDE = 12
# The fewest pixels a side OpenCV's DIS optical flow is given: on a narrower picture it builds
# its pyramid for the longer side, deeper than the shorter one goes, and the process dies (a
# segmentation fault: a 32:9 video's 96x27 picture, or 80x22, took the tagger down). A
# narrower picture is padded with its own edge, and the flow measured on the picture alone.
DIS_MIN_SIDE = 32


@dataclass
class _Tick:
    """One motion/look sample: the frame pair it was measured on and what was seen."""

    time_s: float
    pair_start_s: float
    speed: float
    look: tuple[float, float, float, float]


def frame_look(bgr: np.ndarray) -> tuple[float, float, float, float]:
    """(brightness, saturation, warmth, contrast) of a small BGR frame, each 0..1."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    blue, _green, red = cv2.split(bgr.astype(np.float32))
    brightness = float(grey.mean()) / 255.0
    saturation = float(hsv[..., 1].mean()) / 255.0
    # Red minus blue, scaled so strongly tinted footage nears 0 or 1.
    warmth = float(np.clip(0.5 + float((red - blue).mean()) / 160.0, 0.0, 1.0))
    contrast = float(np.clip(float(grey.std()) / 64.0, 0.0, 1.0))
    return brightness, saturation, warmth, contrast


def _ignore(fraction: float) -> None:
    """Progress nobody asked for."""


class VisionTagger:
    """Analyses a video by its pictures alone; text hints through the packaged MiniLM."""

    def __init__(self, config: TaggerConfig, vocabulary: Vocabulary | None = None):
        self.config = config
        self.vocabulary = vocabulary or load_vocabulary()
        self._text_model: TextHintModel | None = None
        # Prompts asked at once, while it loads (seconds), load it once.
        self._text_model_lock = threading.Lock()
        self.listener = Listener(config.hearing) if config.hearing.enabled else None

    def describe(self) -> BackendInfo:
        return BackendInfo(name="vision", version=VERSION, vocabulary=self.vocabulary)

    def warm_up(self) -> None:
        if self.listener is not None:
            self.listener.load()
        # A server's first prompt had waited for it (4-12 s), holding a tagger slot.
        self.text_model()

    def text_model(self) -> TextHintModel:
        with self._text_model_lock:
            if self._text_model is None:
                self._text_model = TextHintModel(self.vocabulary, self.config.text_model_path)
            return self._text_model

    def analyze(
        self, request: AnalysisRequest, progress: ProgressCallback | None = None
    ) -> VideoAnalysis:
        analysis, _ = self.analyze_picture(request, progress)
        if progress:
            progress(1.0)
        return analysis

    def analyze_picture(
        self, request: AnalysisRequest, progress: ProgressCallback | None = None
    ) -> tuple[VideoAnalysis, PictureBasis]:
        """The analysis and the picture features its tags rest on (another backend can
        choose tags again from them)."""
        probe = probe_video(request.video_path, self.config.limits,
                            Heartbeat(progress or _ignore))  # fmt: skip
        scan = _scan(probe, self.config.vision, self.config.limits, progress)
        prompt_matches = self.text_model().match(request.prompt) if request.prompt else []
        analysis, basis = _summarise(probe, scan, self.config.vision, self.vocabulary,
                                     prompt_matches)  # fmt: skip
        if self.listener is not None and probe.has_audio and request.listen:
            hearing = self.listener.hear(request.video_path, analysis.duration_s,
                                         Heartbeat(progress or _ignore, 0.99))  # fmt: skip
            analysis = dataclasses.replace(analysis, speech=hearing.speech,
                                           loudness=hearing.loudness)  # fmt: skip
        return analysis, basis


@dataclass(frozen=True)
class PictureBasis:
    """The features an analysis's tags were chosen from."""

    features: Features
    # Mean motion energy of the first and last third.
    energy_arc: tuple[float, float]
    prompt_matches: list[PromptMatch]


@dataclass
class _Scan:
    duration_s: float
    hard_cuts: list[float]
    fade_cuts: list[float]
    ticks: list[_Tick]
    thumbnails: list[tuple[float, bytes]]
    warnings: list[str]


def _timecode(frame: SmallFrame, fps: Fraction) -> FrameTimecode:
    return FrameTimecode(Timecode(frame.pts, frame.time_base), fps)


def _scan(
    probe: VideoProbe,
    config: VisionConfig,
    limits: VideoLimits,
    progress: ProgressCallback | None,
) -> _Scan:
    fps = Fraction(probe.fps).limit_denominator(1001) if probe.fps > 0 else Fraction(30)
    # (A frame every half hour or less often comes out as 0: a division by it had crashed.)
    fps = max(fps, Fraction(1, 1001))
    min_shot_frames = max(1, round(config.min_shot_s * float(fps)))
    adaptive = AdaptiveDetector(
        adaptive_threshold=config.cut_adaptive_threshold,
        min_content_val=config.cut_min_content,
        min_scene_len=min_shot_frames,
    )
    fades = ThresholdDetector(threshold=config.fade_black_level, min_scene_len=min_shot_frames)
    hard: list[FrameTimecode] = []
    faded: list[FrameTimecode] = []
    # (time, mean level) of the frames near black, where fade cuts are placed afterwards.
    dark: list[tuple[float, float]] = []
    ticks: list[_Tick] = []
    thumbnails: list[tuple[float, bytes]] = []
    tick_period = 1.0 / config.motion_hz
    next_tick = 0.0
    next_thumbnail = 0.0
    heartbeat = Heartbeat(progress or (lambda fraction: None))
    # A picture far longer than it is wide shrinks to a sliver (16x2000 to nothing, 1920x200
    # to 10 pixels high), which had ended in an OpenCV traceback or a segmentation fault.
    if min(analysis_size(probe.width, probe.height, config.analysis_width)) < FLOW_MIN_SIDE:
        raise InvalidVideoError(
            "too_small",
            f"{probe.path.name} is {probe.width}x{probe.height}: too narrow for its length to "
            f"analyse (shrunk to about {config.analysis_width} pixels long, it must stay "
            f"{FLOW_MIN_SIDE} wide)",
        )
    # DIS at its fastest preset: a tenth of Farneback's cost, and pan speeds still rank right.
    flow_method = cv2.DISOpticalFlow_create(  # type: ignore[attr-defined]
        cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
    )
    last: SmallFrame | None = None
    start_time: float | None = None
    frame_period = 1.0 / float(fps)
    for frame in iter_small_frames(probe, limits, config.analysis_width, heartbeat):
        if start_time is None:
            start_time = frame.time_s
        # Times are from the first frame, whatever the container's start offset.
        time_s = frame.time_s - start_time
        # The analysis covers the length the file states (the music's length): frames past it
        # (a container that states 2 s over an hour of frames) are never read.
        if time_s >= probe.duration_s:
            break
        timecode = _timecode(frame, fps)
        hard.extend(adaptive.process_frame(timecode, frame.bgr))
        faded.extend(fades.process_frame(timecode, frame.bgr))
        level = float(frame.bgr.mean())
        if level <= DARK_FACTOR * config.fade_black_level:
            dark.append((time_s, level))
        if time_s + 1e-6 >= next_tick:
            # Motion at this tick: flow from the frame just before. Consecutive frames keep
            # even fast pans within the flow's reach.
            speed = 0.0
            pair_start = time_s
            if last is not None:
                pair_start = last.time_s - start_time
                speed = _pan_speed(
                    flow_method, last.grey, frame.grey, max(time_s - pair_start, 1e-3)
                )
            look = frame_look(frame.bgr)
            while next_tick <= time_s + 1e-6:
                ticks.append(_Tick(next_tick, pair_start, speed, look))
                next_tick += tick_period
        if time_s >= next_thumbnail:
            thumbnails.append((time_s, _jpeg(frame.bgr, probe.rotation)))
            next_thumbnail += config.thumbnail_every_s
        heartbeat.fraction = min(0.99, time_s / probe.duration_s)
        heartbeat()
        last = frame
    if last is None or start_time is None:
        raise InvalidVideoError("corrupt", f"{probe.path.name}: no video frame could be decoded")
    end_timecode = _timecode(last, fps)
    hard.extend(adaptive.post_process(end_timecode))
    faded.extend(fades.post_process(end_timecode))
    # The last frame lasts as long as the file says (a held frame: 6 s had been taken for
    # the average frame's 0.12 s, and the music cut short under a "truncated" warning).
    decoded_s = last.time_s - start_time + (last.duration_s or frame_period)
    warnings = []
    duration_s = probe.duration_s
    if decoded_s < probe.duration_s - max(0.5, 2 * frame_period):
        warnings.append(
            f"the picture ends at {decoded_s:.2f} s of the {probe.duration_s:.2f} s the file "
            "states (it is truncated or damaged, or its sound runs longer); the analysis "
            "covers the picture"
        )
        duration_s = decoded_s
    # A tick at or past the end describes nothing; the curve covers [0, duration).
    ticks = [tick for tick in ticks if tick.time_s < duration_s]
    dark_times = [time_s for time_s, _ in dark]
    fade_cuts = [_darkest(tc.seconds - start_time, dark, dark_times, frame_period) for tc in faded]
    return _Scan(
        duration_s=duration_s,
        hard_cuts=[tc.seconds - start_time for tc in hard],
        fade_cuts=fade_cuts,
        ticks=ticks,
        thumbnails=thumbnails,
        warnings=warnings,
    )


def _darkest(
    time_s: float, dark: list[tuple[float, float]], dark_times: list[float], frame_period: float
) -> float:
    """A fade cut at its black frame: the scene detector places it between the frames where
    the level crosses its threshold, a frame or two off when the two shots differ in
    brightness. Where black holds for several frames, the frame after the last of them,
    however long it holds: the new shot starts there (the detector puts a held black's cut in
    its middle: 3 s of black had had a cut 2 s in, and the music a hit on nothing). `dark`
    (time, level) is in time order, `dark_times` its times: the frames near the cut are found
    by bisection (a scan of every dark frame per fade had cost a flickering two-hour video
    about two uncancellable minutes), and a black run is followed once, by the one fade that
    ends it."""
    start = bisect.bisect_left(dark_times, time_s - FADE_SEARCH_S)
    stop = bisect.bisect_right(dark_times, time_s + FADE_SEARCH_S)
    if start == stop:
        return time_s
    darkest = min(range(start, stop), key=lambda i: dark[i][1])
    floor = dark[darkest][1] + BLACK_TOLERANCE

    def black(i: int, neighbour: int) -> bool:
        return (0 <= i < len(dark) and dark[i][1] <= floor
                and abs(dark[i][0] - dark[neighbour][0]) < 1.5 * frame_period)  # fmt: skip

    first = last = darkest
    while black(first - 1, first):
        first -= 1
    while black(last + 1, last):
        last += 1
    # Black held for frames ends where the new shot's first frame shows (the cut had been a
    # frame before it); a single black frame is the middle of its fade.
    return dark[last][0] + (frame_period if last > first else 0.0)


def _pan_speed(
    flow_method: cv2.DISOpticalFlow, before: np.ndarray, after: np.ndarray, seconds: float
) -> float:
    """Mean optical-flow magnitude between two small grey frames, in frame widths per second."""
    height, width = before.shape
    below, right = max(0, DIS_MIN_SIDE - height), max(0, DIS_MIN_SIDE - width)
    if below or right:
        before, after = (cv2.copyMakeBorder(frame, 0, below, 0, right, cv2.BORDER_REPLICATE)
                         for frame in (before, after))  # fmt: skip
    flow = flow_method.calc(before, after, None)[:height, :width]  # type: ignore[call-overload]
    magnitude = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
    return float(magnitude.mean()) / width / seconds


def _jpeg(bgr: np.ndarray, rotation: int) -> bytes:
    picture = np.ascontiguousarray(upright(bgr, rotation))
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return encoded.tobytes() if ok else b""


def _merge_cuts(scan: _Scan, min_gap_s: float) -> list[tuple[float, str]]:
    """Hard and fade cuts in time order; a fade wins over a hard cut it overlaps."""
    cuts = [(t, "fade") for t in scan.fade_cuts] + [(t, "hard") for t in scan.hard_cuts]
    cuts.sort(key=lambda cut: (cut[0], cut[1] != "fade"))
    merged: list[tuple[float, str]] = []
    for time_s, kind in cuts:
        if time_s <= min_gap_s or time_s >= scan.duration_s - min_gap_s:
            continue
        if merged and time_s - merged[-1][0] < min_gap_s:
            if kind == "fade" and merged[-1][1] == "hard":
                merged[-1] = (time_s, kind)
            continue
        merged.append((time_s, kind))
    return merged


def _motion_curve(ticks: list[_Tick], cut_times: list[float], scale: float) -> np.ndarray:
    """Energy per tick; samples measured across a cut are replaced by their neighbours'."""
    energy = np.array([1.0 - math.exp(-tick.speed / scale) for tick in ticks])
    # A sample is measured across a cut when the first cut after its pair's start comes no
    # later than the sample itself (cut_times are sorted).
    cuts = np.asarray(cut_times, dtype=float)
    pair_starts = np.array([tick.pair_start_s for tick in ticks])
    times = np.array([tick.time_s for tick in ticks])
    following = np.searchsorted(cuts, pair_starts, side="right")
    crossed = np.zeros(len(ticks), dtype=bool)
    inside = following < len(cuts)
    crossed[inside] = cuts[following[inside]] <= times[inside] + 1e-6
    valid = ~crossed
    valid[0] = len(ticks) == 1
    if valid.any() and not valid.all():
        index = np.arange(len(ticks))
        energy[~valid] = np.interp(index[~valid], index[valid], energy[valid])
    elif not valid.any():
        energy[:] = 0.0
    return energy


def _segment_bounds(
    cut_times: list[float], duration_s: float, energy: np.ndarray, hz: float, min_segment_s: float
) -> list[tuple[float, float]]:
    """Stretches between cuts, each shorter than `min_segment_s` merged into the neighbour
    whose energy is closest, the shortest first (the leftmost of equals; spans.merged_spans)."""

    def mean_energy(segment: tuple[float, float]) -> float:
        lo, hi = int(segment[0] * hz), max(int(segment[0] * hz) + 1, int(segment[1] * hz))
        part = energy[lo:hi]
        return float(part.mean()) if part.size else 0.0

    def closest(span: tuple[float, float], neighbours: list[tuple[float, float]]) -> int:
        own = mean_energy(span)
        return min(range(len(neighbours)), key=lambda k: abs(mean_energy(neighbours[k]) - own))

    return merged_spans([0.0, *cut_times, duration_s], min_segment_s, closest)


@dataclass(frozen=True)
class _LookTable:
    """The ticks' looks as arrays, so a stretch's mean is a slice, not a scan of every tick."""

    times: np.ndarray
    looks: np.ndarray

    @classmethod
    def of(cls, ticks: list[_Tick]) -> _LookTable:
        return cls(np.array([t.time_s for t in ticks]), np.array([t.look for t in ticks]))

    def mean(self, start_s: float, end_s: float) -> Look:
        """Mean look of the ticks in [start_s, end_s); the nearest tick's if there are none."""
        lo = int(np.searchsorted(self.times, start_s, side="left"))
        hi = int(np.searchsorted(self.times, end_s, side="left"))
        if hi > lo:
            mean = self.looks[lo:hi].mean(axis=0)
        else:
            mean = self.looks[int(np.argmin(np.abs(self.times - start_s)))]
        return Look(*(round(float(v), 4) for v in mean))


def _look_distance(a: Look, b: Look) -> float:
    return (
        abs(a.brightness - b.brightness) * 2.0
        + abs(a.saturation - b.saturation)
        + abs(a.warmth - b.warmth) * 2.0
        + abs(a.contrast - b.contrast)
    )


def _summarise(
    probe: VideoProbe,
    scan: _Scan,
    config: VisionConfig,
    vocabulary: Vocabulary,
    prompt_matches: list[PromptMatch],
) -> tuple[VideoAnalysis, PictureBasis]:
    hz = config.motion_hz
    cut_list = _merge_cuts(scan, config.min_shot_s)
    cut_times = [t for t, _ in cut_list]
    energy = _motion_curve(scan.ticks, cut_times, config.motion_scale)
    looks = _LookTable.of(scan.ticks)
    duration_s = scan.duration_s
    pace = min(1.0, len(cut_times) / max(duration_s / 60.0, 1e-6) / PACE_FULL_CUTS_PER_MINUTE)
    # Variation: spread of the energy curve smoothed over one second.
    window = max(1, round(hz))
    smoothed = (
        np.convolve(energy, np.ones(window) / window, mode="valid")
        if (energy.size >= window)
        else energy
    )
    variation = float(np.clip(3.0 * smoothed.std(), 0.0, 1.0)) if smoothed.size else 0.0

    cuts = []
    for time_s, kind in cut_list:
        before = looks.mean(max(0.0, time_s - 1.0), time_s)
        after = looks.mean(time_s, min(duration_s, time_s + 1.0))
        lo, hi = int(time_s * hz), int(time_s * hz)
        energy_jump = abs(
            float(energy[max(0, lo - window) : lo].mean() if lo > 0 else 0.0)
            - float(energy[hi : hi + window].mean() if hi < energy.size else 0.0)
        )
        strength = float(
            np.clip(0.3 + 0.35 * (_look_distance(before, after) + energy_jump), 0.0, 1.0)
        )
        cuts.append(Cut(round(time_s, 6), kind, round(strength, 3)))  # type: ignore[arg-type]

    segments = []
    for start_s, end_s in _segment_bounds(cut_times, duration_s, energy, hz, config.min_segment_s):
        lo, hi = int(start_s * hz), max(int(start_s * hz) + 1, math.ceil(end_s * hz))
        segment_energy = float(energy[lo:hi].mean()) if energy[lo:hi].size else 0.0
        look = looks.mean(start_s, end_s)
        features = Features.from_look(look, segment_energy, pace, variation)
        middle = (start_s + end_s) / 2.0
        thumbnail = (
            min(scan.thumbnails, key=lambda item: abs(item[0] - middle))[1]
            if (scan.thumbnails)
            else b""
        )
        segments.append(
            Segment(
                start_s=round(start_s, 6),
                end_s=round(end_s, 6),
                energy=round(segment_energy, 4),
                look=look,
                moods=segment_moods(vocabulary, features),
                thumbnail_jpeg=thumbnail,
            )
        )

    overall_look = looks.mean(0.0, duration_s)
    overall_energy = float(energy.mean()) if energy.size else 0.0
    features = Features.from_look(overall_look, overall_energy, pace, variation)
    tags = choose_tags(vocabulary, features, prompt_matches)
    third = max(1, energy.size // 3)
    arc = (
        (float(energy[:third].mean()), float(energy[-third:].mean())) if energy.size else (0.0, 0.0)
    )
    analysis = VideoAnalysis(
        duration_s=round(duration_s, 6),
        fps=round(probe.fps, 3),
        width=probe.width,
        height=probe.height,
        rotation=probe.rotation,
        has_audio=probe.has_audio,
        cuts=cuts,
        motion=MotionCurve(hz=hz, values=[round(float(v), 4) for v in energy]),
        look=overall_look,
        segments=segments,
        tags=tags,
        description=describe_music(tags, arc),
        backend="vision",
        warnings=scan.warnings,
    )
    return analysis, PictureBasis(features, arc, prompt_matches)
