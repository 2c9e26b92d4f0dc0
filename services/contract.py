"""Conversions between the domain types and the bgm.v1 protobuf messages.

Protobuf stays at the edges: servicers and gRPC clients call these, nothing else does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal, cast

import numpy as np

from services.domain import (
    CandidateScore,
    Cut,
    CutAlignment,
    GeneratorInfo,
    LevelCurve,
    Look,
    MotionCurve,
    MusicBrief,
    MusicPlan,
    MusicTags,
    PlannedSection,
    Segment,
    Semantics,
    SpeechInterval,
    TagOrigin,
    TagSource,
    UserControls,
    VideoAnalysis,
)
from services.errors import BgmError, DownstreamError, InvalidInputError, ResourceExhaustedError
from services.gen.bgm.v1 import common_pb2 as pb
from services.gen.bgm.v1 import gateway_pb2, generator_pb2
from services.media.sources import SourcePolicy, fetch_off_loop, parse_uri

# Audio travels in chunks of this many samples per channel (about a second at 48 kHz:
# 384 KB of stereo float32, well under any message limit).
AUDIO_CHUNK_SAMPLES = 48000


def _inverse(table: Mapping[str, int]) -> dict[int, str]:
    return {value: key for key, value in table.items()}


_CUT_KINDS = {"hard": pb.CUT_KIND_HARD, "fade": pb.CUT_KIND_FADE}
_TAG_KINDS = {"genre": pb.TAG_KIND_GENRE, "mood": pb.TAG_KIND_MOOD,
              "instrument": pb.TAG_KIND_INSTRUMENT}  # fmt: skip
_TAG_SOURCES = {"picture": pb.TAG_SOURCE_PICTURE, "prompt": pb.TAG_SOURCE_PROMPT,
                "both": pb.TAG_SOURCE_BOTH, "user": pb.TAG_SOURCE_USER,
                "vlm": pb.TAG_SOURCE_VLM}  # fmt: skip
_CUT_KIND_NAMES = _inverse(_CUT_KINDS)
_TAG_KIND_NAMES = _inverse(_TAG_KINDS)
_TAG_SOURCE_NAMES = _inverse(_TAG_SOURCES)
# Output file extension <-> the gateway's OutputFormat (unspecified = MP4).
OUTPUT_FORMATS = {
    ".wav": gateway_pb2.OUTPUT_FORMAT_WAV,
    ".flac": gateway_pb2.OUTPUT_FORMAT_FLAC,
    ".mp3": gateway_pb2.OUTPUT_FORMAT_MP3,
    ".ogg": gateway_pb2.OUTPUT_FORMAT_OGG,
    ".mp4": gateway_pb2.OUTPUT_FORMAT_MP4,
    ".mov": gateway_pb2.OUTPUT_FORMAT_MOV,
    ".mkv": gateway_pb2.OUTPUT_FORMAT_MKV,
    ".webm": gateway_pb2.OUTPUT_FORMAT_WEBM,
}
OUTPUT_EXTENSIONS = {gateway_pb2.OUTPUT_FORMAT_UNSPECIFIED: ".mp4", **_inverse(OUTPUT_FORMATS)}


def look_to_proto(look: Look) -> pb.Look:
    return pb.Look(brightness=look.brightness, saturation=look.saturation, warmth=look.warmth,
                   contrast=look.contrast)  # fmt: skip


def look_from_proto(message: pb.Look) -> Look:
    return Look(message.brightness, message.saturation, message.warmth, message.contrast)


def cut_to_proto(cut: Cut) -> pb.Cut:
    return pb.Cut(time_s=cut.time_s, kind=_CUT_KINDS[cut.kind], strength=cut.strength)


def cut_from_proto(message: pb.Cut) -> Cut:
    kind = _CUT_KIND_NAMES.get(message.kind, "hard")
    return Cut(message.time_s, cast(Literal["hard", "fade"], kind), message.strength)


def segment_to_proto(segment: Segment) -> pb.Segment:
    return pb.Segment(start_s=segment.start_s, end_s=segment.end_s, energy=segment.energy,
                      look=look_to_proto(segment.look), moods=segment.moods,
                      thumbnail_jpeg=segment.thumbnail_jpeg, caption=segment.caption)  # fmt: skip


def segment_from_proto(message: pb.Segment) -> Segment:
    return Segment(message.start_s, message.end_s, message.energy, look_from_proto(message.look),
                   list(message.moods), bytes(message.thumbnail_jpeg),
                   message.caption)  # fmt: skip


def tags_to_proto(tags: MusicTags) -> pb.MusicTags:
    return pb.MusicTags(
        genres=tags.genres, moods=tags.moods, instruments=tags.instruments, bpm=tags.bpm,
        bpm_min=tags.bpm_min, bpm_max=tags.bpm_max, key=tags.key, energy=tags.energy,
        origins=[pb.TagOrigin(kind=_TAG_KINDS[o.kind], tag=o.tag,
                              source=_TAG_SOURCES[o.source], score=o.score)
                 for o in tags.origins],
    )  # fmt: skip


def tags_from_proto(message: pb.MusicTags) -> MusicTags:
    kinds, sources = _TAG_KIND_NAMES, _TAG_SOURCE_NAMES
    origins = [
        TagOrigin(cast(Literal["genre", "mood", "instrument"], kinds[o.kind]), o.tag,
                  cast(TagSource, sources.get(o.source, "picture")), o.score)
        for o in message.origins if o.kind in kinds
    ]  # fmt: skip
    return MusicTags(
        genres=list(message.genres), moods=list(message.moods),
        instruments=list(message.instruments), bpm=message.bpm, bpm_min=message.bpm_min,
        bpm_max=message.bpm_max, key=message.key, energy=message.energy, origins=origins,
    )  # fmt: skip


def analysis_to_proto(analysis: VideoAnalysis) -> pb.VideoAnalysis:
    return pb.VideoAnalysis(
        duration_s=analysis.duration_s, fps=analysis.fps, width=analysis.width,
        height=analysis.height, rotation=analysis.rotation, has_audio=analysis.has_audio,
        cuts=[cut_to_proto(c) for c in analysis.cuts],
        motion=pb.MotionCurve(hz=analysis.motion.hz, values=analysis.motion.values),
        look=look_to_proto(analysis.look),
        segments=[segment_to_proto(s) for s in analysis.segments],
        tags=tags_to_proto(analysis.tags), description=analysis.description,
        backend=analysis.backend, warnings=analysis.warnings,
        semantics=pb.Semantics(
            source=analysis.semantics.source, model=analysis.semantics.model,
            fallback_reason=analysis.semantics.fallback_reason,
            scene=analysis.semantics.scene, unmapped=analysis.semantics.unmapped),
        speech=[pb.SpeechInterval(start_s=i.start_s, end_s=i.end_s) for i in analysis.speech],
        loudness=pb.LevelCurve(hz=analysis.loudness.hz, values=analysis.loudness.values),
    )  # fmt: skip


def analysis_from_proto(message: pb.VideoAnalysis) -> VideoAnalysis:
    return VideoAnalysis(
        duration_s=message.duration_s, fps=message.fps, width=message.width,
        height=message.height, rotation=message.rotation, has_audio=message.has_audio,
        cuts=[cut_from_proto(c) for c in message.cuts],
        motion=MotionCurve(message.motion.hz, list(message.motion.values)),
        look=look_from_proto(message.look),
        segments=[segment_from_proto(s) for s in message.segments],
        tags=tags_from_proto(message.tags), description=message.description,
        backend=message.backend, warnings=list(message.warnings),
        semantics=Semantics(
            source=message.semantics.source or "picture", model=message.semantics.model,
            fallback_reason=message.semantics.fallback_reason, scene=message.semantics.scene,
            unmapped=list(message.semantics.unmapped)),
        speech=[SpeechInterval(i.start_s, i.end_s) for i in message.speech],
        loudness=LevelCurve(message.loudness.hz, list(message.loudness.values)),
    )  # fmt: skip


def controls_to_proto(controls: UserControls) -> pb.UserControls:
    message = pb.UserControls(genres=controls.genres, moods=controls.moods,
                              instruments=controls.instruments, negative=controls.negative,
                              prompt=controls.prompt, seed=controls.seed,
                              structure=controls.structure,
                              reference_audio=controls.reference_audio,
                              candidates=controls.candidates,
                              speech=controls.speech)  # fmt: skip
    if controls.bpm is not None:
        message.bpm = controls.bpm
    if controls.key is not None:
        message.key = controls.key
    return message


def controls_from_proto(message: pb.UserControls) -> UserControls:
    return UserControls(
        genres=list(message.genres), moods=list(message.moods),
        instruments=list(message.instruments),
        bpm=message.bpm if message.HasField("bpm") else None,
        key=message.key if message.HasField("key") else None,
        negative=list(message.negative), prompt=message.prompt, seed=message.seed,
        structure=message.structure or "free", reference_audio=message.reference_audio,
        candidates=message.candidates or 1, speech=message.speech or "auto",
    )  # fmt: skip


def brief_to_proto(brief: MusicBrief) -> pb.MusicBrief:
    return pb.MusicBrief(
        tags=tags_to_proto(brief.tags), segments=[segment_to_proto(s) for s in brief.segments],
        cuts=[cut_to_proto(c) for c in brief.cuts], duration_s=brief.duration_s,
        sample_rate=brief.sample_rate, seed=brief.seed, bpm_is_fixed=brief.bpm_is_fixed,
        key_is_fixed=brief.key_is_fixed, negative=brief.negative, structure=brief.structure,
        reference_audio=brief.reference_audio, prompt=brief.prompt,
        speech=[pb.SpeechInterval(start_s=i.start_s, end_s=i.end_s) for i in brief.speech],
    )  # fmt: skip


def brief_from_proto(message: pb.MusicBrief, stems: bool) -> MusicBrief:
    return MusicBrief(
        tags=tags_from_proto(message.tags),
        segments=[segment_from_proto(s) for s in message.segments],
        cuts=[cut_from_proto(c) for c in message.cuts], duration_s=message.duration_s,
        sample_rate=message.sample_rate or 48000, seed=message.seed,
        bpm_is_fixed=message.bpm_is_fixed, key_is_fixed=message.key_is_fixed,
        negative=list(message.negative), stems=stems,
        structure=message.structure or "free", reference_audio=message.reference_audio,
        prompt=message.prompt,
        speech=[SpeechInterval(i.start_s, i.end_s) for i in message.speech],
    )  # fmt: skip


def ranking_to_proto(scores: list[CandidateScore]) -> list[pb.CandidateScore]:
    return [
        pb.CandidateScore(
            candidate=s.candidate,
            rank=s.rank,
            score=s.score,
            tempo_fit=s.tempo_fit,
            cut_accent=s.cut_accent,
            energy_follow=s.energy_follow,
        )
        for s in scores
    ]


def ranking_from_proto(messages: Iterable[pb.CandidateScore]) -> list[CandidateScore]:
    return [
        CandidateScore(candidate=m.candidate, rank=m.rank, score=m.score, tempo_fit=m.tempo_fit,
                       cut_accent=m.cut_accent if m.HasField("cut_accent") else None,
                       energy_follow=m.energy_follow if m.HasField("energy_follow") else None)
        for m in messages
    ]  # fmt: skip


def plan_to_proto(plan: MusicPlan) -> pb.MusicPlan:
    a = plan.alignment
    return pb.MusicPlan(
        bpm=plan.bpm, key=plan.key, beats_s=plan.beats_s, bars_s=plan.bars_s,
        sections=[pb.PlannedSection(
            start_s=s.start_s, end_s=s.end_s, role=s.role, bpm=s.bpm, first_beat=s.first_beat,
            beat_count=s.beat_count, energy=s.energy, intensity=s.intensity,
            instruments=s.instruments, chords=s.chords, key=s.key, material=s.material,
            thinning=s.thinning)
            for s in plan.sections],
        alignment=pb.CutAlignment(cut_count=a.cut_count, on_beat_count=a.on_beat_count,
                                  on_bar_count=a.on_bar_count, median_ms=a.median_ms,
                                  worst_ms=a.worst_ms),
        ending=plan.ending, final_chord_s=plan.final_chord_s, genre=plan.genre,
        instruments=plan.instruments, meter=plan.meter,
    )  # fmt: skip


def plan_from_proto(message: pb.MusicPlan) -> MusicPlan:
    a = message.alignment
    return MusicPlan(
        bpm=message.bpm, key=message.key, beats_s=list(message.beats_s),
        bars_s=list(message.bars_s),
        sections=[PlannedSection(
            start_s=s.start_s, end_s=s.end_s, role=s.role, bpm=s.bpm, first_beat=s.first_beat,
            beat_count=s.beat_count, energy=s.energy, intensity=s.intensity,
            instruments=list(s.instruments), chords=list(s.chords), key=s.key,
            material=s.material, thinning=s.thinning) for s in message.sections],
        alignment=CutAlignment(a.cut_count, a.on_beat_count, a.on_bar_count, a.median_ms,
                               a.worst_ms),
        ending=message.ending, final_chord_s=message.final_chord_s, genre=message.genre,
        instruments=list(message.instruments), meter=message.meter or "4/4",
    )  # fmt: skip


def generator_info_from_proto(message: generator_pb2.GeneratorDescribeResponse) -> GeneratorInfo:
    """A generator's description; a count of candidates of 0 is one it does not state."""
    return GeneratorInfo(
        name=message.name, version=message.version, max_duration_s=message.max_duration_s,
        sample_rates=tuple(message.sample_rates), outputs=tuple(message.outputs),
        genres=tuple(message.genres), instruments=tuple(message.instruments),
        structures=tuple(message.structures) or ("free",), sound=message.sound,
        sound_advice=message.sound_advice, max_candidates=message.max_candidates or None,
    )  # fmt: skip


