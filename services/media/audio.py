"""Audio I/O with PyAV: encode files, mux music into a video (stream copy), decode a track.

Audio arrays are float32, shape (samples, 2), in -1..1.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from services.errors import InvalidInputError
from services.media.demux import beyond_limits, open_input
from services.media.video import (
    MPEG_TS_WRAP,
    VideoProbe,
    carried_on,
    first_shown_s,
    open_as_stated,
    picture_origin,
    picture_stream,
)

# Output extension -> (container format, audio codec, sample format).
log = logging.getLogger("bgm")

AUDIO_FORMATS = {
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".ogg": ("ogg", "libopus", "flt"),
}
# Video containers we mux into, and the audio codec each gets.
VIDEO_FORMATS = {
    ".mp4": ("mp4", "aac"),
    ".mov": ("mov", "aac"),
    ".mkv": ("matroska", "libopus"),
    ".webm": ("webm", "libopus"),
}
# Opus encodes at 48 kHz only.
OPUS_RATE = 48000
# What the QuickTime muxers (.mp4, .mov) are told: the index (moov) before the media, so a
# player or a browser starts while the file downloads (it had come last, and a browser had to
# fetch a file's end, or all of it, first), and a tag of any name kept as the source named it
# (a phone's make, model and place, com.apple.quicktime.*, which the default drops). Moving
# the index reads and writes the file once more as it closes: 0.3 s a GB on this machine.
QUICKTIME_OPTIONS = {"movflags": "+faststart+use_metadata_tags"}
MUXER_OPTIONS = {"mp4": QUICKTIME_OPTIONS, "mov": QUICKTIME_OPTIONS}
# Tags of the source the copy does not carry: those each muxer writes for itself (brands, its
# own name) and measures of the source's length and size (mkvmerge's track statistics),
# which a copy cut where the music ends no longer has.
NOT_CARRIED_TAGS = frozenset(
    {"major_brand", "minor_version", "compatible_brands", "encoder", "duration", "bps",
     "number_of_frames", "number_of_bytes"}
)  # fmt: skip


def output_kind(path: Path) -> str:
    """ "audio" or "video" by the file's extension; refuses extensions it cannot write."""
    suffix = path.suffix.lower()
    if suffix in AUDIO_FORMATS:
        return "audio"
    if suffix in VIDEO_FORMATS:
        return "video"
    valid = ", ".join([*AUDIO_FORMATS, *VIDEO_FORMATS])
    raise InvalidInputError(f"cannot write {path.name}: unknown extension; valid: {valid}")


def check_stream_copy(probe: VideoProbe, path: Path) -> None:
    """Refuses a video whose stream the container of `path` cannot carry by stream copy,
    naming the containers that can. FFmpeg's muxers are asked, as mux_into_video will ask
    them: a hand-kept list of codecs had let FLV, H.263 and WMV streams into .mkv and ProRes
    into .mp4, to fail once the music was made."""
    suffix = path.suffix.lower()
    if _carries(probe.path, suffix):
        return
    others = [other for other in VIDEO_FORMATS if other != suffix and _carries(probe.path, other)]
    advice = (f"use {' or '.join(others)}" if others else
              "no video container written here can carry it; ask for an audio format "
              f"({', '.join(AUDIO_FORMATS)})")  # fmt: skip
    raise InvalidInputError(
        f"cannot copy a {probe.video_codec} video stream into {suffix}; {advice}"
    )


def _carries(video: Path, suffix: str) -> bool:
    """Whether FFmpeg's muxer for `suffix` takes the video stream of `video` by copy: the
    stream added from it and the header written, in memory (some refuse at the stream, as
    Matroska an FLV one, some only at the header, as MOV a VP9 one)."""
    with open_as_stated(video) as source:
        return _takes(picture_stream(source), VIDEO_FORMATS[suffix][0], None)


def _takes(video_in: av.video.stream.VideoStream, format_name: str, tag: str | None) -> bool:
    """Whether FFmpeg's muxer `format_name` takes a copy of `video_in` (tagged `tag`): the
    stream added and the header written, in memory."""
    target = av.open(io.BytesIO(), "w", format=format_name)
    try:
        _copy_stream(target, video_in, tag)
        target.start_encoding()
    except (ValueError, av.error.FFmpegError):
        return False
    finally:
        # A trial in memory, discarded: closing one refused at its header fails again.
        with contextlib.suppress(ValueError, av.error.FFmpegError):
            target.close()
    return True


