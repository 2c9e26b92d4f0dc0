"""Synthetic videos with known cuts, motion and duration.

The project makes its own media: the README's sample video and every test video come from
here, so tests can assert against what was built rather than against hand-labelled clips.
Each shot is a smooth random texture of its own hue and brightness, panned sideways at a
known speed; shots are joined by hard cuts or, optionally, by fades through black.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class Shot:
    """One shot of a synthetic video."""

    duration_s: float
    # Pan speed of the texture, in frame widths per second (0 = a still picture).
    speed: float = 0.2
    # Base hue 0..1 (0 red, 1/3 green, 2/3 blue) and brightness 0..1 of the texture.
    hue: float = 0.0
    brightness: float = 0.5
    saturation: float = 0.6
    # Frames of fade out before and fade in after this shot's start (0 = a hard cut).
    fade_in_frames: int = 0


@dataclass(frozen=True)
class SyntheticVideo:
    """What was written: the truth the analysis is checked against."""

    path: Path
    duration_s: float
    fps: float
    width: int
    height: int
    # Start time of every shot after the first, in seconds (the cut positions).
    cuts_s: list[float] = field(default_factory=list)
    # Pan speed (frame widths per second) at each frame's presentation time.
    speed_at_frame: list[float] = field(default_factory=list)
    frame_times_s: list[float] = field(default_factory=list)


CONTAINER_FOR_CODEC = {
    "libx264": "mp4",
    "libx265": "mp4",
    "libvpx-vp9": "webm",
    "libsvtav1": "mkv",
    "mpeg4": "mov",
}


def _texture(shot: Shot, width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, horizontally periodic RGB texture, twice as wide as the frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(4, height // 24), max(8, width // 12)), dtype=np.float32)
    # Periodic in x so the pan can wrap: repeat the coarse grid before the smooth resize.
    coarse = np.concatenate([coarse, coarse[:, :1]], axis=1)
    texture_w = 2 * width
    lum = cv2.resize(
        coarse,
        (texture_w + texture_w // (coarse.shape[1] - 1), height),
        interpolation=cv2.INTER_CUBIC,
    )[:, :texture_w]
    lum = np.clip(lum, 0.0, 1.0)
    hsv = np.empty((height, texture_w, 3), dtype=np.float32)
    hsv[..., 0] = (shot.hue * 360.0 + 40.0 * (lum - 0.5)) % 360.0
    hsv[..., 1] = shot.saturation
    hsv[..., 2] = np.clip(shot.brightness * (0.55 + 0.9 * lum), 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.ascontiguousarray((rgb * 255.0).astype(np.uint8))


def _frame_times(duration_s: float, fps: float, variable_rate: bool) -> list[float]:
    if not variable_rate:
        return [i / fps for i in range(round(duration_s * fps))]
    # Variable frame rate: alternate runs of normal and halved rate, like a phone camera
    # dropping to a lower rate in low light.
    times, t, i = [], 0.0, 0
    while t < duration_s - 1e-9:
        times.append(t)
        t += (1.0 / fps) * (2.0 if (i // 15) % 2 else 1.0)
        i += 1
    return times


def iter_frames(
    shots: Sequence[Shot], width: int, height: int, frame_times: Sequence[float], seed: int = 0
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (time, speed, RGB frame) for every frame time."""
    starts = np.cumsum([0.0] + [s.duration_s for s in shots])
    # Each texture is 2W wide and periodic; appending its first W columns lets every pan
    # offset be a plain slice instead of a gather.
    textures = []
    for i, s in enumerate(shots):
        texture = _texture(s, width, height, seed + i)
        textures.append(np.concatenate([texture, texture[:, :width]], axis=1))
    frame_period = frame_times[1] - frame_times[0] if len(frame_times) > 1 else 1.0
    for t in frame_times:
        index = min(int(np.searchsorted(starts, t, side="right")) - 1, len(shots) - 1)
        shot = shots[index]
        local_t = t - starts[index]
        offset = round(shot.speed * width * local_t)
        start = offset % (2 * width)
        frame = textures[index][:, start : start + width]
        # A fade through black: the previous shot darkens over the frames before the cut,
        # this one brightens over the frames after it; the cut itself is the black frame.
        gain = 1.0
        frames_in = round(local_t / frame_period)
        if shot.fade_in_frames and frames_in < shot.fade_in_frames:
            gain = frames_in / shot.fade_in_frames
        if index + 1 < len(shots) and shots[index + 1].fade_in_frames:
            frames_left = round((starts[index + 1] - t) / frame_period)
            gain = min(gain, frames_left / shots[index + 1].fade_in_frames)
        if gain < 1.0:
            frame = (frame.astype(np.float32) * gain).astype(np.uint8)
        yield t, shot.speed, np.ascontiguousarray(frame)