def audio_chunks(audio: np.ndarray, sample_rate: int) -> Iterator[pb.AudioChunk]:
    """Stereo float32 audio as a series of AudioChunk messages."""
    total = len(audio)
    for start in range(0, max(total, 1), AUDIO_CHUNK_SAMPLES):
        part = np.ascontiguousarray(audio[start : start + AUDIO_CHUNK_SAMPLES], dtype="<f4")
        yield pb.AudioChunk(sample_rate=sample_rate, channels=audio.shape[1],
                            pcm_f32le=part.tobytes(), first_sample=start,
                            total_samples=total)  # fmt: skip


# The largest sample a generator may send: 120 dB over full scale, which mastering still
# brings to its loudness (a generator that sends 16-bit values as floats, +-32767, is mastered
# as any other). Past it the meters' sums had overflowed: 3e38 came out silent, "-inf LUFS".
MAX_SAMPLE = 1e6


class AudioAssembler:
    """Collects AudioChunk messages back into one (samples x 2) float32 array: the stereo
    music a brief asked for, so every chunk must carry its sample rate and exact length, fit
    inside it and follow the one before (chunks come in order, each sample once: `what`
    names the audio in the DownstreamError that refuses a chunk that does not, before
    anything is allocated for it), and the last must end it."""

    CHANNELS = 2

    def __init__(self, what: str, sample_rate: int, total_samples: int):
        self.what = what
        self.sample_rate = sample_rate
        self.total_samples = total_samples
        self.audio: np.ndarray | None = None
        self.received = 0

    def add(self, chunk: pb.AudioChunk) -> None:
        shape = (chunk.sample_rate, chunk.total_samples, chunk.channels)
        if shape != (self.sample_rate, self.total_samples, self.CHANNELS):
            raise DownstreamError(
                f"{self.what}: {chunk.total_samples} samples of {chunk.channels} channels at "
                f"{chunk.sample_rate} Hz, not the brief's {self.total_samples} of "
                f"{self.CHANNELS} at {self.sample_rate} Hz"
            )
        frame = 4 * self.CHANNELS
        count = len(chunk.pcm_f32le) // frame
        if len(chunk.pcm_f32le) % frame or not (
            0 <= chunk.first_sample <= self.total_samples - count
        ):
            raise DownstreamError(
                f"{self.what}: a chunk of {len(chunk.pcm_f32le)} bytes at sample "
                f"{chunk.first_sample} does not fit its {self.total_samples} samples"
            )
        # A chunk sent twice or one skipped had been delivered as silence, the call OK.
        if chunk.first_sample != self.received:
            raise DownstreamError(
                f"{self.what}: a chunk at sample {chunk.first_sample} where sample "
                f"{self.received} came next (chunks come in order, each sample once)"
            )
        part = np.frombuffer(chunk.pcm_f32le, dtype="<f4").reshape(-1, self.CHANNELS)
        if not np.isfinite(part).all():
            raise DownstreamError(f"{self.what}: samples that are not numbers")
        if count and np.abs(part).max() > MAX_SAMPLE:
            raise DownstreamError(f"{self.what}: samples past {MAX_SAMPLE:g} (full scale is 1)")
        if self.audio is None:
            self.audio = np.zeros((self.total_samples, self.CHANNELS), dtype=np.float32)
        self.audio[chunk.first_sample : chunk.first_sample + count] = part
        self.received += count

    def result(self) -> np.ndarray:
        if self.audio is None:
            raise DownstreamError(f"{self.what}: none was sent")
        if self.received < self.total_samples:
            # Its stream had ended early and the rest been delivered as silence.
            raise DownstreamError(
                f"{self.what}: it ended at sample {self.received} of {self.total_samples}"
            )
        return self.audio


