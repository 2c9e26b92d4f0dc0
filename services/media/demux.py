"""FFmpeg opens a caller's media only as a format that holds its own streams."""

from __future__ import annotations

import functools
import io

import av
from av.container import InputContainer

# The demuxers a caller's file may be read with: containers of picture and sound, sound
# files, and a single picture (so that one is refused as a still image, by name). Playlists
# and lists that name other files (HLS, DASH, concat, IMF, image sequences) are not among
# them: FFmpeg reads whatever they name, and an uploaded .m3u8 naming a file outside every
# allowed folder had been analysed, scored and handed back.
DEMUXERS = (
    "mov", "matroska", "avi", "mpegts", "mpeg", "flv", "ogg", "asf", "mxf", "nut", "gif",
    "yuv4mpegpipe",
    "wav", "w64", "aiff", "caf", "au", "mp3", "flac", "aac",
    "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe",
)  # fmt: skip

# The most streams FFmpeg reads of a file (Matroska and MPEG-TS leave the rest unread, an MP4
# of more does not open: av.error.MemoryError). A broadcast MXF holds its picture and 16
# mono sound tracks; FFmpeg's own 1000 let a file open a thousand sound decoders.
MAX_STREAMS = 64


def beyond_limits(name: str, what: str) -> str:
    """Why `name` did not open (av.error.MemoryError): past MAX_STREAMS, or a header asking
    for more memory than `what` needs."""
    return (f"{name} cannot be opened within bgm's limits: it holds more than {MAX_STREAMS} "
            f"streams, or its header asks for more memory than {what} needs")  # fmt: skip


@functools.cache
def _sound_decoders() -> str:
    """FFmpeg's sound decoders' names, as a list for its `codec_whitelist`."""
    names = []
    for name in av.codecs_available:
        try:
            codec = av.Codec(name, "r")
        except av.codec.codec.UnknownCodecError:  # an encoder's name, with no decoder
            continue
        if codec.type == "audio":
            names.append(name)
    return ",".join(sorted(names))


def open_input(
    source: str | io.BytesIO, options: dict[str, str] | None = None, max_pixels: int = 0
) -> InputContainer:
    """`source` (a file's path, or bytes) opened for reading, with FFmpeg `options`. A format
    outside DEMUXERS raises av.error.ArgumentError; a file opens no other file or address.

    While it opens, FFmpeg decodes no picture larger than `max_pixels` (none by default: the
    streams' sizes and formats then come from the container and the codecs' parsers), which
    reading sound or copying a stream never needs. It decodes a picture of every stream to
    learn its format, and a 2 MB file with a 16-bit 16000x16000 PNG in a second video stream
    had cost 2 GB and seconds of work that no cancel could stop at each open."""
    container_options = {"format_whitelist": ",".join(DEMUXERS), "max_streams": str(MAX_STREAMS)}
    if isinstance(source, str):
        container_options["protocol_whitelist"] = "file"
    if max_pixels == 0:
        # Nor is a picture decoder opened: one opens for every picture stream (11 MB for an
        # 8K H.264 stream's, none decoded), and 80 such streams had cost 0.7 GB at each open.
        container_options["codec_whitelist"] = _sound_decoders()
    decoding = {**(options or {}), "max_pixels": str(max_pixels)}
    return av.open(source, "r", options=decoding, container_options=container_options)
