"""Video probing and one-pass, low-resolution decoding with PyAV.

Every service that looks at pictures goes through here, so that a video is opened, checked
against the limits and decoded in exactly one way. Frames are streamed, never collected:
memory stays flat whatever the video's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from services.errors import InvalidVideoError
from services.media.demux import MAX_STREAMS, beyond_limits, open_input
from services.media.files import check_readable_video
from services.media.sample_tables import oversized_table

# Demuxers that read single pictures rather than videos.
_IMAGE_FORMATS = {
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "bmp_pipe",
    "webp_pipe",
    "tiff_pipe",
    "gif_pipe",
    "psd_pipe",
    "svg_pipe",
    "pgm_pipe",
    "ppm_pipe",
    "qoi_pipe",
}
# How a still picture's file begins, for one FFmpeg takes by its name for an image sequence
# (image2, which may read other files, so not among the demuxers a caller's file may use):
# a JPEG saved at high quality had been "not in a format bgm reads" while a PNG was "a still
# image".
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*",
                     b"qoif")  # fmt: skip


def _a_still_picture(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(12)
    webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return webp or head.startswith(_IMAGE_SIGNATURES)


# Pixel formats whose planes can be subsampled directly (8-bit planar 4:2:0).
_PLANAR_420 = {"yuv420p", "yuvj420p"}


def _limited_to_full_range() -> np.ndarray:
    """Lookup table taking limited-range Y/Cr/Cb (16-235, 16-240) to full range (0-255)."""
    levels = np.arange(256, dtype=np.float32)
    luma = np.clip((levels - 16.0) * 255.0 / 219.0, 0, 255)
    chroma = np.clip((levels - 128.0) * 255.0 / 224.0 + 128.0, 0, 255)
    return np.stack([luma, chroma, chroma], axis=-1).round().astype(np.uint8).reshape(1, 256, 3)


_FULL_RANGE_LUT = _limited_to_full_range()


@dataclass(frozen=True)
class VideoLimits:
    """What the platform agrees to analyse."""

    max_duration_s: float = 7200.0
    max_width: int = 7680
    max_height: int = 4320
    max_fps: float = 240.0
    # Pixels decoded a second (width x height x frame rate): what a second of video costs to
    # read. 8K at 30 frames/s and 4K at 120 fit; 8K at 240, which took the tagger 4.45 s a
    # second of video, does not.
    max_pixels_per_s: float = 1e9
    # The smallest picture side the analysis can read (optical flow needs 12 pixels).
    min_side: int = 16

    def __post_init__(self) -> None:
        # A limit of NaN lets everything through, a negative one refuses every video (naming
        # the video, not the config).
        for name in ("max_duration_s", "max_width", "max_height", "max_fps", "max_pixels_per_s",
                     "min_side"):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value}")


MPEG_TS_WRAP = 1 << 33
# FFmpeg learns a file's streams from at most its first 5 MB (PROBE_BYTES), so a large file
# that is no video is refused promptly, however long a time they span (PROBE_SPAN_US, 115
# days, bounds nothing): a stream it meets no packet of there gets the container's start
# and, in Matroska, decode times guessed as if it had no B-frames. Its own limit of 5 s had
# made a Matroska file whose picture starts 6 s after its sound start its picture at 0 (the
# copy put it 6 s late, cut at the music's end, with 13 of 90 frames lost; one starting 20 s
# after had no picture left).
PROBE_BYTES = 5_000_000
PROBE_SPAN_US = 10**13
# A frame shown this much earlier than one before it: the video's clock jumps back.
CLOCK_BACK_S = 1.0
# Frame threads each hold a frame; bounded so a decoder holds at most this many frames of the
# largest size allowed, whatever the machine's core count.
DECODER_THREADS = 4
# The most video streams a file bgm reads may hold: to read its pictures FFmpeg opens a
# decoder for each stream and decodes a picture of each as it opens the file (a 1080p
# stream's some 6 MB), and a 0.4 MB file of 300 had cost 1.7 GB and 1.6 s at each open,
# which no cancel could stop. A camera's picture, its cover art or thumbnail, a 360
# camera's two lenses fit.
MAX_PICTURE_STREAMS = 4


@dataclass(frozen=True)
class VideoProbe:
    """What a video file says about itself before any frame is decoded."""

    path: Path
    container: str
    video_codec: str
    duration_s: float
    fps: float
    # Display size: already swapped for a 90/270 degree rotation.
    width: int
    height: int
    # Clockwise rotation, in degrees (0, 90, 180, 270), that displaying the video applies.
    rotation: int
    has_audio: bool
    frame_count_estimate: int


@dataclass(frozen=True)
class SmallFrame:
    """A decoded frame shrunk for analysis."""

    index: int
    time_s: float
    # Exact presentation time, for detectors that work in stream units.
    pts: int
    time_base: Fraction
    # How long it is shown, where the file says (a screen recording's last frame may be held
    # for seconds); None where it does not.
    duration_s: float | None
    # Small BGR image (uint8, H x W x 3), in the coded orientation.
    bgr: np.ndarray
    # Small grey image (uint8, H x W), the luma plane.
    grey: np.ndarray


# The least a decoder is allowed whatever the picture's size: MPEG-4 Part 2 asks for 53,760
# pixels for any picture under about 90x50 (a 64x36 one had been refused as corrupt).
MIN_DECODABLE_PIXELS = 256 * 256


def decodable_pixels(width: int, height: int) -> int:
    """The pixels a decoder may allocate for frames of this display size: codecs pad the
    coded size to whole macroblocks and some add edges (MPEG-4 Part 2 asks for over twice
    the picture's pixels), so four times the padded size, and MIN_DECODABLE_PIXELS at
    least; a stream that grows past the size its header gave is still refused long before it
    costs real memory."""
    return max(MIN_DECODABLE_PIXELS, 4 * (width + 64) * (height + 64))


def _open(path: Path, max_pixels: int) -> av.container.InputContainer:
    """The file opened for reading; no frame larger than `max_pixels` is ever decoded, not
    even the one FFmpeg decodes to learn a stream's format while opening."""
    check_readable_video(path)
    try:
        # Global options reach the decoders FFmpeg opens to probe the streams as well.
        options = {"probesize": str(PROBE_BYTES), "analyzeduration": str(PROBE_SPAN_US)}
        return open_input(str(path), options, max_pixels)
    except av.error.ArgumentError:
        if _a_still_picture(path):
            raise InvalidVideoError(
                "still_image", f"{path.name} is a still image, not a video"
            ) from None
        raise InvalidVideoError(
            "not_a_video",
            f"{path.name} is not in a format bgm reads: a video file that holds its own streams "
            "(MP4, MOV, MKV, WebM, AVI, MPEG-TS, ...); a playlist or list naming other files "
            "(HLS, DASH, concat) is refused",
        ) from None
    except av.error.MemoryError:
        raise InvalidVideoError("too_large", beyond_limits(path.name, "a video")) from None
    except av.error.FFmpegError as error:
        raise InvalidVideoError(
            "not_a_video", f"{path.name} is not a video FFmpeg can read ({error.strerror})"
        ) from None


def _nothing() -> None:
    """The heartbeat of a caller that does not cancel."""


def probe_video(
    path: str | Path,
    limits: VideoLimits | None = None,
    heartbeat: Callable[[], None] = _nothing,
) -> VideoProbe:
    """Open `path`, check it is a video within `limits`, and describe it. `heartbeat` is
    called while an MPEG-TS's packets are read for its length (it raises to cancel)."""
    limits = limits or VideoLimits()
    path = Path(path)
    check_readable_video(path)
    # Once, before FFmpeg first opens the file (every later open is of a probed file).
    oversized = oversized_table(path)
    if oversized:
        raise InvalidVideoError("corrupt", f"{path.name} cannot be what it says: {oversized}")
    with open_as_stated(path, limits) as container:
        return _probe(path, container, limits, heartbeat)


def open_as_stated(path: Path, limits: VideoLimits | None = None) -> av.container.InputContainer:
    """`path` opened with no picture decoded larger than its picture stream's
    (`picture_stream`), as the container and its parser state that stream's size with no
    picture decoded (up to the largest `limits` allow, and that where it states none):
    whatever other streams the file holds, FFmpeg decodes no larger picture of theirs as it
    opens it."""
    limits = limits or VideoLimits()
    with _open(path, 0) as container:
        streams = len(container.streams.video)
        if streams > MAX_PICTURE_STREAMS:
            read = "at least " if len(container.streams) >= MAX_STREAMS else ""
            raise InvalidVideoError(
                "too_large",
                f"{path.name} holds {read}{streams} video streams; bgm reads a file with at "
                f"most {MAX_PICTURE_STREAMS}",
            )
        pictures = _pictures(container)
        stated = pictures[0].codec_context if pictures else None
        size = (stated.width, stated.height) if stated is not None else (0, 0)
    largest = decodable_pixels(limits.max_width, limits.max_height)
    if min(size) > 0:
        largest = min(largest, decodable_pixels(*size))
    return _open(path, largest)


def picture_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video stream bgm reads (the first of `_pictures`). The probe refuses a file
    without one."""
    return _pictures(container)[0]


def picture_origin(
    stream: av.video.stream.VideoStream, first_keyframe: av.Packet, begun_mid_gop: bool
) -> int:
    """The time, in `stream`'s units, of its first frame shown, where its analysis and its
    music start: the stream's start (a B-frame stream's first decode time is earlier),
    whatever its clock said there (an MPEG-TS capture's may say ten hours); in a capture
    begun mid-GOP nothing decodes before its first keyframe, which starts it."""
    if begun_mid_gop and first_keyframe.pts is not None:
        return first_keyframe.pts
    if stream.start_time is not None:
        return stream.start_time
    time = first_keyframe.dts if first_keyframe.dts is not None else first_keyframe.pts
    assert time is not None
    return time


def first_shown_s(path: Path, heartbeat: Callable[[], None]) -> float | None:
    """The time on `path`'s clock, in seconds, of its picture's first frame shown
    (`picture_origin`); None for a file without a picture or a keyframe. `heartbeat` is
    called at every packet read."""
    with open_as_stated(path) as container:
        if not _pictures(container):
            return None
        stream = picture_stream(container)
        assert stream.time_base is not None
        begun_mid_gop = False
        for packet in container.demux(stream):
            heartbeat()
            if packet.pts is None and packet.dts is None:
                continue
            if packet.is_keyframe:
                return float(picture_origin(stream, packet, begun_mid_gop) * stream.time_base)
            begun_mid_gop = True
    return None


def _pictures(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """The file's video streams that are not a song's cover art (a picture stream of its
    own), best first: those marked default (a phone's or an editor's disabled thumbnail or
    proxy is not), then the largest picture, then in the file's order. The first had been
    read, whatever it was: a 96x54 one-frame thumbnail before a 3 s video had been scored as
    a 0.033 s video."""
    attached = av.stream.Disposition.attached_pic
    default = av.stream.Disposition.default
    pictures = [s for s in container.streams.video if not s.disposition & attached]

    def rank(stream: av.video.stream.VideoStream) -> tuple[bool, int]:
        codec = stream.codec_context
        area = codec.width * codec.height if codec is not None else 0
        return bool(stream.disposition & default), area

    return sorted(pictures, key=rank, reverse=True)


def _probe(
    path: Path,
    container: av.container.InputContainer,
    limits: VideoLimits,
    heartbeat: Callable[[], None],
) -> VideoProbe:
    format_name = container.format.name
    # A song's cover art is a picture stream of its own (FFmpeg states it at 90,000 frames/s).
    pictures = _pictures(container)
    if not pictures:
        if container.streams.audio:
            raise InvalidVideoError("audio_only", f"{path.name} has audio but no video stream")
        raise InvalidVideoError("not_a_video", f"{path.name} has no video stream")
    if set(format_name.split(",")) & _IMAGE_FORMATS:
        raise InvalidVideoError("still_image", f"{path.name} is a still image, not a video")
    stream = pictures[0]
    codec = stream.codec_context
    # PyAV gives no codec context when FFmpeg has no decoder for the stream's codec.
    if codec is None:
        raise InvalidVideoError(
            "undecodable_codec", f"{path.name}: FFmpeg has no decoder for its video codec"
        )
    coded_width, coded_height = codec.width, codec.height
    if coded_width <= 0 or coded_height <= 0:
        raise InvalidVideoError("corrupt", f"{path.name}: the video stream has no picture size")
    # Size, rate and length as the container states them, checked before any frame is
    # decoded (either orientation of the limit is allowed).
    if max(coded_width, coded_height) > max(limits.max_width, limits.max_height) or (
        min(coded_width, coded_height) > min(limits.max_width, limits.max_height)
    ):
        raise InvalidVideoError(
            "too_large",
            f"{path.name} is {coded_width}x{coded_height}; the limit is "
            f"{limits.max_width}x{limits.max_height}",
        )
    if min(coded_width, coded_height) < limits.min_side:
        raise InvalidVideoError(
            "too_small",
            f"{path.name} is {coded_width}x{coded_height}; its sides must be at least "
            f"{limits.min_side} pixels",
        )
    fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0.0)
    if fps > limits.max_fps:
        raise InvalidVideoError(
            "too_large", f"{path.name} runs at {fps:g} frames/s; the limit is {limits.max_fps:g}"
        )
    pixels_per_s = coded_width * coded_height * fps
    if pixels_per_s > limits.max_pixels_per_s:
        raise InvalidVideoError(
            "too_large",
            f"{path.name} is {coded_width}x{coded_height} at {fps:g} frames/s, "
            f"{pixels_per_s / 1e6:,.4g} million pixels a second; the limit is "
            f"{limits.max_pixels_per_s / 1e6:,.4g} million",
        )
    if format_name == "mpegts":
        # FFmpeg estimates an MPEG-TS's length from its first and last times, and a capture
        # that holds the clock's wrap comes out far too short (1 s for 3 s) or long.
        duration_s = _span(path, stream, fps, limits, heartbeat)
    else:
        duration_s = _duration(container, stream)
        if duration_s <= 0.0 and "matroska" in format_name:
            # A recording written live states no length (a browser's MediaRecorder WebM, an
            # OBS or FFmpeg capture to a pipe, one cut off): it had been refused.
            duration_s = _span(path, stream, fps, limits, heartbeat)
        elif duration_s > 0.0 and _runs_past(path, stream, duration_s, fps, heartbeat):
            # A container that states less than its picture holds (a Matroska Duration or an
            # MP4 track's length patched, a file cut and not rewritten) had had the rest of
            # its picture dropped from the output and its music cut short: it is measured,
            # and held to the limits, as a length it states is.
            duration_s = _span(path, stream, fps, limits, heartbeat)
    if duration_s <= 0.0 or not math.isfinite(duration_s):
        raise InvalidVideoError("zero_duration", f"{path.name} has no duration")
    if fps > 0.0 and duration_s * fps < 1.0:
        # A length of a nanosecond had gone on to the tagger, whose analysis (rounded to the
        # microsecond) had no length; a frame every 39 hours in 4 s had crashed it.
        raise InvalidVideoError(
            "zero_duration",
            f"{path.name} lasts {duration_s:.3g} s, less than one frame at its {fps:.3g} frames/s",
        )
    if duration_s > limits.max_duration_s:
        raise InvalidVideoError(
            "too_long",
            f"{path.name} lasts {duration_s:.1f} s; the limit is {limits.max_duration_s:.0f} s",
        )
    # The first frame shown may lie behind many that are not (an MP4's edit list can hide
    # thousands): the packets decoded to reach it count against the length's frame budget.
    budget = _FrameBudget(path, coded_width, coded_height, duration_s, limits, heartbeat)
    rotation = _frame_rotation_hint(container, stream, budget)
    width, height = (
        (coded_height, coded_width) if rotation in (90, 270) else (coded_width, coded_height)
    )
    frames = stream.frames or round(duration_s * fps)
    if frames == 1 or (fps <= 0.0 and duration_s < 1e-3):
        raise InvalidVideoError("still_image", f"{path.name} holds a single picture, not a video")
    return VideoProbe(
        path=path,
        container=format_name,
        video_codec=codec.codec.canonical_name,  # "av1", not its decoder, "libdav1d"
        duration_s=duration_s,
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        has_audio=bool(container.streams.audio),
        frame_count_estimate=frames,
    )


class _FrameBudget:
    """Called at every packet decoded: calls `heartbeat` (it raises to cancel), and refuses
    the video as too large once it has cost more frames (decoded, shown or not) than its
    length may at the highest frame rate `limits` allow at its size, plus a second's."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        duration_s: float,
        limits: VideoLimits,
        heartbeat: Callable[[], None],
    ):
        self.rate = min(limits.max_fps, limits.max_pixels_per_s / (width * height))
        self.most = math.ceil(self.rate * (duration_s + 1.0))
        self.message = (
            f"{path.name} holds over {self.most} frames in {duration_s:.1f} s, more than "
            f"{self.rate:.4g} frames/s; the limit is {self.rate:.4g} at {width}x{height} "
            "(max_fps, max_pixels_per_s)"
        )
        self.heartbeat = heartbeat
        self.packets = 0

    def __call__(self) -> None:
        self.heartbeat()
        if self.packets == self.most:
            raise InvalidVideoError("too_large", self.message)
        self.packets += 1