def write_video(
    path: str | Path,
    shots: Sequence[Shot],
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 30.0,
    codec: str = "libx264",
    audio: bool = True,
    rotation: int = 0,
    variable_rate: bool = False,
    seed: int = 0,
    x264_preset: str = "ultrafast",
    loud_intervals: Sequence[tuple[float, float]] = (),
    soundtrack: np.ndarray | None = None,
) -> SyntheticVideo:
    """Write a video made of `shots` and return the truth about it.

    `x264_preset` trades writing speed for a realistic stream: tests use "ultrafast", the
    benchmarks "medium" (what ffmpeg and most editors produce: B-frames, CABAC).
    The audio track is a quiet tone throughout, or, with `loud_intervals`, a loud
    speech-like warble inside those (start, end) seconds and silence elsewhere; or
    `soundtrack` (mono float32 at 48 kHz, e.g. from `speech_track`), padded or cut to the
    video's length.
    """
    path = Path(path)
    duration_s = float(sum(s.duration_s for s in shots))
    frame_times = _frame_times(duration_s, fps, variable_rate)
    time_base = Fraction(1, 1000) if variable_rate else Fraction(1, round(fps))
    with av.open(str(path), mode="w") as container:
        video = container.add_stream(codec, rate=Fraction(round(fps), 1))
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = time_base
        if codec == "libx264":
            video.codec_context.options = {"preset": x264_preset}
        elif codec == "libx265":
            video.codec_context.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        elif codec == "libvpx-vp9":
            video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        elif codec == "libsvtav1":
            # SVT-AV1 logs its whole configuration to stderr unless told otherwise.
            os.environ.setdefault("SVT_LOG", "1")
            # One level of parallelism: with its default, SVT-AV1 (the wheel's 4.1) had hung
            # in svt_av1_enc_send_picture under load, CPU idle, a CI run's worker with it (one
            # of three processes writing 400 clips each beside two busy loops; none of three
            # with lp=1).
            video.codec_context.options = {"preset": "12", "svtav1-params": "lp=1"}
        if rotation:
            video.set_display_rotation(rotation)
        audio_stream: av.AudioStream | None = None
        if audio:
            audio_codec = "libopus" if container.format.name in ("webm", "ogg") else "aac"
            added = container.add_stream(audio_codec, rate=48000)
            assert isinstance(added, av.AudioStream)
            audio_stream = added
            audio_stream.layout = "stereo"
        for t, _speed, rgb in iter_frames(shots, width, height, frame_times, seed):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None and soundtrack is not None:
            _write_samples(container, audio_stream, soundtrack, round(duration_s * SOUND_RATE))
        elif audio_stream is not None:
            _write_tone(container, audio_stream, duration_s, loud_intervals)
    speeds = []
    starts = np.cumsum([0.0] + [s.duration_s for s in shots])
    for t in frame_times:
        index = min(int(np.searchsorted(starts, t, side="right")) - 1, len(shots) - 1)
        speeds.append(shots[index].speed)
    return SyntheticVideo(
        path=path,
        duration_s=duration_s,
        fps=fps,
        width=width,
        height=height,
        cuts_s=[float(x) for x in starts[1:-1]],
        speed_at_frame=speeds,
        frame_times_s=list(frame_times),
    )


# The rate of soundtracks written into videos, and the samples a frame encodes.
SOUND_RATE = 48000
AUDIO_BLOCK = 1024


def _write_samples(
    container: av.container.OutputContainer, stream: av.AudioStream, mono: np.ndarray, total: int
) -> None:
    samples = np.zeros(total, np.float32)
    samples[: min(total, len(mono))] = mono[:total]
    blocks = (samples[s : s + AUDIO_BLOCK] for s in range(0, total, AUDIO_BLOCK))
    _encode_mono(container, stream, blocks)


def _encode_mono(
    container: av.container.OutputContainer, stream: av.AudioStream, blocks: Iterable[np.ndarray]
) -> None:
    """Encode consecutive mono blocks at SOUND_RATE as the stereo stream."""
    start = 0
    for block in blocks:
        frame = av.AudioFrame.from_ndarray(np.stack([block, block]), format="fltp",
                                           layout="stereo")  # fmt: skip
        frame.sample_rate = SOUND_RATE
        frame.pts = start
        start += len(block)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def spoken(text: str, words_per_minute: int = 150) -> np.ndarray:
    """`text` spoken by espeak-ng (a Debian package), mono float32 at SOUND_RATE, with the
    silence it adds before and after cut away."""
    import shutil
    import subprocess

    from services.media.audio import decode_audio_bytes

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng; "
                           "./dev.sh setup installs it)")  # fmt: skip
    wav = subprocess.run([espeak, "--stdout", "-s", str(words_per_minute), text],
                         check=True, capture_output=True).stdout  # fmt: skip
    voice = decode_audio_bytes(wav, SOUND_RATE).mean(axis=1)
    loud = np.flatnonzero(np.abs(voice) > 0.01)
    return voice[loud[0] : loud[-1] + 1] if loud.size else voice[:0]


