"""What requests, analyses and briefs must satisfy, shared by the services: the gateway
checks a user's controls and a tagger's analysis by them, the generator checks a brief by
them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from services.domain import (
    CandidateScore,
    GeneratorInfo,
    LevelCurve,
    MotionCurve,
    MusicBrief,
    MusicPlan,
    MusicTags,
    VideoAnalysis,
)
from services.edge import CONTROL
from services.errors import InvalidInputError
from services.vocabulary import Vocabulary

# Tempo a user or a brief may ask for, beats per minute.
BPM_LIMITS = (30.0, 300.0)
# How the music is laid out (see UserControls.structure in the protos).
STRUCTURES = ("free", "composer", "reference")
# Pieces one request may have generated and ranked.
MAX_CANDIDATES = 4
# A cut this close to a beat (or bar line) counts as on it, seconds: a plan puts the cuts it
# can within it, and the composer plays such a cut's hit on the beat. About what a listener
# hears as together (beat trackers allow 50 ms).
ON_BEAT_S = 0.025
# How the music makes room for speech (see UserControls.speech in the protos).
SPEECH_MODES = ("auto", "duck", "arrange", "off")


def check_candidates(count: int, field: str = "candidates") -> None:
    if not 1 <= count <= MAX_CANDIDATES:
        raise InvalidInputError(f"candidates must be 1..{MAX_CANDIDATES}, not {count}",
                                field=field)  # fmt: skip


# ErrorInfo's reason for what a request asks and the generator does not offer (a genre, an
# instrument, candidates, an output, a structure, a sample rate).
NOT_OFFERED = "NOT_OFFERED"


def check_structure(structure: str, info: GeneratorInfo, field: str) -> None:
    """Refuse a structure the generator cannot follow (asked in `field`)."""
    if structure not in info.structures:
        raise InvalidInputError(
            f"the {info.name} generator cannot follow structure {structure!r}; it follows "
            f"{', '.join(info.structures)}",
            field=field, error_reason=NOT_OFFERED,
        )  # fmt: skip


@dataclass(frozen=True)
class SpeechHandling:
    """What a speech mode does for a video: thin the arrangement under speech, and duck the
    music under speech (not under other loud sounds)."""

    arrange: bool
    duck: bool


def speech_handling(mode: str, has_speech: bool, keep_original_audio: bool) -> SpeechHandling:
    """ "auto" makes room (both ways) only where the voice will be heard with the music."""
    if not has_speech or mode == "off":
        return SpeechHandling(False, False)
    if mode == "auto":
        return SpeechHandling(keep_original_audio, keep_original_audio)
    return SpeechHandling(mode == "arrange", mode == "duck")


def speech_matters(mode: str, keep_original_audio: bool) -> bool:
    """Whether a video's speech, if it has any, would change the music or its mix."""
    handling = speech_handling(mode, True, keep_original_audio)
    return handling.arrange or handling.duck


# How far a segment's start may sit from where the one before ended (and the last's end from
# the duration): float seconds travel as doubles, but analyses round to microseconds.
TIMELINE_TOLERANCE_S = 1e-3