def _copy_stream(
    target: Any, video_in: av.video.stream.VideoStream, tag: str | None
) -> av.video.stream.VideoStream:
    """A stream of `target` that takes `video_in`'s packets as they are, at its own frame
    rate and, given `tag`, under that codec tag."""
    # The stream's own codec, as its decoder names it: a new one by that name is an encoder,
    # and AV1's decoder (libdav1d) names none, so an AV1 video had gone into no container.
    video_out = target.add_stream_from_template(video_in, opaque=True)
    # The template's rate is its decoder's, the tick of the codec's clock: Matroska had
    # stated a 23.976 video at 24,000 frames/s (its frame duration), and bgm refused its own
    # output.
    if video_in.average_rate:
        video_out.codec_context.framerate = video_in.average_rate
    if tag is not None:
        video_out.codec_context.codec_tag = tag
    return video_out


def _kept_tag(video_in: av.video.stream.VideoStream, format_name: str) -> str | None:
    """The source's codec tag where the target's muxer takes it, else None (its default):
    an iPhone's HEVC is tagged hvc1, which Apple's players need and the muxer's default
    (hev1) is not, and each ProRes profile has its tag (all had become 422 HQ's)."""
    tag = video_in.codec_context.codec_tag
    if not tag.strip("\x00") or not _takes(video_in, format_name, tag):
        return None
    return tag


def _carried(tags: dict[str, str]) -> dict[str, str]:
    """The source's tags the copy keeps (as ffmpeg's stream copy keeps them): when and where
    it was shot, with what, its title and language; not `NOT_CARRIED_TAGS`."""
    return {name: value for name, value in tags.items()
            if name.lower() not in NOT_CARRIED_TAGS
            and not name.lower().startswith("_statistics")}  # fmt: skip


def _nothing() -> None:
    pass


# Audio the services decode: frames at rates outside these are refused (a 1 Hz track
# became 48,000 samples a sample, gigabytes from a few kilobytes), and at most this many
# frames a second of sound (Opus's shortest are 2.5 ms; frames of one sample had cost 22 us
# each, thousands of seconds for an upload's worth).
AUDIO_RATES = (4000, 768000)
MAX_AUDIO_FRAMES_PER_S = 1000

# Longer audio is resampled a block at a time (seconds), hearing a cancel between blocks.
RESAMPLE_BLOCK_S = 30.0


def resample(
    audio: np.ndarray,
    rate: int,
    new_rate: int,
    samples: int,
    heartbeat: Callable[[], None] = _nothing,
) -> np.ndarray:
    """Polyphase resampling to `new_rate`, trimmed or padded to exactly `samples`. Past
    RESAMPLE_BLOCK_S it goes a block at a time (each with enough of its neighbours for the
    filter), calling `heartbeat` before each (it raises to cancel): two hours had been one
    uncancellable call of about 3 s."""
    if rate != new_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(new_rate, rate)
        up, down = ratio.numerator, ratio.denominator
        # Blocks and context in whole multiples of `down` input samples, so that each
        # block's output starts on an output sample; the context covers the filter's half
        # length (resample_poly's: 10 x max(up, down) samples at the upsampled rate).
        step = down * max(1, round(RESAMPLE_BLOCK_S * rate / down))
        context = down * math.ceil((10 * max(up, down) / up + 2) / down)
        if len(audio) <= step:
            audio = resample_poly(audio, up, down, axis=0)
        else:
            blocks = []
            for start in range(0, len(audio), step):
                heartbeat()
                first = max(0, start - context)
                block = resample_poly(audio[first : start + step + context], up, down, axis=0)
                skip = (start - first) * up // down
                blocks.append(
                    block[skip : skip + math.ceil(min(step, len(audio) - start) * up / down)]
                )
            audio = np.concatenate(blocks)
    return _exact(audio.astype(np.float32), samples)


def fade_out(audio: np.ndarray, samples: int) -> None:
    """In place: the last `samples` (at most all of them) fall linearly to silence."""
    length = min(len(audio), samples)
    if length > 0:
        audio[-length:] *= np.linspace(1.0, 0.0, length, dtype=np.float32)[:, None]