def _frame_rotation_hint(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    heartbeat: Callable[[], None],
) -> int:
    """Rotation from the first decodable frame's display matrix (PyAV exposes it there).
    `heartbeat` is called at every packet: a stream with no keyframe decodes none of them."""
    try:
        for packet in container.demux(stream):
            heartbeat()
            for frame in packet.decode():
                # A display matrix turns the picture by any angle: the nearest quarter turn
                # is what a player shows. One that is no turn at all (all zeros: FFmpeg's
                # angle is NaN, which PyAV hands over as the smallest int) shows it as coded.
                angle = -frame.rotation
                return round(angle / 90) * 90 % 360 if abs(angle) <= 360 else 0
    except av.error.FFmpegError as error:
        raise InvalidVideoError(
            "corrupt", f"the first video frame cannot be decoded ({error.strerror})"
        ) from None
    raise InvalidVideoError("corrupt", "the video stream holds no decodable frame")


def _span(
    path: Path,
    stream: av.video.stream.VideoStream,
    fps: float,
    limits: VideoLimits,
    heartbeat: Callable[[], None],
) -> float:
    """A video stream's length from the times of its packets (read, not decoded, about
    3.4 us each), an MPEG-TS's carried on past the clock's wraps, and its last frame's length
    (1 / `fps`). Reading stops, refusing the video, once the length passes the limit or the
    packets outnumber what the longest video may hold at the frame-rate limit (seconds of
    reading at the limits, so `heartbeat` is called at every packet)."""
    time_base = stream.time_base
    assert time_base is not None
    longest = math.ceil(limits.max_duration_s / time_base)
    most = math.ceil(limits.max_fps * (limits.max_duration_s + 1.0))
    first = last = previous = None
    with _open(path, 0) as container:  # (packets only)
        wraps = container.format.name == "mpegts"
        for count, packet in enumerate(container.demux(container.streams[stream.index])):
            heartbeat()
            if count == most:
                raise InvalidVideoError(
                    "too_large", f"{path.name} holds over {most} frames; the limit is {most} "
                    f"({limits.max_fps:g} frames/s for {limits.max_duration_s:.0f} s)")  # fmt: skip
            if packet.pts is None:
                continue
            previous = carried_on(packet.pts, previous) if wraps else packet.pts
            first = previous if first is None else min(first, previous)
            last = previous if last is None else max(last, previous)
            if last - first > longest:
                raise InvalidVideoError(
                    "too_long", f"{path.name} lasts over {limits.max_duration_s:.0f} s; the "
                    f"limit is {limits.max_duration_s:.0f} s")  # fmt: skip
    if first is None or last is None:
        return 0.0
    return float((last - first) * time_base) + (1.0 / fps if fps > 0 else 0.0)