def check_timeline(timeline: MusicBrief | VideoAnalysis, name: str) -> None:
    """`name`'s segments tile [0, duration] in order, its cuts and speech lie inside it, and
    its segments' energies and looks and its cuts' strengths are in 0..1 (as the contract
    says)."""
    segments, end = timeline.segments, timeline.duration_s
    tolerance = TIMELINE_TOLERANCE_S
    for index, segment in enumerate(segments):
        field = f"{name}.segments[{index}]"
        before = segments[index - 1].end_s if index else 0.0
        if not segment.start_s < segment.end_s:
            raise InvalidInputError(f"{field} ends ({segment.end_s:g} s) before it starts "
                                    f"({segment.start_s:g} s)", field=field)  # fmt: skip
        if abs(segment.start_s - before) > tolerance:
            raise InvalidInputError(
                f"{field} starts at {segment.start_s:g} s, not where the one before it ends "
                f"({before:g} s): segments tile the music from 0 to its end",
                field=field,
            )
        check_unit_interval(f"{field}.energy", segment.energy)
        for look_field, value in vars(segment.look).items():
            check_unit_interval(f"{field}.look.{look_field}", value)
    if segments and abs(segments[-1].end_s - end) > tolerance:
        field = f"{name}.segments[{len(segments) - 1}]"
        raise InvalidInputError(f"the last segment ends at {segments[-1].end_s:g} s, not at the "
                                f"duration ({end:g} s)", field=field)  # fmt: skip
    for index, cut in enumerate(timeline.cuts):
        field = f"{name}.cuts[{index}]"
        if not 0.0 < cut.time_s < end:
            raise InvalidInputError(f"{field} at {cut.time_s:g} s is outside the music "
                                    f"(0..{end:g} s)", field=field)  # fmt: skip
        check_unit_interval(f"{field}.strength", cut.strength)
    previous_end = 0.0
    for index, interval in enumerate(timeline.speech):
        field = f"{name}.speech[{index}]"
        if not previous_end <= interval.start_s < interval.end_s <= end + tolerance:
            raise InvalidInputError(
                f"{field} ({interval.start_s:g}-{interval.end_s:g} s) must start after the one "
                f"before ends ({previous_end:g} s), end after it starts and lie inside the "
                f"music (0..{end:g} s)", field=field)  # fmt: skip
        previous_end = interval.end_s


def check_unit_interval(field: str, value: float) -> None:
    """A contract's 0..1 value (an energy, a strength, a look)."""
    if not 0.0 <= value <= 1.0:  # NaN too
        raise InvalidInputError(f"{field}: {value:g} is outside 0..1", field=field)


def check_known(
    kind: str, names: Iterable[str], valid: Collection[str], field: str | None = None
) -> None:
    """Every name is one of `valid` (a kind of tag, as the vocabulary or a generator names
    them); the message lists what is valid, and starts with `field` where one is given."""
    unknown = [name for name in names if name not in valid]
    if unknown:
        where = f"{field}: " if field else ""
        raise InvalidInputError(f"{where}unknown {kind} {', '.join(unknown)}; valid: "
                                f"{', '.join(valid)}", field=field)  # fmt: skip


def check_segment_moods(
    timeline: MusicBrief | VideoAnalysis, name: str, vocabulary: Vocabulary
) -> None:
    """Every segment's moods are the vocabulary's."""
    for index, segment in enumerate(timeline.segments):
        check_known("mood", segment.moods, vocabulary.moods, f"{name}.segments[{index}].moods")


# What an analysis may say in words: a description, and warnings (500 of 10,000 characters
# had been passed on, and `bgm client` took 322 s to print them).
MAX_DESCRIPTION_CHARS = 20_000
MAX_WARNINGS = 32
MAX_WARNING_CHARS = 1000


