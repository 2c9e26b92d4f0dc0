"""The gateway's delivery: every check a request can fail on its own terms (run before any
work), mastering, and the outputs, written under temporary names and renamed only when all of
them are complete, so a failure leaves no partial file behind.

The gateway service and the in-process `bgm score` (services/pipeline.py) share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.config import RequestLimits, SpeechDuckingConfig
from services.domain import (
    GeneratedMusic,
    GeneratorInfo,
    OutputOptions,
    UserControls,
    VideoAnalysis,
)
from services.edge import check_work
from services.errors import BgmError, InvalidInputError
from services.gateway.controls import validate_controls
from services.gateway.mastering import (
    CHUNK,
    LoudnessReport,
    Mastered,
    SpeechDucking,
    db,
    limit_again,
    master,
    streamed_true_peak,
)
from services.gateway.outputs import (
    STEM_TAGS,
    check_output_paths,
    check_within,
    staged_outputs,
)
from services.media.audio import (
    audio_blocks,
    check_stream_copy,
    decode_audio,
    mux_into_video,
    output_kind,
    write_audio_file,
)
from services.media.video import VideoProbe, probe_video
from services.rules import NOT_OFFERED, check_structure, speech_handling
from services.vocabulary import Vocabulary

LUFS_LIMITS = (-40.0, -5.0)
# True-peak ceilings: lossy encoders (MP3, AAC, Opus) overshoot the PCM they are given, by up
# to about a dB on music with sharp attacks (Opus on a crash), so their ceiling leaves room
# for it, as streaming services ask of lossy masters; either way the file stays at or under
# -1 dBTP. A lossy file is measured as it decodes, and where the encoder went further (AAC
# by 1.5-2.4 dB on a door slam in the video's own sound: -0.6 dBTP), the master is limited
# again under a ceiling lower by what it went over and this margin, at the same loudness,
# and encoded again, at most ENCODINGS times.
LOSSLESS_CEILING_DBTP = -1.0
LOSSY_CEILING_DBTP = -2.0
LOSSLESS_SUFFIXES = (".wav", ".flac")
ENCODER_MARGIN_DB = 0.3
ENCODINGS = 3


# The rate music comes at where none is asked for and the generator makes it.
DEFAULT_SAMPLE_RATE = 48000


def with_default_rate(options: OutputOptions, info: GeneratorInfo) -> OutputOptions:
    """`options` at the rate asked for, else at DEFAULT_SAMPLE_RATE where the generator makes
    it, else at the generator's first (a client that always sent 48000 had been refused by
    every generator that makes another rate)."""
    if options.sample_rate:
        return options
    rates = info.sample_rates
    rate = DEFAULT_SAMPLE_RATE if DEFAULT_SAMPLE_RATE in rates else rates[0]
    return dataclasses.replace(options, sample_rate=rate)


def validate_options(options: OutputOptions, sample_rates: tuple[int, ...]) -> None:
    check_output_paths(options)
    if options.sample_rate not in sample_rates:
        raise InvalidInputError(
            f"sample rate {options.sample_rate} is not supported; choose "
            f"{' or '.join(map(str, sample_rates))}",
            field="output.sample_rate", error_reason=NOT_OFFERED,
        )  # fmt: skip
    low, high = LUFS_LIMITS
    if not low <= options.lufs <= high:
        raise InvalidInputError(
            f"loudness target {options.lufs:.10g} LUFS is outside {low:g}..{high:g}",
            field="output.loudness_lufs",
        )


@dataclass(frozen=True)
class CheckedRequest:
    # The controls as the vocabulary names them.
    controls: UserControls
    # The video's length, as its container states it.
    duration_s: float


def check_request(
    video: Path,
    controls: UserControls,
    options: OutputOptions,
    info: GeneratorInfo,
    vocabulary: Vocabulary,
    limits: RequestLimits,
    heartbeat: Callable[[], None],
) -> CheckedRequest:
    """Everything that can be refused on the request's own terms, before any work;
    `heartbeat` is called while the video's length is read (it raises to cancel)."""
    controls = check_asked(controls, options, info, vocabulary, limits)
    return CheckedRequest(controls, check_video(video, controls, options, info, limits, heartbeat))


def check_asked(
    controls: UserControls,
    options: OutputOptions,
    info: GeneratorInfo,
    vocabulary: Vocabulary,
    limits: RequestLimits,
) -> UserControls:
    """What check_request refuses without reading the video (at once: no file is read); the
    controls as the vocabulary names them."""
    if len(controls.reference_audio) > limits.max_reference_bytes:
        raise InvalidInputError(
            f"the reference audio is {len(controls.reference_audio)} bytes; at most "
            f"{limits.max_reference_bytes}"
        )
    controls = validate_controls(controls, vocabulary)
    check_structure(controls.structure, info, "controls.structure")
    check_offered(controls, info)
    validate_options(with_default_rate(options, info), info.sample_rates)
    if options.stems_dir is not None and options.stems_dir.is_dir():
        # Found only when the music was written, a folder where a stem goes had let a
        # tenant have the generators again and again, each Score refused after its music.
        for name in info.instruments:
            if (options.stems_dir / f"{name}.wav").is_dir():
                raise InvalidInputError(f"{name}.wav: a folder is where the {name} stem goes",
                                        field="output.stems")  # fmt: skip
    for asked, output, field in ((options.midi, "midi", "output.midi"),
                                 (options.stems_dir, "stems", "output.stems")):  # fmt: skip
        if asked is not None and output not in info.outputs:
            raise InvalidInputError(
                f"the {info.name} generator makes no {output} (it makes "
                f"{', '.join(info.outputs) or 'nothing it names'})",
                field=field, error_reason=NOT_OFFERED,
            )  # fmt: skip
    return controls