def _runs_past(
    path: Path,
    stream: av.video.stream.VideoStream,
    stated_s: float,
    fps: float,
    heartbeat: Callable[[], None],
) -> bool:
    """Whether the video stream's packets run on past its stated length by over a frame and
    a half. Read from the keyframe before where that length ends (a seek), up to the first
    packet past it: an honest file costs the packets of one group of pictures; one whose
    header lies, as few as one past the end; one of a single keyframe, its packets up to the
    stated end (3.4 us each; `heartbeat` at every one). Where FFmpeg cannot seek, the stated
    length stands."""
    time_base = stream.time_base
    assert time_base is not None
    end = (stream.start_time or 0) + round(stated_s / time_base)
    slack = round(max(1.5 / fps if fps > 0 else 0.0, 0.05) / time_base)
    with _open(path, 0) as container:  # (packets only)
        video = container.streams[stream.index]
        try:
            container.seek(end, stream=video, backward=True)
        except av.error.FFmpegError:
            return False
        for packet in container.demux(video):
            heartbeat()
            # A packet an MP4's edit list hides is not shown: its time says nothing of the
            # length.
            if packet.pts is not None and not packet.is_discard and packet.pts > end + slack:
                return True
    return False


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
        if stream.start_time is not None and container.duration is None:
            return duration
        if duration > 0:
            return duration
    if container.duration is not None:
        stated = container.duration / av.time_base
        # Matroska states the whole file's length, its longest track's: a sound track 29 ms
        # past the last picture had made the music 29 ms longer than the video. Its video
        # track's own length (the DURATION tag FFmpeg and mkvmerge write) is the picture's,
        # never more than the file's.
        own = _tagged_duration(stream)
        if "matroska" in container.format.name:
            # Both say where the clock ends, not how long it ran: a file whose clock starts
            # 10 s in had stated 13 s for 3 s of picture.
            stated -= (container.start_time or 0) / av.time_base
            if own is not None and stream.start_time is not None and stream.time_base:
                own -= float(stream.start_time * stream.time_base)
        return min(stated, own) if own and own > 0 else stated
    return 0.0


