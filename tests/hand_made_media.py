"""Videos whose streams disagree (clocks, lengths), written stream by stream with PyAV: what
services.media.synth's tidy videos never are."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


def write_streams(
    path: Path,
    *,
    frames: int,
    first_pts: int = 0,
    time_base: Fraction = Fraction(1, 90000),
    sound_s: float,
    container_format: str | None = None,
    keyframe_every: int | None = None,
    sound_first: bool = False,
    sound_tracks: int = 1,
) -> Path:
    """`frames` 64x36 pictures at 30 frames/s whose clock starts at `first_pts`, and
    `sound_s` seconds of quiet noise (AAC, 48 kHz stereo) whose clock starts at 0, in
    `sound_tracks` tracks. With `keyframe_every`, a keyframe every that many frames and
    nowhere else; with `sound_first`, the sound is the file's first stream."""
    rate = 48000
    with av.open(str(path), "w", format=container_format) as container:
        early_sound = container.add_stream("aac", rate=rate) if sound_first else None
        picture = container.add_stream("libx264", rate=30)
        picture.width, picture.height, picture.pix_fmt = 64, 36, "yuv420p"
        picture.codec_context.time_base = time_base
        if keyframe_every:
            keyframes = f"keyint={keyframe_every}:min-keyint={keyframe_every}:scenecut=0"
            picture.codec_context.options = {"x264-params": keyframes}
        sound = early_sound or container.add_stream("aac", rate=rate)
        more = [container.add_stream("aac", rate=rate) for _ in range(sound_tracks - 1)]
        step = round(1 / (30 * time_base))
        for i in range(frames):
            image = np.full((36, 64, 3), (i * 37) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = first_pts + i * step, time_base
            for packet in picture.encode(frame):
                container.mux(packet)
        for packet in picture.encode():
            container.mux(packet)
        for track in (sound, *more):
            _mux_noise(container, track, sound_s)
    return path


def _mux_noise(container: Any, sound: Any, seconds: float) -> None:
    """`seconds` of quiet noise (48 kHz stereo, whatever rate `sound` was made at) encoded by
    `sound` into `container`."""
    rate = sound.rate
    noise = np.random.default_rng(0).normal(0, 0.1, (1, 2 * 1024)).astype(np.float32)
    for start in range(0, round(seconds * rate), 1024):
        block = av.AudioFrame.from_ndarray(noise, format="flt", layout="stereo")
        block.sample_rate, block.pts, block.time_base = rate, start, Fraction(1, rate)
        for packet in sound.encode(block):
            container.mux(packet)
    for packet in sound.encode():
        container.mux(packet)


def stating_length(mkv: Path, out: Path, seconds: float) -> Path:
    """A copy of the Matroska file `mkv` whose header states `seconds` as its length (its
    Segment Duration, an 8-byte float in milliseconds at FFmpeg's default timestamp scale),
    whatever its frames run to."""
    data = bytearray(mkv.read_bytes())
    duration = data.find(b"\x44\x89\x88")  # the element's ID, then its size: 8 bytes
    assert duration > 0, f"{mkv.name} has no 8-byte Segment Duration"
    data[duration + 3 : duration + 11] = struct.pack(">d", seconds * 1000.0)
    out.write_bytes(bytes(data))
    return out


def stating_track_length(mp4: Path, out: Path, seconds: float) -> Path:
    """A copy of the single-track MP4 `mp4` whose track header (mdhd) states `seconds` as
    its length, whatever its frames run to."""
    data = bytearray(mp4.read_bytes())
    box = data.find(b"mdhd")
    assert box > 0 and data.find(b"mdhd", box + 4) < 0, f"{mp4.name} has not one track"
    # Version 0: flags, two 4-byte dates, the 4-byte timescale, then the 4-byte length.
    assert data[box + 4] == 0, "a version-1 mdhd"
    (timescale,) = struct.unpack(">I", data[box + 16 : box + 20])
    data[box + 20 : box + 24] = struct.pack(">I", round(seconds * timescale))
    out.write_bytes(bytes(data))
    return out


def write_frames_at(path: Path, times_ms: list[int], container_format: str = "matroska") -> Path:
    """A video (Matroska unless told) of 64x36 pictures shown at `times_ms` (milliseconds):
    its stated rate is what FFmpeg guesses from the first few, whatever the rest do."""
    with av.open(str(path), "w", format=container_format) as container:
        picture = container.add_stream("libx264", rate=30)
        picture.width, picture.height, picture.pix_fmt = 64, 36, "yuv420p"
        picture.codec_context.time_base = Fraction(1, 1000)
        picture.codec_context.options = {"preset": "ultrafast"}
        _mux_greys(container, picture, times_ms, Fraction(1, 1000))
    return path


def _mux_greys(container: Any, stream: Any, times: list[int], time_base: Fraction) -> None:
    """A picture of one grey (another each frame) at each of `times` (in `time_base`),
    encoded by `stream` into `container`."""
    for i, time in enumerate(times):
        image = np.full((stream.height, stream.width, 3), (i * 37) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=stream.pix_fmt)
        frame.pts, frame.time_base = time, time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def silent_flac(seconds: float, rate: int = 48000) -> bytes:
    """`seconds` of stereo silence as FLAC in its largest frames: about 19 bytes a second,
    hours of audio in a few hundred kilobytes."""
    buffer = io.BytesIO()
    block = np.zeros((1, 2 * 4096), np.int16)
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout, stream.format = "stereo", "s16"
        stream.codec_context.options = {"frame_size": "65535"}
        for i in range(round(seconds * rate) // 4096):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, i * 4096
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def showing_last(mp4: Path, out: Path, seconds: float) -> Path:
    """A copy of the MP4 `mp4` (its first track the video) whose edit list shows only the
    last `seconds` of it: the frames before still have to be decoded, and are not shown."""
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None and stream.duration is not None
        length_s = float(stream.duration * stream.time_base)
        time_base = stream.time_base
    data = bytearray(mp4.read_bytes())
    movie = data.find(b"mvhd")
    assert data[movie + 4] == 0, "a version-0 movie header"
    (movie_scale,) = struct.unpack(">I", data[movie + 16 : movie + 20])
    edits = data.find(b"elst")
    assert edits > 0 and data[edits + 4] == 0, f"{mp4.name} has no version-0 edit list"
    struct.pack_into(">Ii", data, edits + 12, round(seconds * movie_scale),
                     round((length_s - seconds) / time_base))  # fmt: skip
    out.write_bytes(bytes(data))
    return out


def holding_last_frame(path: Path, frames: int, fps: int, held_s: float) -> Path:
    """An H.264 MP4 of `frames` frames at `fps` whose last frame is shown for `held_s` (as a
    screen recording holds a still picture): its length is the frames' plus the hold."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.options = {"bf": "0"}
        packets = []
        for index in range(frames):
            picture = np.full((48, 64, 3), (index * 5) % 255, np.uint8)
            packets += stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24"))
        packets += stream.encode()
        packets[-1].duration = round(held_s / packets[-1].time_base)
        for packet in packets:
            container.mux(packet)
    return path


def write_sound(path: Path, *, rate: int, frame_samples: int, frames: int) -> Path:
    """A Matroska file of four 16x16 pictures (one a second) and `frames` frames of mono
    16-bit PCM silence at `rate`, each `frame_samples` long."""
    with av.open(str(path), "w", format="matroska") as container:
        picture = container.add_stream("mpeg4", rate=1)
        picture.width, picture.height, picture.pix_fmt = 16, 16, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate)
        sound.layout, sound.format = "mono", "s16"
        for second in range(4):
            image = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            image.pts = second
            for packet in picture.encode(image):
                container.mux(packet)
        for packet in picture.encode():
            container.mux(packet)
        for i in range(frames):
            block = av.AudioFrame.from_ndarray(np.zeros((1, frame_samples), np.int16),
                                               format="s16", layout="mono")  # fmt: skip
            block.sample_rate, block.pts = rate, i * frame_samples
            block.time_base = Fraction(1, rate)
            for packet in sound.encode(block):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return path


def with_a_huge_picture(video: Path, out: Path, side: int) -> Path:
    """`video`'s streams copied into a MOV file with one more video stream: a single 16-bit
    RGBA PNG picture `side` pixels square, of one colour (a few hundred kilobytes in the file,
    8 bytes a pixel once decoded)."""
    row = zlib.compressobj(9)
    data = b"".join([*(row.compress(b"\0" * (1 + 8 * side)) for _ in range(side)), row.flush()])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))  # fmt: skip

    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    with av.open(str(video)) as source, av.open(str(out), "w", format="mov") as target:
        copies = {s.index: target.add_stream_from_template(s) for s in source.streams}
        picture = target.add_stream("png", rate=1)
        picture.width, picture.height, picture.pix_fmt = side, side, "rgba64be"
        target.start_encoding()
        packet = av.Packet(png)
        packet.stream, packet.pts, packet.dts = picture, 0, 0
        packet.time_base, packet.is_keyframe = Fraction(1, 1000), True
        target.mux(packet)
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = copies[packet.stream.index]
                target.mux(packet)
    return out


def many_pictures(out: Path, count: int, width: int, height: int) -> Path:
    """A file of `count` video streams, each the same two H.264 pictures `width` x `height`
    (a few kilobytes a stream in the file), in the container `out`'s name says."""
    one = io.BytesIO()
    with av.open(one, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(2):
            image = np.full((height, width, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    one.seek(0)
    with av.open(one, "r") as source, av.open(str(out), "w") as target:
        template = source.streams.video[0]
        copies = [target.add_stream_from_template(template) for _ in range(count)]
        packets = [p for p in source.demux(template) if p.size]
        for packet in packets:
            for copy in copies:
                # Muxing a packet takes its data: each stream gets its own.
                again = av.Packet(bytes(packet))
                again.stream, again.pts, again.dts = copy, packet.pts, packet.dts
                again.time_base, again.is_keyframe = packet.time_base, packet.is_keyframe
                target.mux(again)
    return out


def mpeg_ts(width: int, height: int, first_frame: int, frames: int) -> bytes:
    """An MPEG-TS of `frames` H.264 pictures at 30 frames/s (a bar sweeping across a changing
    grey), its clock starting at frame `first_frame`: two joined are one file, as captures
    are joined."""
    written = io.BytesIO()
    with av.open(written, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i in range(frames):
            image = np.full((height, width, 3), (i * 17) % 255, np.uint8)
            image[: height // 2, : (i * 3) % width] = 250
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = first_frame + i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return written.getvalue()


def song_with_cover_art(path: Path, seconds: float = 2.0) -> Path:
    """An M4A song: AAC sound and its album cover, a picture stream of its own (attached)."""
    rate = 44100
    with av.open(str(path), "w", format="mp4") as container:
        sound = container.add_stream("aac", rate=rate)
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 320, 180, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        image = np.full((180, 320, 3), 90, np.uint8)
        picture = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
        picture.pts, picture.time_base = 0, Fraction(1, 1)
        for packet in [*cover.encode(picture), *cover.encode()]:
            container.mux(packet)
        _mux_noise(container, sound, seconds)
    return path


def stating_frame_ticks(mp4: Path, out: Path, ticks: int) -> Path:
    """A copy of the MP4 file `mp4` whose sample table says every frame lasts `ticks` of its
    clock (its stated frame rate), whatever length its header states."""
    data = bytearray(mp4.read_bytes())
    table = data.find(b"stts")
    assert table > 0, f"{mp4.name} has no sample table"
    for entry in range(struct.unpack(">I", data[table + 8 : table + 12])[0]):
        at = table + 12 + 8 * entry + 4
        data[at : at + 4] = struct.pack(">I", ticks)
    out.write_bytes(bytes(data))
    return out


def declaring_samples(mp4: Path, out: Path, count: int, fragmented: bool = False) -> Path:
    """An MP4 of a few hundred bytes whose one video track (`mp4`'s first sample description)
    declares `count` samples of one byte each, a tick apart: in one chunk of its sample
    tables, or (`fragmented`) in one run of one fragment whose samples take the default size.
    A few bytes declare them, whatever the count."""

    def box(kind: bytes, *parts: bytes) -> bytes:
        body = b"".join(parts)
        return struct.pack(">I", 8 + len(body)) + kind + body

    def full(kind: bytes, flags: int, *parts: bytes) -> bytes:
        return box(kind, flags.to_bytes(4, "big"), *parts)

    data = mp4.read_bytes()
    at = data.find(b"stsd") - 4
    description = data[at : at + struct.unpack(">I", data[at : at + 4])[0]]
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    scale, length = 1_000_000, 0 if fragmented else count
    header = full(b"mvhd", 0, struct.pack(">IIII", 0, 0, scale, length),
                  struct.pack(">IH", 0x10000, 0x100), bytes(10), identity, bytes(24),
                  struct.pack(">I", 2))  # fmt: skip
    track_header = full(b"tkhd", 3, struct.pack(">IIIII", 0, 0, 1, 0, length), bytes(16),
                        identity, struct.pack(">II", 320 << 16, 180 << 16))  # fmt: skip
    media_header = full(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, scale, length, 0x55C4, 0))
    handler = full(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"v\0")
    information = box(b"dinf", full(b"dref", 0, struct.pack(">I", 1), full(b"url ", 1)))
    in_tables = 0 if fragmented else count

    def movie(chunk_at: int) -> bytes:
        table = box(b"stbl", description,
                    full(b"stts", 0, struct.pack(">III", 1, in_tables, 1)),
                    full(b"stsc", 0, struct.pack(">IIII", 1, 1, in_tables, 1)),
                    full(b"stsz", 0, struct.pack(">II", 1, in_tables)),
                    full(b"stco", 0, struct.pack(">II", 1, chunk_at)))  # fmt: skip
        media = box(b"mdia", media_header, handler,
                    box(b"minf", full(b"vmhd", 1, bytes(8)), information, table))  # fmt: skip
        defaults = box(b"mvex", full(b"trex", 0, struct.pack(">IIIII", 1, 1, 1, 1, 0)))
        return box(b"moov", header, box(b"trak", track_header, media),
                   *([defaults] if fragmented else []))  # fmt: skip

    kind = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    fragment = b""
    if fragmented:
        # tfhd: a default duration and size (1 and 1), offsets from the fragment; trun: a
        # data offset and no per-sample fields.
        run = box(b"traf", full(b"tfhd", 0x020018, struct.pack(">III", 1, 1, 1)),
                  full(b"tfdt", 0, struct.pack(">I", 0)),
                  full(b"trun", 0x000001, struct.pack(">Ii", count, 0)))  # fmt: skip
        fragment = box(b"moof", full(b"mfhd", 0, struct.pack(">I", 1)), run)
    chunk_at = len(kind) + len(movie(0)) + len(fragment) + 8
    out.write_bytes(kind + movie(chunk_at) + fragment + box(b"mdat", bytes(64)))
    return out


def thumbnail_first(path: Path, seconds: float = 3.0) -> Path:
    """A file (by its suffix) whose first video stream is a one-frame 96x54 thumbnail, not
    marked default (as a phone or an editor writes one), and whose second is the video:
    160x90 at 30 frames/s, marked default."""
    with av.open(str(path), "w") as container:
        streams = []
        for width, height in ((96, 54), (160, 90)):
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            streams.append(stream)
        thumbnail, video = streams
        thumbnail.disposition = av.stream.Disposition(0)
        video.disposition = av.stream.Disposition.default
        _mux_greys(container, thumbnail, [0], Fraction(1, 30))
        _mux_greys(container, video, list(range(round(seconds * 30))), Fraction(1, 30))
    return path


def tagged(path: Path, codec: str, tag: str, pix_fmt: str, options: dict[str, str]) -> Path:
    """One second of 64x36 greys at 30 frames/s encoded by `codec` into a QuickTime file
    (by the suffix) under the codec tag `tag`, as a phone or an editor tags its streams."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 36, pix_fmt
        stream.codec_context.options = options
        stream.codec_context.codec_tag = tag
        _mux_greys(container, stream, list(range(30)), Fraction(1, 30))
    return path


def at_ntsc_film_rate(path: Path) -> Path:
    """Two seconds of 64x36 H.264 at 24000/1001 frames/s, on a 1/24000 clock (a film-rate
    camera clip, as FFmpeg's MP4 muxer clocks one)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24000, 1001))
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24000)
        _mux_greys(container, stream, [i * 1001 for i in range(48)], Fraction(1, 24000))
    return path


def cut_at_an_open_gop(path: Path) -> Path:
    """A Matroska file stream-copied out of a longer H.264 one from its second keyframe, an
    open-GOP one, with the B-frame before it in display order kept (as mkvmerge --split or
    ffmpeg -ss -c copy leave one): FFmpeg guesses the same decode time for two of its
    packets."""
    whole = path.with_name(f"whole-{path.name}")
    with av.open(str(whole), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        gop = "bframes=3:keyint=30:min-keyint=30:scenecut=0:open-gop=1"
        stream.codec_context.options = {"x264-params": gop}
        _mux_greys(container, stream, list(range(120)), Fraction(1, 30))
    with av.open(str(whole)) as source, av.open(str(path), "w", format="matroska") as target:
        copy = target.add_stream_from_template(source.streams.video[0])
        packets = [packet for packet in source.demux(video=0) if packet.size]
        keyframes = [i for i, packet in enumerate(packets) if packet.is_keyframe]
        for packet in packets[keyframes[1] :]:
            packet.stream = copy
            target.mux(packet)
    return path


class _Forward(io.RawIOBase):
    """A file written front to back only, as a pipe or a live upload is: a muxer cannot go
    back to write the length it learns at the end."""

    def __init__(self, sink: Any):
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.sink.write(data)


def recorded_live(path: Path, frames: int = 90) -> Path:
    """A WebM as a browser's MediaRecorder writes one: VP9 at 30 frames/s on Matroska's
    millisecond clock, front to back, so stating no length."""
    with open(path, "wb") as sink, av.open(_Forward(sink), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        _mux_greys(container, stream, [round(i * 1000 / 30) for i in range(frames)],
                   Fraction(1, 1000))  # fmt: skip
    return path


def sound_marked_at(
    path: Path, *, picture_from_s: float, sound_from_s: float, mark_s: float,
    dropped: tuple[float, float] | None = None, sound_to_s: float | None = None,
) -> Path:  # fmt: skip
    """Three seconds of 64x36 pictures whose clock starts at `picture_from_s`, and sound
    (AAC, 48 kHz stereo) from `sound_from_s` to `sound_to_s` (the picture's end), silent
    but for a 50 ms burst of noise at `mark_s` on the same clock; with `dropped`, the
    sound's packets between those times are left out (as a recorder drops them)."""
    rate = _SOUND_RATE
    until_s = picture_from_s + 3.0 if sound_to_s is None else sound_to_s
    first, end = round(sound_from_s * rate), round(until_s * rate)
    track = np.zeros((end - first, 2), np.float32)
    mark = round(mark_s * rate) - first
    track[mark : mark + rate // 20] = np.random.default_rng(0).normal(0, 0.3, (rate // 20, 2))

    def kept(packet: av.Packet) -> bool:
        at_s = (packet.pts or 0) / rate
        return not (dropped and dropped[0] <= at_s < dropped[1])

    return _pictures_over_sound(path, round(picture_from_s * 30), track, first, kept)


def tone_with_a_late_stamp(path: Path, late_s: float) -> Path:
    """Three seconds of 64x36 pictures and of a steady 440 Hz tone (AAC, 48 kHz stereo), one
    of whose packets, 1.5 s in, is stamped `late_s` late (as a capture's jittered clock
    stamps one); the container by the suffix."""
    rate = _SOUND_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)
    stamped: list[av.Packet] = []

    def kept(packet: av.Packet) -> bool:
        if not stamped and (packet.pts or 0) >= 1.5 * rate:
            packet.pts = packet.dts = (packet.pts or 0) + round(late_s * rate)
            stamped.append(packet)
        return True

    track = np.repeat(tone[:, None], 2, axis=1).astype(np.float32)
    return _pictures_over_sound(path, 0, track, 0, kept)


_SOUND_RATE = 48000


def _pictures_over_sound(
    path: Path, first_frame: int, track: np.ndarray, first_sample: int,
    kept: Callable[[av.Packet], bool],
) -> Path:  # fmt: skip
    """90 frames of 64x36 greys at 30 frames/s from frame `first_frame`, and `track` (stereo
    float32, 48 kHz) encoded as AAC from sample `first_sample`, each of its packets muxed
    where `kept` (which may restamp it) says so; the container by the suffix."""
    rate = _SOUND_RATE
    with av.open(str(path), "w") as container:
        picture = container.add_stream("libx264", rate=30)
        picture.width, picture.height, picture.pix_fmt = 64, 36, "yuv420p"
        sound = container.add_stream("aac", rate=rate)
        assert isinstance(sound, av.AudioStream)
        frames = list(range(first_frame, first_frame + 90))
        _mux_greys(container, picture, frames, Fraction(1, 30))
        for at in range(0, len(track), 1024):
            block = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(track[at : at + 1024].reshape(1, -1)), format="flt",
                layout="stereo")  # fmt: skip
            block.sample_rate, block.pts = rate, first_sample + at
            block.time_base = Fraction(1, rate)
            for packet in sound.encode(block):
                if kept(packet):
                    container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return path


# What a phone's QuickTime file says about itself, as FFmpeg reads it.
PHONE_TAGS = {
    "creation_time": "2026-06-01T10:20:30.000000Z",
    "location": "+48.8577+002.2950/",
    "com.apple.quicktime.location.ISO6709": "+48.8577+002.2950+035.000/",
    "com.apple.quicktime.make": "Apple",
    "com.apple.quicktime.model": "iPhone 15",
}


def shot_on_a_phone(path: Path) -> Path:
    """One second of 64x36 H.264 greys in a QuickTime file tagged as a phone tags its clips
    (PHONE_TAGS), its picture track in French."""
    with av.open(str(path), "w", options={"movflags": "use_metadata_tags"}) as container:
        container.metadata.update(PHONE_TAGS)
        stream = container.add_stream("libx264", rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.metadata["language"] = "fra"
        _mux_greys(container, stream, list(range(30)), Fraction(1, 30))
    return path


def with_track_statistics(path: Path) -> Path:
    """One second of 64x36 H.264 greys (30 frames) in Matroska, its track tagged with its
    statistics as mkvmerge tags them."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        stream.metadata.update({"NUMBER_OF_FRAMES": "30", "BPS": "1200",
                                "_STATISTICS_TAGS": "BPS NUMBER_OF_FRAMES"})  # fmt: skip
        _mux_greys(container, stream, list(range(30)), Fraction(1, 30))
    return path