def check_video(
    video: Path,
    controls: UserControls,
    options: OutputOptions,
    info: GeneratorInfo,
    limits: RequestLimits,
    heartbeat: Callable[[], None],
) -> float:
    """What check_request refuses by the video (its length, its streams: reading them takes
    seconds for a long MPEG-TS); its length as its container states it."""
    probe = probe_video(video, heartbeat=heartbeat)
    check_streams(probe, controls, options, limits)
    if probe.duration_s > info.max_duration_s:
        raise InvalidInputError(
            f"{video.name} lasts {probe.duration_s:.1f} s; the {info.name} generator makes "
            f"at most {info.max_duration_s:g} s"
        )
    return probe.duration_s


def check_streams(
    probe: VideoProbe, controls: UserControls, options: OutputOptions, limits: RequestLimits
) -> None:
    """What the video's streams and length refuse, whatever generator makes the music (the
    command line asks before its models load)."""
    if output_kind(options.output) == "video":
        try:
            check_stream_copy(probe, options.output)
        except InvalidInputError as error:
            raise InvalidInputError(str(error), field="output.format") from None
    # With stems, a piece holds at least one stem beside its mix (the generator, which knows
    # its band, counts them all before it composes).
    check_work(probe.duration_s, controls.candidates, limits,
               tracks=2 if options.stems_dir is not None else 1)  # fmt: skip
    if options.keep_original_audio and not probe.has_audio:
        raise InvalidInputError(f"{probe.path.name} has no audio track to keep",
                                field="output.keep_original_audio")  # fmt: skip


def check_offered(controls: UserControls, info: GeneratorInfo) -> None:
    """Refuse, before any work, what the caller asked that the generator does not offer: a
    genre or an instrument it does not play (another team's generator may play fewer than
    the vocabulary names), more candidates than it makes."""
    if info.max_candidates is not None and controls.candidates > info.max_candidates:
        raise InvalidInputError(
            f"the {info.name} generator makes at most {info.max_candidates} candidates for a "
            f"request, not {controls.candidates}",
            field="controls.candidates", error_reason=NOT_OFFERED,
        )  # fmt: skip
    asked_of = (("genre", controls.genres, info.genres),
                ("instrument", controls.instruments, info.instruments))  # fmt: skip
    for kind, asked, offered in asked_of:
        unplayed = [name for name in asked if name not in offered]
        if unplayed:
            raise InvalidInputError(
                f"the {info.name} generator does not play {kind} {', '.join(unplayed)}; it "
                f"plays {', '.join(offered)}",
                field=f"controls.{kind}s", error_reason=NOT_OFFERED,
            )  # fmt: skip


def speech_ducking(
    analysis: VideoAnalysis, controls: UserControls, options: OutputOptions,
    config: SpeechDuckingConfig,
) -> SpeechDucking | None:  # fmt: skip
    """How the music ducks for this request: under the video's speech (none where it has no
    speech or the mode does not duck, and none with speech "off": the music keeps its level
    under the kept sound, where it had ducked by the sound's level, deeper than "duck" and at
    every door slam), or None for the level-keyed ducking of a kept original sound when a
    tagger did not listen."""
    if controls.speech == "off":
        return SpeechDucking([], config.depth_db, config.lookahead_s, config.release_s,
                             config.carve)  # fmt: skip
    if not analysis.loudness.values:
        return None
    handling = speech_handling(controls.speech, bool(analysis.speech), options.keep_original_audio)
    intervals = list(analysis.speech) if handling.duck else []
    return SpeechDucking(intervals, config.depth_db, config.lookahead_s, config.release_s,
                         config.carve)  # fmt: skip


def master_music(
    video: Path,
    music: GeneratedMusic,
    options: OutputOptions,
    heartbeat: Callable[[], None],
    speech: SpeechDucking | None = None,
) -> Mastered:
    """Loudness, true peak and (if asked) the original sound under the music, ducked as
    `speech` says, mastered over `music.audio` (nothing reads it after: a two-hour piece's
    mastering had held a copy more, 2.8 GB); `heartbeat` is called often (it raises to
    cancel)."""
    lossless = options.output.suffix.lower() in LOSSLESS_SUFFIXES
    return master(
        music.audio,
        music.sample_rate,
        options.lufs,
        true_peak_limit_db=LOSSLESS_CEILING_DBTP if lossless else LOSSY_CEILING_DBTP,
        # Not kept here: mastering lets it go once it is mixed in.
        original=_original_sound(video, music, heartbeat) if options.keep_original_audio else None,
        heartbeat=heartbeat,
        speech=speech,
        in_place=True,
    )