def _tagged_duration(stream: av.video.stream.VideoStream) -> float | None:
    """A track's DURATION tag (HH:MM:SS.nnnnnnnnn) in seconds; None without a usable one."""
    hours, _, rest = stream.metadata.get("DURATION", "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    return duration if 0.0 < duration < math.inf else None


def analysis_stride(width: int, height: int, target_width: int) -> int:
    """Pixel step that shrinks the longer side to about `target_width` pixels.

    Even, when above 1, so that the half-resolution chroma planes subsample by plain slicing.
    """
    stride = max(1, round(max(width, height) / target_width))
    return stride + (stride % 2) if stride > 1 else 1


def analysis_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    """The width and height of the frames `iter_small_frames` yields: whole chroma rows and
    columns only, so all three planes agree in size."""
    stride = analysis_stride(width, height, target_width)
    if stride > 1:
        return width // stride, height // stride
    return width // 2 * 2, height // 2 * 2


def iter_small_frames(
    probe: VideoProbe,
    limits: VideoLimits,
    target_width: int = 96,
    heartbeat: Callable[[], None] = _nothing,
) -> Iterator[SmallFrame]:
    """Decode every frame once and yield it shrunk to about `target_width` pixels wide.

    For 8-bit 4:2:0 video (nearly all of it) the planes are subsampled in place, which is far
    cheaper than a scaled colour conversion; other pixel formats go through swscale. Deblocking
    is skipped: it changes nothing visible at this size and costs a tenth of the decode.

    A file that stops decoding part-way (truncated or corrupt) ends the stream at the last good
    frame; callers compare the decoded span with the probed duration.

    A file that holds more frames than its length allows under `limits` (a Matroska file can
    state 30 frames/s over 600, an MP4's edit list show 1 s of 5,000) is refused as too
    large once it has shown it: the work of reading a video stays what its stated length and
    size may cost. Frames are counted, and `heartbeat` called (it raises to cancel), as
    their packets are decoded, shown or not.
    """
    # No frame may be larger than the probe said (a stream can change size part-way).
    with _open(probe.path, decodable_pixels(probe.width, probe.height)) as container:
        stream = picture_stream(container)
        stream.thread_type = "AUTO"
        stream.thread_count = DECODER_THREADS
        stream.codec_context.options = {
            "skip_loop_filter": "all",
            "max_pixels": str(decodable_pixels(probe.width, probe.height)),
        }
        index = 0
        stride = small_w = small_h = 0
        first_size = (0, 0)
        latest_s = -math.inf
        budget = _FrameBudget(probe.path, probe.width, probe.height, probe.duration_s, limits,
                              heartbeat)  # fmt: skip
        try:
            for frame, pts in _shown(container, stream, budget):
                if not stride:
                    stride = analysis_stride(frame.width, frame.height, target_width)
                    small_w, small_h = analysis_size(frame.width, frame.height, target_width)
                    first_size = (frame.width, frame.height)
                time_base = frame.time_base or stream.time_base
                assert time_base is not None
                time_s = float(pts * time_base)
                if time_s < latest_s - CLOCK_BACK_S:
                    # (Two captures joined out of order: nothing after had a place in time.)
                    raise InvalidVideoError(
                        "corrupt",
                        f"{probe.path.name}: its clock jumps back {latest_s - time_s:.1f} s at "
                        f"{latest_s:.1f} s; bgm reads a video whose frames run forward",
                    )
                latest_s = max(latest_s, time_s)
                # A picture that changes size part-way (captures joined) is scaled to the
                # first's small size: the first's stride had made other shapes.
                same_size = (frame.width, frame.height) == first_size
                if frame.format.name in _PLANAR_420 and stride > 1 and same_size:
                    # Most video is limited range; yuvj formats and JPEG-range tags are full.
                    full_range = frame.format.name == "yuvj420p" or frame.color_range == 2
                    bgr, grey = _subsample_420(frame, stride, small_h, small_w, full_range)
                else:
                    bgr = frame.to_ndarray(width=small_w, height=small_h, format="bgr24")
                    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                yield SmallFrame(
                    index=index,
                    time_s=time_s,
                    pts=int(pts),
                    time_base=Fraction(time_base.numerator, time_base.denominator),
                    duration_s=float(frame.duration * time_base) if frame.duration else None,
                    bgr=bgr,
                    grey=grey,
                )
                index += 1
        except av.error.FFmpegError:
            # A damaged tail: what decoded so far stands; the caller reports the shortfall.
            return


def _shown(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    each_packet: Callable[[], None],
) -> Iterator[tuple[av.VideoFrame, int]]:
    """The stream's frames in the order shown (those with a time), each with its time in the
    stream's units, carried on past an MPEG-TS clock's wrap (`carried_on`). `each_packet` is
    called at every packet decoded, whatever it shows: an MP4's edit list can hide thousands
    of frames before the second it shows."""
    wraps = container.format.name == "mpegts"
    previous: int | None = None
    for packet in container.demux(stream):
        each_packet()
        for frame in packet.decode():
            if frame.pts is None:
                continue
            pts = carried_on(frame.pts, previous) if wraps else frame.pts
            previous = pts
            yield frame, pts


def carried_on(time: int, previous: int | None) -> int:
    """An MPEG-TS time (in its stream's units) carried on past the clock's wraps. MPEG-TS
    counts time in 33 bits, which wrap (every 26.5 hours of its clock), so a capture may hold
    the wrap; FFmpeg carries some times on itself (a frame whose packet came before the
    wrap), so each takes the count of wraps that puts it nearest the time before."""
    if previous is None:
        return time
    return time + round((previous - time) / MPEG_TS_WRAP) * MPEG_TS_WRAP


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A plane's bytes as a 2-D array (rows padded to line_size), without copying."""
    flat = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
    return flat.reshape(plane.height, plane.line_size)


def _subsample_420(
    frame: av.VideoFrame, stride: int, height: int, width: int, full_range: bool
) -> tuple[np.ndarray, np.ndarray]:
    y, u, v = (_plane_array(plane) for plane in frame.planes)
    half = stride // 2
    # OpenCV's YCrCb order is Y, Cr (V), Cb (U).
    ycrcb = np.dstack(
        [
            y[::stride, ::stride][:height, :width],
            v[::half, ::half][:height, :width],
            u[::half, ::half][:height, :width],
        ]
    )
    if not full_range:
        ycrcb = cv2.LUT(ycrcb, _FULL_RANGE_LUT)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR), np.ascontiguousarray(ycrcb[..., 0])


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded image (coded orientation) turned the way the video is displayed."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=-turns)) if turns else image