def check_analysis(analysis: VideoAnalysis, vocabulary: Vocabulary) -> None:
    """A tagger's analysis as its contract has it (the gateway holds another team's tagger to
    it): a positive length that its timeline tiles, a picture's rate and size that are
    numbers, a rotation by quarter turns, curves of numbers (motion in 0..1) at a positive
    rate, words within bounds, and tags the vocabulary names, with a tempo inside its range
    and the range inside BPM_LIMITS, and each tag's origin a tag of its kind with a score
    that is a number."""
    duration = analysis.duration_s
    if not (math.isfinite(duration) and duration > 0.0):
        raise InvalidInputError(f"analysis.duration_s: {duration:g} s is not a length",
                                field="analysis.duration_s")  # fmt: skip
    picture = {"fps": analysis.fps, "width": analysis.width, "height": analysis.height}
    for name, value in picture.items():
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"analysis.{name}: {value:g} is not a size or a rate",
                                    field=f"analysis.{name}")  # fmt: skip
    if analysis.rotation % 90:
        raise InvalidInputError(f"analysis.rotation: {analysis.rotation} is not quarter turns",
                                field="analysis.rotation")  # fmt: skip
    if len(analysis.description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInputError(f"analysis.description: {len(analysis.description)} "
                                f"characters, at most {MAX_DESCRIPTION_CHARS}",
                                field="analysis.description")  # fmt: skip
    too_long = [w for w in analysis.warnings if len(w) > MAX_WARNING_CHARS]
    if len(analysis.warnings) > MAX_WARNINGS or too_long:
        raise InvalidInputError(f"analysis.warnings: {len(analysis.warnings)}, "
                                f"{len(too_long)} of them over {MAX_WARNING_CHARS} characters; "
                                f"at most {MAX_WARNINGS} of at most {MAX_WARNING_CHARS}",
                                field="analysis.warnings")  # fmt: skip
    check_timeline(analysis, "analysis")
    check_segment_moods(analysis, "analysis", vocabulary)
    # Motion is 0..1; the sound's level is in dBFS, any number.
    curves: dict[str, tuple[MotionCurve | LevelCurve, float, float]] = {
        "motion": (analysis.motion, 0.0, 1.0),
        "loudness": (analysis.loudness, -math.inf, math.inf),
    }
    for name, (curve, least, most) in curves.items():
        values = np.asarray(curve.values, dtype=np.float64)
        if values.size and not (math.isfinite(curve.hz) and curve.hz > 0.0):
            raise InvalidInputError(f"analysis.{name}.hz: {curve.hz:g} is not a rate",
                                    field=f"analysis.{name}.hz")  # fmt: skip
        outside = ~(np.isfinite(values) & (values >= least) & (values <= most))
        if outside.any():
            index = int(np.argmax(outside))
            field = f"analysis.{name}.values[{index}]"
            raise InvalidInputError(f"{field}: {values[index]:g} is outside {least:g}..{most:g}",
                                    field=field)  # fmt: skip
    tags = analysis.tags
    check_known("genre", tags.genres, vocabulary.genres, "analysis.tags.genres")
    check_known("mood", tags.moods, vocabulary.moods, "analysis.tags.moods")
    check_known("instrument", tags.instruments, vocabulary.instruments,
                "analysis.tags.instruments")  # fmt: skip
    low, high = BPM_LIMITS
    if not low <= tags.bpm_min <= tags.bpm <= tags.bpm_max <= high:
        raise InvalidInputError(
            f"analysis.tags.bpm: {tags.bpm:g} BPM must lie in its range ({tags.bpm_min:g}.."
            f"{tags.bpm_max:g}) and the range in {low:g}..{high:g}",
            field="analysis.tags.bpm",
        )
    try:
        vocabulary.parse_key(tags.key)
    except ValueError as error:
        raise InvalidInputError(f"analysis.tags.key: {error}", field="analysis.tags.key") from None
    check_unit_interval("analysis.tags.energy", tags.energy)
    check_origins(tags, vocabulary, "analysis.tags")


def check_origins(tags: MusicTags, vocabulary: Vocabulary, at: str) -> None:
    """Each tag origin (of the tags at field `at`) names a tag of its kind, with a score
    that is a number."""
    named = {"genre": vocabulary.genres, "mood": vocabulary.moods,
             "instrument": vocabulary.instruments}  # fmt: skip
    for index, origin in enumerate(tags.origins):
        field = f"{at}.origins[{index}]"
        check_known(origin.kind, [origin.tag], named[origin.kind], f"{field}.tag")
        if not math.isfinite(origin.score):
            raise InvalidInputError(f"{field}.score: {origin.score:g} is not a number",
                                    field=f"{field}.score")  # fmt: skip


# The sample rates a gateway delivers music at (a generator that offered only 2 MHz had had
# a request that named no rate written at 2 MHz, ten times as slow).
DELIVERED_RATES = (8000, 192000)


def check_description(info: GeneratorInfo, vocabulary: Vocabulary) -> None:
    """What the gateway needs of a generator's description to check requests by it: a
    longest piece that is a length, sample rates (a broken one would refuse every caller
    for a video too long or a rate not offered), a candidate count that is one, audio and a
    plan among its outputs, and a genre
    and an instrument of this vocabulary that it plays (a brief names both). Genres,
    instruments and structures it names that this vocabulary does not are left alone: a
    newer generator may offer more."""
    if not (math.isfinite(info.max_duration_s) and info.max_duration_s > 0.0):
        raise InvalidInputError(f"max_duration_s: {info.max_duration_s:g} s is not a length")
    if "free" not in info.structures:
        # Every request that names no structure asks for "free": all had been refused,
        # naming controls.structure, which their callers never set.
        raise InvalidInputError(f"structures: {list(info.structures)[:8]} lack 'free', which a "
                                "request that names none asks for")  # fmt: skip
    low, high = DELIVERED_RATES
    if not info.sample_rates or not all(low <= rate <= high for rate in info.sample_rates):
        raise InvalidInputError(f"sample_rates: {list(info.sample_rates)[:8]} are not all "
                                f"sample rates from {low} to {high} Hz")  # fmt: skip
    if info.max_candidates is not None and info.max_candidates < 1:
        raise InvalidInputError(f"max_candidates: {info.max_candidates} is not a count")
    lacking = [output for output in ("audio", "plan") if output not in info.outputs]
    if lacking:
        # Every Score needs both: one without had generated and then failed.
        raise InvalidInputError(f"outputs: {list(info.outputs)[:8]} lack "
                                f"{' and '.join(lacking)}, which every request needs")  # fmt: skip
    played = (("genres", info.genres, vocabulary.genres),
              ("instruments", info.instruments, vocabulary.instruments))  # fmt: skip
    for kind, offered, known in played:
        if not set(offered) & set(known):
            raise InvalidInputError(f"{kind}: it plays none the vocabulary names "
                                    f"({', '.join(offered[:8]) or 'none at all'})")  # fmt: skip


# How a generator's piece may end (MusicPlan.ending).
PLAN_ENDINGS = ("cadence", "fade")


def check_plan(plan: MusicPlan) -> None:
    """What the gateway passes on of a generator's plan (to the caller's result, to mastering
    by its ending): tempos that are tempos, beat and bar times that are numbers in order, an
    ending it names, and words without control characters (a NaN tempo, beats out of order
    and a key of terminal escapes had reached `bgm client`'s output)."""
    tempos = {"bpm": plan.bpm} | {f"sections[{i}].bpm": s.bpm for i, s in enumerate(plan.sections)}
    for field, bpm in tempos.items():
        if not (math.isfinite(bpm) and bpm > 0):
            raise InvalidInputError(f"{field}: {bpm:g} is not a tempo")
    for field, times in (("beats_s", plan.beats_s), ("bars_s", plan.bars_s)):
        array = np.asarray(times, dtype=np.float64)
        if not np.isfinite(array).all() or (np.diff(array) < 0).any():
            raise InvalidInputError(f"{field}: times that are not numbers in order")
    if plan.ending not in PLAN_ENDINGS:
        raise InvalidInputError(f"ending: {plan.ending[:32]!r} is not one of {PLAN_ENDINGS}")
    words = [plan.key, plan.genre, plan.meter, *plan.instruments]
    for section in plan.sections:
        words += [section.role, section.key, section.material, *section.chords,
                  *section.instruments]  # fmt: skip
    if any(CONTROL.search(word) for word in words):
        raise InvalidInputError("words with control characters")


def check_ranking(scores: Iterable[CandidateScore]) -> None:
    """A ranking's measures are numbers in 0..1 (a NaN score had been printed as such)."""
    for score in scores:
        measures = {
            "score": score.score,
            "tempo_fit": score.tempo_fit,
            "cut_accent": score.cut_accent,
            "energy_follow": score.energy_follow,
        }
        for field, value in measures.items():
            if value is not None:
                check_unit_interval(f"candidate {score.candidate}'s {field}", value)


# What every Standard MIDI File starts with.
MIDI_HEADER = b"MThd"


def check_midi(midi: bytes) -> None:
    """A generator's MIDI is a Standard MIDI File, or none (50 MB of bytes that were not
    MIDI had been written to the caller's .mid)."""
    if midi and not midi.startswith(MIDI_HEADER):
        raise InvalidInputError(f"MIDI that is not a Standard MIDI File (it starts {midi[:8]!r})")