# A staged file keeps its name's extension (decoders read it as a hint) when it is this
# short and plain; anything else is staged as ".video".
STAGED_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def staged_suffix(name: str) -> str:
    """The extension a staged copy of `name` gets: a caller's file name cannot make the
    server's path too long or carry a NUL or a separator into it."""
    suffix = Path(name.replace("\x00", "")).suffix
    return suffix if STAGED_SUFFIX.fullmatch(suffix) else ".video"


def staged_name(name: str, default: str) -> str:
    """The name a staged copy of the caller's file `name` gets, so that messages name the
    video as the caller knows it: its base name's plain characters (at most 64 of them and
    128 bytes: a file name holds 255 bytes, and 64 letters outside the BMP are 256), no
    leading dot, else `default`, and staged_suffix's extension."""
    stem = Path(Path(name.replace("\x00", "")).name).stem
    plain = re.sub(r"[^\w.() -]", "_", stem).lstrip(".")[:64]
    plain = plain.encode()[:128].decode(errors="ignore")
    return f"{plain or default}{staged_suffix(name)}"


async def local_video(
    source: pb.VideoSource, policy: SourcePolicy, folder: Path, max_inline_bytes: int
) -> Path:
    """The video a request names, as a local file: an allowed file:// URI's own file, or a
    copy in `folder` (the caller removes it) of what another URI or the inline bytes hold
    (at most `max_inline_bytes`, the upload limit)."""
    which = source.WhichOneof("source")
    name = source.file_name or parse_uri(source.uri).path
    if which == "uri":
        try:
            return await fetch_off_loop(source.uri, policy, folder / staged_name(name, "source"))
        except BgmError as error:
            # Whatever is wrong with the source, it is the URI's.
            error.field = error.field or "video.uri"
            raise
    if which == "data":
        # Read once: each read of the field copies its bytes, on the event loop.
        data = source.data
        if len(data) > max_inline_bytes:
            raise ResourceExhaustedError(
                f"inline video of {len(data)} bytes is over the upload limit of {max_inline_bytes}",
                field="video.data",
                error_reason="UPLOAD_TOO_LARGE",
            )
        path = folder / staged_name(name, "upload")
        await asyncio.to_thread(path.write_bytes, data)
        return path
    raise InvalidInputError("the request names no video (set video.uri or video.data)",
                            field="video")  # fmt: skip