def frames_at(
    path: Path,
    rotation: int,
    times_s: list[float],
    long_side: int,
    max_pixels: int,
    heartbeat: Callable[[], None] = _nothing,
) -> list[np.ndarray]:
    """RGB frames (uint8, H x W x 3, upright for the display `rotation`) shown at `times_s`
    (seconds from the first frame, ascending), the longer side scaled to `long_side` pixels.
    No frame larger than `max_pixels` is decoded; `heartbeat` is called at every packet that
    is (it raises to cancel)."""
    frames: list[np.ndarray] = []
    with _open(path, max_pixels) as container:
        stream = picture_stream(container)
        stream.thread_type = "AUTO"
        stream.thread_count = DECODER_THREADS
        stream.codec_context.options = {"max_pixels": str(max_pixels)}
        time_base = stream.time_base
        assert time_base is not None
        start = stream.start_time or 0
        targets = [start + round(time_s / time_base) for time_s in times_s]
        chosen = _shown_at(container, stream, targets, heartbeat)
        for time_s, frame in zip(times_s, chosen, strict=True):
            if frame is None:
                message = f"{path.name}: no frame decodes at {time_s:.2f} s"
                raise InvalidVideoError("corrupt", message)
            scale = long_side / max(frame.width, frame.height)
            width = max(2, round(frame.width * scale / 2) * 2)
            height = max(2, round(frame.height * scale / 2) * 2)
            rgb = frame.to_ndarray(width=width, height=height, format="rgb24")
            frames.append(upright(rgb, rotation))
    return frames