def _original_sound(
    video: Path, music: GeneratedMusic, heartbeat: Callable[[], None]
) -> np.ndarray:
    """The video's own sound, decoded at the music's rate and length."""
    try:
        original = decode_audio(video, music.sample_rate, len(music.audio), heartbeat)
    except InvalidInputError as error:
        # The sound asked for cannot be kept (its stamps put none of it in the picture, it
        # changes rate part-way, ...): the request's field says which ask it was.
        raise InvalidInputError(str(error), field="output.keep_original_audio") from None
    if original is None:
        raise InvalidInputError(f"{video.name} has no audio track to keep",
                                field="output.keep_original_audio")  # fmt: skip
    return original


def write_outputs(
    video: Path,
    music: GeneratedMusic,
    mastered: Mastered,
    options: OutputOptions,
    heartbeat: Callable[[], None],
) -> tuple[list[Path], LoudnessReport]:
    """Write every output, all or nothing, and report the loudness as written; `heartbeat`
    is called often (it raises to cancel, and then nothing is left). Each stem takes the
    mastering's gain in place (limited again with the mix where a lossy encoder overshot)."""
    with staged_outputs(options.replace_existing, options.within) as staging:
        staged = staging.files
        if options.make_folder:
            with writing("output", options.output):
                staging.make_folder(options.output.parent)
        check_within(options.output, options.within)
        temporary = staging.temporary(options.output)
        with writing("output", options.output):
            report = _write_music(video, temporary, mastered, music.sample_rate,
                                  options.output, heartbeat)  # fmt: skip
        if options.midi is not None:
            check_within(options.midi, options.within)
            midi_temporary = staging.temporary(options.midi)
            with writing("MIDI file", options.midi):
                midi_temporary.write_bytes(music.midi)
        if options.stems_dir is not None:
            with writing("stems folder", options.stems_dir):
                staging.make_folder(options.stems_dir)
            for name, stem in music.stems.items():
                final = options.stems_dir / f"{name}.wav"
                check_within(final, options.within)
                stem_temporary = staging.temporary(final)
                np.multiply(stem, mastered.music_gain[:, None], out=stem)
                with writing("stem", final):
                    # In float: a part may peak over full scale where the mix it sums to
                    # does not (lo-fi's drums at +4 dBFS under a -1 dBTP master had been
                    # clipped in 16 bits, and the stems no longer summed to the mix).
                    write_audio_file(stem_temporary, stem, music.sample_rate, heartbeat,
                                     STEM_TAGS, float_wav=True)  # fmt: skip
    return [final for _, final in staged], report


def _write_music(
    video: Path,
    temporary: Path,
    mastered: Mastered,
    rate: int,
    output: Path,
    heartbeat: Callable[[], None],
) -> LoudnessReport:
    """The mastered music into `temporary` (an audio file, or muxed into the video), held
    under -1 dBTP as it decodes; the report as written."""
    for _ in range(ENCODINGS):
        if output_kind(output) == "audio":
            write_audio_file(temporary, mastered.audio, rate, heartbeat)
        else:
            mux_into_video(video, temporary, mastered.audio, rate, heartbeat)
        if output.suffix.lower() in LOSSLESS_SUFFIXES:
            return mastered.report
        blocks = audio_blocks(temporary, rate, CHUNK, heartbeat)
        peak_db = db(streamed_true_peak(blocks, heartbeat))
        if peak_db <= LOSSLESS_CEILING_DBTP:
            return dataclasses.replace(mastered.report, true_peak_dbtp=round(peak_db, 2))
        over_db = peak_db - LOSSLESS_CEILING_DBTP + ENCODER_MARGIN_DB
        mastered = limit_again(mastered, rate, mastered.report.true_peak_dbtp - over_db,
                               heartbeat)  # fmt: skip
    raise BgmError(f"the {output.suffix} encoder kept the music over -1 dBTP after "
                   f"{ENCODINGS} encodings (last {peak_db:.1f} dBTP)")  # fmt: skip


@contextlib.contextmanager
def writing(what: str, path: Path) -> Iterator[None]:
    """A place that passed the checks and still takes no file (to root, /proc): said as a
    failure to write the output, by its name (not its temporary one, nor its folder, which
    in a server is the server's), not as a crash. A full disk stays what it is."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise
        reason = error.strerror or error
        if not path.parent.is_dir():
            # Its folder made a file, or taken away, while the music was made: the caller's
            # place, said to the caller (it had been an INTERNAL error, its reason in the log).
            raise InvalidInputError(f"cannot write {what} {path.name}: {reason} (its folder "
                                    "was changed while the music was made)",
                                    field="output.output_uri") from error  # fmt: skip
        raise BgmError(f"cannot write {what} {path.name}: {reason}",
                       error_reason="OUTPUT_NOT_WRITTEN") from error  # fmt: skip