def _exact(audio: np.ndarray, samples: int) -> np.ndarray:
    if len(audio) >= samples:
        return audio[:samples]
    return np.concatenate([audio, np.zeros((samples - len(audio), audio.shape[1]), audio.dtype)])


def _frames(audio: np.ndarray, rate: int, sample_format: str, block: int = 4096, first: int = 0):
    """AudioFrames of `audio` with presentation times in samples (its first at `first`)."""
    planar = sample_format.endswith("p")
    for start in range(0, len(audio), block):
        chunk = audio[start : start + block]
        if sample_format.startswith("s16"):
            data = np.clip(np.round(chunk * 32767.0), -32768, 32767).astype(np.int16)
        else:
            data = chunk.astype(np.float32)
        array = np.ascontiguousarray(data.T if planar else data.reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(array, format=sample_format, layout="stereo")
        frame.sample_rate = rate
        frame.pts = first + start
        frame.time_base = Fraction(1, rate)
        yield frame


def write_audio_file(
    path: Path,
    audio: np.ndarray,
    rate: int,
    heartbeat: Callable[[], None] = _nothing,
    tags: dict[str, str] | None = None,
    float_wav: bool = False,
) -> None:
    """Encode `audio` into `path` by its extension (.wav, .flac, .mp3, .ogg), with the
    container's `tags` (a WAV's INFO list: "comment" is its ICMT); `heartbeat` is called
    between frames (it raises to cancel). `float_wav`: a WAV of 32-bit float samples, which
    may pass full scale."""
    format_name, codec, sample_format = AUDIO_FORMATS[path.suffix.lower()]
    if float_wav:
        assert format_name == "wav", path
        codec, sample_format = "pcm_f32le", "flt"
    audio, rate = _at_codec_rate(audio, rate, codec)
    bit_rate = {"libmp3lame": 256_000, "libopus": 192_000}.get(codec)
    with av.open(str(path), "w", format=format_name) as container:
        container.metadata.update(tags or {})
        stream = _audio_stream(container, codec, rate, sample_format, bit_rate)
        for frame in _frames(audio, rate, sample_format):
            heartbeat()
            _encode(container, stream, frame)
        _encode(container, stream, None)


def _write_wav_blocks(
    path: Path, blocks: Iterable[np.ndarray], rate: int, samples: int,
    heartbeat: Callable[[], None] = _nothing,
) -> None:  # fmt: skip
    """A 16-bit WAV of `blocks` (stereo float32 at `rate`), cut or padded with silence to
    exactly `samples`, written as the blocks come: a two-hour piece is never held whole."""
    format_name, codec, sample_format = AUDIO_FORMATS[".wav"]
    with av.open(str(path), "w", format=format_name) as container:
        stream = _audio_stream(container, codec, rate, sample_format, None)
        written = 0
        silence = np.zeros((min(samples, 1 << 16), 2), np.float32)
        for block in itertools.chain(blocks, itertools.repeat(silence)):
            block = block[: samples - written]
            for frame in _frames(block, rate, sample_format, first=written):
                heartbeat()
                _encode(container, stream, frame)
            written += len(block)
            if written >= samples:
                break
        _encode(container, stream, None)


def file_tags(path: Path) -> dict[str, str]:
    """The container's tags of an audio file (none for one FFmpeg cannot read)."""
    try:
        with open_input(str(path)) as container:
            return dict(container.metadata)
    except (av.error.FFmpegError, OSError):
        return {}


def _at_codec_rate(audio: np.ndarray, rate: int, codec: str) -> tuple[np.ndarray, int]:
    """`audio` at a rate `codec` takes: Opus encodes at 48 kHz only."""
    if codec == "libopus" and rate != OPUS_RATE:
        return resample(audio, rate, OPUS_RATE, round(len(audio) * OPUS_RATE / rate)), OPUS_RATE
    return audio, rate


def _audio_stream(
    container: Any, codec: str, rate: int, sample_format: str, bit_rate: int | None
) -> av.AudioStream:
    stream = container.add_stream(codec, rate=rate)
    assert isinstance(stream, av.AudioStream)
    stream.layout = "stereo"
    stream.format = sample_format
    if bit_rate is not None:
        stream.bit_rate = bit_rate
    return stream


def _encode(container: Any, stream: av.AudioStream, frame: av.AudioFrame | None) -> None:
    """Encode one frame (None: flush the encoder) and mux what comes out."""
    for packet in stream.encode(frame):
        container.mux(packet)


def mux_into_video(
    video_path: Path,
    out_path: Path,
    audio: np.ndarray,
    rate: int,
    heartbeat: Callable[[], None] = _nothing,
) -> None:
    """Copy the video stream of `video_path` (no re-encoding) and add `audio` as its sound;
    `heartbeat` is called between packets (it raises to cancel). The video stops where the
    audio does: a container that states a shorter length than its frames run, or an edit
    list that hides the last frames, is cut there. The source's tags come with it
    (`_carried`), and an .mp4 or .mov output has its index first (`QUICKTIME_OPTIONS`)."""
    format_name, codec = VIDEO_FORMATS[out_path.suffix.lower()]
    audio, rate = _at_codec_rate(audio, rate, codec)
    options = MUXER_OPTIONS.get(format_name, {})
    with (
        open_as_stated(video_path) as source,
        av.open(str(out_path), "w", format=format_name, options=options) as target,
    ):
        video_in = picture_stream(source)
        video_out = _copy_stream(target, video_in, _kept_tag(video_in, format_name))
        target.metadata.update(_carried(source.metadata))
        video_out.metadata.update(_carried(video_in.metadata))
        sample_format = "fltp" if codec == "aac" else "flt"
        audio_out = _audio_stream(target, codec, rate, sample_format, 192_000)
        if codec == "aac":
            # FFmpeg's fast AAC coder: twice the speed of its default, inaudibly different at
            # 192 kb/s.
            audio_out.codec_context.options = {"aac_coder": "fast"}
        frames = _frames(audio, rate, sample_format)
        audio_time = 0.0
        end_s = len(audio) / rate
        # Frames shown after the music ends, held back: they are written only if a frame
        # shown before it follows them in decoding order (it may refer to them), and dropped
        # at the end, so a B-frame stream, or one whose edit list hides its last frames,
        # stops with the music (it had shown up to two frames on).
        past_the_end: list[av.Packet] = []
        last_dts = None
        origin: int | None = None
        begun_mid_gop = False
        wraps = source.format.name == "mpegts"
        for packet in _with_decode_times(source.demux(video_in)):
            heartbeat()
            if wraps and packet.dts is not None:
                packet.dts = carried_on(packet.dts, last_dts)
                if packet.pts is not None:
                    packet.pts = carried_on(packet.pts, packet.dts)
            if packet.dts is None:
                continue
            if last_dts is not None and packet.dts <= last_dts:
                # A decode time FFmpeg guessed twice (a Matroska cut at an open-GOP keyframe)
                # moves on a tick: the frame is shown after the last one decoded. Packets whose
                # time goes back (two files joined end to end) cannot be muxed.
                if packet.pts is None or packet.pts <= last_dts:
                    continue
                packet.dts = last_dts + 1
            if origin is None and not packet.is_keyframe:
                # A capture begun mid-GOP: nothing decodes before its first keyframe (the
                # copy had started 0.53 s of undecodable packets earlier, its picture that
                # late).
                begun_mid_gop = True
                continue
            assert packet.time_base is not None
            last_dts = packet.dts
            if origin is None:
                # The video starts with its music, at its first frame shown.
                origin = picture_origin(video_in, packet, begun_mid_gop)
            packet.dts -= origin
            if packet.pts is not None:
                packet.pts -= origin
            if packet.dts * packet.time_base >= end_s:
                break
            packet.stream = video_out
            if packet.pts is not None and packet.pts * packet.time_base >= end_s:
                past_the_end.append(packet)
                continue
            for held in past_the_end:
                target.mux(held)
            past_the_end.clear()
            target.mux(packet)
            # Keep the audio a little ahead of the video so the muxer interleaves evenly.
            if packet.pts is not None:
                video_time = float(packet.pts * packet.time_base)
                while audio_time <= video_time + 1.0:
                    frame = next(frames, None)
                    if frame is None:
                        audio_time = float("inf")
                        break
                    _encode(target, audio_out, frame)
                    audio_time = (frame.pts + frame.samples) / rate
        for frame in frames:
            heartbeat()
            _encode(target, audio_out, frame)
        _encode(target, audio_out, None)


def _with_decode_times(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
    """The packets in decoding order, the leading ones given decode times. Matroska stores
    none, and FFmpeg works them out only once its reordering has started: the first packets
    of a stream with B-frames (its first picture among them) come without one, and a muxer
    cannot take them. They get the times just before the first one known (or the first
    shown), a packet's duration apart. The demuxer's empty closing packet is dropped."""
    held: list[av.Packet] = []
    for packet in packets:
        if packet.pts is None and packet.dts is None:
            continue
        if packet.dts is None:
            held.append(packet)
            continue
        yield from _backdated(held, packet.dts)
        yield packet
        break
    else:
        yield from _backdated(held, None)
        return
    yield from packets


def _backdated(held: list[av.Packet], next_dts: int | None) -> list[av.Packet]:
    shown = [packet.pts for packet in held if packet.pts is not None]
    last = min([*shown, *([] if next_dts is None else [next_dts])], default=0)
    for packet in reversed(held):
        last -= max(1, packet.duration or 0)
        packet.dts = last
    return held


def decode_audio(
    path: Path, rate: int, samples: int, heartbeat: Callable[[], None] = _nothing
) -> np.ndarray | None:
    """The first audio track of the video `path` as stereo float32 at `rate`, exactly
    `samples` long from its picture's first frame shown, each frame where its time puts it
    (`_resampled`); None when the file has no audio. `heartbeat` is called between frames.
    A track that holds no sound at all is refused (a Matroska file's empty track had been
    kept as silence, where MP4's, which its demuxer drops, was refused)."""
    with _placed(path, rate, samples, heartbeat) as opened:
        if opened is None:
            return None
        container, place = opened
        # No further than the video: a long track behind a short video is never decoded.
        audio = _decoded(container, rate, heartbeat, samples, place)
    if not len(audio) and (place is None or place.stamped is None):
        raise InvalidInputError(f"{path.name}'s audio track holds no sound to keep")
    if place is not None and place.stamped and not place.heard:
        first, last = place.stamped
        start_s, end_s = place.origin_s, place.origin_s + samples / rate
        where = f"from {first:.2f} s on" if first >= end_s else f"up to {last:.2f} s"
        raise InvalidInputError(
            f"{path.name}'s sound lies outside its picture, which runs from {start_s:.2f} s "
            f"to {end_s:.2f} s on the file's clock: its sound is stamped {where}, so none of "
            "it can be kept"
        )
    return _exact(audio, samples)


def decode_audio_to_wav(
    path: Path, out: Path, rate: int, samples: int, heartbeat: Callable[[], None] = _nothing
) -> bool:
    """`decode_audio`'s sound of `path` written to the 16-bit WAV `out` as it decodes (a
    two-hour piece is never held whole: the studio had held each finished piece's, 2.8 GB
    for two hours); False, and nothing written, when the file has no audio."""
    with _placed(path, rate, samples, heartbeat) as opened:
        if opened is None:
            return False
        container, place = opened
        chunks = _resampled(container, rate, "stereo", heartbeat, samples / rate, place)
        _write_wav_blocks(out, chunks, rate, samples, heartbeat)
    return True


@contextlib.contextmanager
def _placed(
    path: Path, rate: int, samples: int, heartbeat: Callable[[], None]
) -> Iterator[tuple[Any, _Placement | None] | None]:
    """The video `path` opened, with where its sound's frames go from its picture's first
    frame shown (`_Placement`, None where it shows none); None when it has no audio."""
    origin_s = first_shown_s(path, heartbeat)
    with open_input(str(path)) as container:
        if not container.streams.audio:
            yield None
            return
        seconds = samples / rate
        place = None if origin_s is None else _Placement(container, rate, 2, origin_s, seconds)
        yield container, place


def audio_blocks(
    path: Path, rate: int, block: int, heartbeat: Callable[[], None] = _nothing
) -> Iterator[np.ndarray]:
    """The first audio track of `path` as stereo float32 at `rate`, in blocks of about `block`
    samples (a two-hour track is never held whole)."""
    with open_input(str(path)) as container:
        pending: list[np.ndarray] = []
        held = 0
        for chunk in _resampled(container, rate, "stereo", heartbeat, None):
            pending.append(chunk)
            held += len(chunk)
            if held >= block:
                yield np.concatenate(pending)
                pending, held = [], 0
        if pending:
            yield np.concatenate(pending)


def decode_audio_bytes(
    data: bytes,
    rate: int,
    seconds: float | None = None,
    heartbeat: Callable[[], None] = _nothing,
) -> np.ndarray:
    """An audio file held in memory (WAV, FLAC, MP3, Ogg, ...) as stereo float32 at `rate`,
    whole or its first `seconds` (a few kilobytes of FLAC can hold hours of silence, gigabytes
    once decoded); refuses what is not audio. `heartbeat` is called between frames (it raises
    to cancel)."""
    try:
        with open_input(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise InvalidInputError("the reference file has no audio track")
            native = container.streams.audio[0].rate
            limit = None if seconds is None else math.ceil(seconds * native)
            audio = _decoded(container, native, heartbeat, limit)[:limit]
    except av.error.MemoryError:
        raise InvalidInputError(beyond_limits("the reference file", "audio")) from None
    except av.FFmpegError as error:
        raise InvalidInputError(f"the reference file is not readable audio: {error}") from None
    if len(audio) == 0:
        raise InvalidInputError("the reference file holds no audio samples")
    # Resampled here, not by FFmpeg: a model's rate can be far below any audio format's.
    return resample(audio, native, rate, round(len(audio) * rate / native))


def _decoded(
    container: Any,
    rate: int,
    heartbeat: Callable[[], None] = _nothing,
    limit: int | None = None,
    place: _Placement | None = None,
) -> np.ndarray:
    """The first audio track as stereo float32 at `rate`, decoded until `limit` samples
    (all of it without one), into one array (a list of a million tiny frames held 450 bytes
    each); with `place`, placed by its times (`_resampled`)."""
    if limit is None:
        chunks = list(_resampled(container, rate, "stereo", heartbeat, None))
        return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.float32)
    audio = np.zeros((limit, 2), np.float32)
    held = 0
    for chunk in _resampled(container, rate, "stereo", heartbeat, limit / rate, place):
        taken = min(len(chunk), limit - held)
        audio[held : held + taken] = chunk[:taken]
        held += taken
        if held == limit:
            break
    return audio[:held]


def _resampled(
    container: Any,
    rate: int,
    layout: str,
    heartbeat: Callable[[], None],
    seconds: float | None,
    place: _Placement | None = None,
) -> Iterator[np.ndarray]:
    """The first audio track at `rate` in `layout` ("mono" or "stereo"), float32 (samples x
    channels), a decoded frame at a time, calling `heartbeat` at each (it raises to cancel).
    A track whose frames come at a rate outside AUDIO_RATES, or more than
    MAX_AUDIO_FRAMES_PER_S of them for its first `seconds`, or that changes its rate part-way,
    is refused; a damaged one ends where the damage starts (logged).

    With `place` (a video's sound, up to its `seconds`), each frame goes where its time puts
    it, from the picture's first frame shown on (`_Placement`): what comes before is left
    out, and a gap (a recorder's dropped packets) is silence. The frames had been joined end
    to end from the first: a sound starting 0.5 s before the picture had been kept 0.5 s
    late, and each dropped packet put what follows it that much early."""
    stream = container.streams.audio[0]
    channels = 1 if layout == "mono" else 2
    most = None if seconds is None else math.ceil(MAX_AUDIO_FRAMES_PER_S * (seconds + 1.0))
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    low, high = AUDIO_RATES
    count = 0
    try:
        for frame in container.decode(stream):
            heartbeat()
            count += 1
            if most is not None and count > most:
                raise InvalidInputError(
                    f"the sound holds over {most} frames in its first {seconds:.1f} s; at "
                    f"most {MAX_AUDIO_FRAMES_PER_S} a second"
                )
            if not low <= frame.sample_rate <= high:
                raise InvalidInputError(
                    f"the sound is sampled at {frame.sample_rate} Hz; between {low} and {high} "
                    "Hz can be used"
                )
            chunks = [c.to_ndarray().reshape(-1, channels) for c in resampler.resample(frame)]
            if place is None:
                yield from chunks
                continue
            yield from place(frame.time, chunks)
            if place.full:
                return
    except av.FFmpegError as error:
        # A damaged track: what decoded before the damage stands (the rest is silence).
        log.warning("audio decoding stopped after %d frames: %s", count, error)
    except ValueError:
        # PyAV's resampler takes one rate and layout for the whole track.
        raise InvalidInputError("the sound changes its sample rate or layout part-way") from None
    chunks = [c.to_ndarray().reshape(-1, channels) for c in resampler.resample(None)]
    yield from chunks if place is None else place(None, chunks)


class _Placement:
    """Places a video's sound by its frames' times (`_resampled`), up to `seconds`."""

    def __init__(
        self, container: Any, rate: int, channels: int, origin_s: float, seconds: float | None
    ):
        assert seconds is not None, "a video's sound is decoded up to the video's length"
        self.rate, self.channels, self.origin_s = rate, channels, origin_s
        self.end = round(seconds * rate)
        self.placed = 0
        # Samples of the sound itself placed (not the silence of its gaps), and the first
        # and last times its frames are stamped with.
        self.heard = 0
        self.stamped: tuple[float, float] | None = None
        stream = container.streams.audio[0]
        # An MPEG-TS's sound shares the picture's 33-bit clock, which may wrap between them.
        self.wrap_s = (
            float(MPEG_TS_WRAP * stream.time_base) if container.format.name == "mpegts" else None
        )

    @property
    def full(self) -> bool:
        return self.placed >= self.end

    def __call__(self, time: float | None, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
        if time is not None:
            first = time if self.stamped is None else self.stamped[0]
            self.stamped = (first, time)
            since = time - self.origin_s
            if self.wrap_s is not None:
                since -= round(since / self.wrap_s) * self.wrap_s
            due = round(since * self.rate)
            # The first sound kept starts where its time says; after it, within
            # PLACEMENT_SLACK_S the frames are joined as they come (a resampler holds a few
            # samples back, and containers round their times).
            slack = 0 if self.placed == 0 else PLACEMENT_SLACK_S * self.rate
            if due - self.placed > slack:
                gap = min(due, self.end) - self.placed
                yield np.zeros((gap, self.channels), np.float32)
                self.placed += gap
            elif self.placed - due > slack:
                chunks = _dropping(chunks, self.placed - due)
        for chunk in chunks:
            taken = chunk[: self.end - self.placed]
            if len(taken):
                yield taken
                self.placed += len(taken)
                self.heard += len(taken)


def _dropping(chunks: list[np.ndarray], samples: int) -> list[np.ndarray]:
    """`chunks` without their first `samples` samples."""
    kept = []
    for chunk in chunks:
        dropped = min(samples, len(chunk))
        samples -= dropped
        if dropped < len(chunk):
            kept.append(chunk[dropped:])
    return kept


# How far a video's sound frame may lie from where the frames before it end before it is
# moved to its time: more than a capture's jittered or drifting times (at 10 ms, times
# jittered by 12 ms had made 35 dropouts and splices in 10 s, and a clock 0.1% fast a splice
# every 10 s), less than the 45 ms at which a sound late against its picture is noticed
# (ITU-R BT.1359). Gaps past it (a recorder's dropped packets) are kept as silence.
PLACEMENT_SLACK_S = 0.04


def mono_blocks(
    path: Path,
    rate: int,
    block_s: float,
    seconds: float,
    heartbeat: Callable[[], None] = _nothing,
) -> Iterator[np.ndarray]:
    """The first audio track of `path` as mono float32 at `rate`, in blocks of `block_s`
    seconds (the last shorter), so a two-hour track never sits in memory whole, up to
    `seconds` (the video's length: a longer track is never decoded past it). Nothing for a
    file without audio; a damaged track ends where the damage starts (logged)."""
    block = round(block_s * rate)
    wanted = round(seconds * rate)
    origin_s = first_shown_s(path, heartbeat)
    with open_input(str(path)) as container:
        if not container.streams.audio:
            return
        place = None if origin_s is None else _Placement(container, rate, 1, origin_s, seconds)
        pending: list[np.ndarray] = []
        held = 0
        given = 0
        for chunk in _resampled(container, rate, "mono", heartbeat, seconds, place):
            samples = chunk.reshape(-1)[: wanted - given]
            pending.append(samples)
            held += len(samples)
            given += len(samples)
            while held >= block:
                joined = np.concatenate(pending)
                yield joined[:block].astype(np.float32)
                pending, held = [joined[block:]], len(joined) - block
            if given >= wanted:
                break
        if held:
            yield np.concatenate(pending).astype(np.float32)