def _shown_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    targets: list[int],
    heartbeat: Callable[[], None],
) -> list[av.VideoFrame | None]:
    """The frame shown at each target time (ascending, in the stream's units): the first at
    or past it, or the last that decodes (a damaged or short tail); None where none does.

    A few frames of a long video should cost a few keyframe intervals of decoding, not the
    video, so it seeks to a target, unless the target lies within `reach` of the frames
    already decoded: then it decodes on. `reach` is how far back from its target a seek has
    landed, when one landed on frames already decoded (a keyframe interval; in a file with
    one keyframe, all of it, where seeking to every target had decoded from the start each
    time). An MPEG-TS has no index to seek by (a seek lands between keyframes, where nothing
    decodes) and its clock may wrap, so it is read in order from its start."""
    seeking = container.format.name != "mpegts"
    reach = 0
    chosen: list[av.VideoFrame | None] = []
    decoding: Iterator[tuple[av.VideoFrame, int]] | None = None
    last: av.VideoFrame | None = None
    position: int | None = None
    try:
        for target in targets:
            if position is not None and position >= target:
                chosen.append(last)
                continue
            seek = seeking and (position is None or target - position > reach)
            if seek:
                container.seek(target, stream=stream, backward=True)
            if seek or decoding is None:
                decoding = _shown(container, stream, heartbeat)
            landing = seek
            for frame, pts in decoding:
                if landing and position is not None and pts <= position:
                    reach = max(reach, target - pts)
                landing = False
                last, position = frame, pts
                if pts >= target:
                    break
            chosen.append(last)
    except av.error.FFmpegError:
        pass  # a damaged tail: the last frame that decoded stands in
    return chosen + [last] * (len(targets) - len(chosen))