def door_slam(seed: int = 0) -> np.ndarray:
    """A loud non-speech hit: a low thump and a burst of noise, decaying within 0.4 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(0.4 * SOUND_RATE)) / SOUND_RATE
    thump = np.sin(2 * math.pi * 60.0 * t) * np.exp(-t / 0.08)
    crack = rng.standard_normal(len(t)) * np.exp(-t / 0.03)
    return (0.8 * (0.6 * thump + 0.4 * crack)).astype(np.float32)


def speech_track(
    duration_s: float,
    lines: Sequence[tuple[float, str]],
    hits: Sequence[float] = (),
    bed_level: float = 0.0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A soundtrack with `lines` spoken from their start times, door slams at `hits`, and
    optionally a quiet noise bed; returns it and the true speech intervals (where each line's
    voice starts and ends)."""
    track = np.zeros(round(duration_s * SOUND_RATE), np.float32)
    if bed_level:
        track += bed_level * np.random.default_rng(1).standard_normal(len(track)).astype(np.float32)
    truth = []
    for start_s, text in lines:
        voice = 0.5 * spoken(text)
        first = round(start_s * SOUND_RATE)
        end = min(len(track), first + len(voice))
        track[first:end] += voice[: end - first]
        truth.append((start_s, end / SOUND_RATE))
    for hit_s in hits:
        slam = door_slam()
        first = round(hit_s * SOUND_RATE)
        end = min(len(track), first + len(slam))
        track[first:end] += slam[: end - first]
    return track, truth


def _write_tone(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    duration_s: float,
    loud_intervals: Sequence[tuple[float, float]],
) -> None:
    """A quiet 220 Hz tone, or loud warbles in `loud_intervals` and silence elsewhere."""
    total = round(duration_s * SOUND_RATE)

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, total, AUDIO_BLOCK):
            n = min(AUDIO_BLOCK, total - start)
            t = (np.arange(start, start + n) / SOUND_RATE).astype(np.float32)
            if not loud_intervals:
                yield (0.1 * np.sin(2 * math.pi * 220.0 * t)).astype(np.float32)
                continue
            inside = np.zeros(n, dtype=bool)
            for begin, end in loud_intervals:
                inside |= (t >= begin) & (t < end)
            # A 220 Hz tone wobbling at syllable rate, like a voice.
            warble = 0.5 + 0.5 * np.sin(2 * math.pi * 4.0 * t)
            yield (0.4 * warble * np.sin(2 * math.pi * 220.0 * t) * inside).astype(np.float32)

    _encode_mono(container, stream, blocks())


def sample_shots() -> list[Shot]:
    """The README's sample: 20 s of calm, busy and closing shots."""
    return [
        Shot(4.0, speed=0.05, hue=0.58, brightness=0.35, saturation=0.4),
        Shot(3.0, speed=0.15, hue=0.08, brightness=0.6, saturation=0.7),
        Shot(2.5, speed=0.6, hue=0.95, brightness=0.75, saturation=0.8),
        Shot(2.0, speed=0.9, hue=0.3, brightness=0.8, saturation=0.8),
        Shot(3.5, speed=0.4, hue=0.12, brightness=0.7, saturation=0.6),
        Shot(5.0, speed=0.03, hue=0.62, brightness=0.3, saturation=0.3, fade_in_frames=12),
    ]


# One long take per pan speed (frame widths per second), in shuffled order.
MOTION_SPEEDS = (0.4, 0.0, 1.2, 0.1, 0.7, 0.25, 1.6, 0.05, 0.9, 0.55)


def motion_shots() -> list[Shot]:
    """The motion reference: 2 s per speed of MOTION_SPEEDS, hard cuts between."""
    return [
        Shot(2.0, speed=speed, hue=(0.1 * i) % 1.0, brightness=0.55)
        for i, speed in enumerate(MOTION_SPEEDS)
    ]


def accuracy_shots() -> list[Shot]:
    """The cut-accuracy reference: shots of varied length, colour, brightness and speed."""
    return [
        Shot(1.6, speed=0.05, hue=0.00, brightness=0.55),
        Shot(2.3, speed=0.30, hue=0.35, brightness=0.45),
        Shot(1.1, speed=0.10, hue=0.62, brightness=0.70),
        Shot(2.9, speed=0.60, hue=0.15, brightness=0.35),
        Shot(1.4, speed=0.00, hue=0.80, brightness=0.60),
        Shot(2.0, speed=0.20, hue=0.50, brightness=0.80),
        Shot(1.7, speed=0.90, hue=0.05, brightness=0.40),
        Shot(2.6, speed=0.15, hue=0.70, brightness=0.50),
        Shot(1.2, speed=0.45, hue=0.28, brightness=0.65),
        Shot(1.9, speed=0.05, hue=0.92, brightness=0.30),
        Shot(2.2, speed=0.70, hue=0.42, brightness=0.75),
        Shot(1.5, speed=0.25, hue=0.10, brightness=0.50),
    ]


def beat_shots() -> list[Shot]:
    """The beat reference: ten shots of 2.5 to 6 s with lively motion, about 45 s in all."""
    rng = np.random.default_rng(3)
    return [
        Shot(
            float(rng.uniform(2.5, 6.0)),
            speed=float(rng.uniform(0.2, 0.9)),
            hue=float(rng.random()),
            brightness=0.6,
        )
        for _ in range(10)
    ]
