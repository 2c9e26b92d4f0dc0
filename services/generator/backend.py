"""The generator's backend interface: what every music backend provides.

Plain domain types only; no gRPC, no Ray. Backends are chosen by `GeneratorConfig.backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from services.domain import Cut, CutAlignment, GeneratedMusic, GeneratorInfo, MusicBrief
from services.errors import BgmError, InvalidInputError
from services.progress import ProgressCallback
from services.rules import (
    BPM_LIMITS,
    NOT_OFFERED,
    ON_BEAT_S,
    check_known,
    check_origins,
    check_segment_moods,
    check_structure,
    check_timeline,
    check_unit_interval,
)
from services.vocabulary import Vocabulary


@dataclass(frozen=True)
class GenerationJob:
    """One piece to generate inside a batch, with its own progress (which may cancel it)."""

    brief: MusicBrief
    progress: ProgressCallback


# Per job: its music, or the error that stopped it (the other jobs of the batch go on).
JobResult = GeneratedMusic | BgmError


class GeneratorBackend(Protocol):
    def describe(self) -> GeneratorInfo: ...

    def tracks(self, brief: MusicBrief) -> int:
        """How many tracks of the brief's length a piece for it holds (the mix, and a stem
        per instrument when the brief asks for stems): what the request's limit counts."""
        ...

    def generate(
        self, brief: MusicBrief, progress: ProgressCallback | None = None
    ) -> GeneratedMusic: ...

    def generate_batch(self, jobs: Sequence[GenerationJob]) -> list[JobResult]:
        """Several pieces at once, in the jobs' order; a backend that can share model calls
        between them does (the diffusion backend batches its pipeline calls)."""
        ...


class Started(Protocol):
    """A job under way in a batch: the error that stopped it, if any (a cancel)."""

    error: BgmError | None


StartedJob = TypeVar("StartedJob", bound=Started)


def kept(error: BgmError) -> BgmError:
    """`error`, to be kept as a job's result, without its traceback: its frames hold the
    piece's audio, and the list it is kept in is one of their locals, a reference cycle that
    held a cancelled piece's memory (2 GB after a long one) until the collector's next full
    pass."""
    return error.with_traceback(None)


def start_jobs(
    jobs: Sequence[GenerationJob], start: Callable[[GenerationJob], StartedJob]
) -> list[StartedJob | BgmError]:
    """Each job started, or the error that refused it (the others go on)."""
    started: list[StartedJob | BgmError] = []
    for job in jobs:
        try:
            started.append(start(job))
        except BgmError as error:
            started.append(kept(error))
    return started


def finish_jobs(
    started: Sequence[StartedJob | BgmError], finish: Callable[[StartedJob], GeneratedMusic]
) -> list[JobResult]:
    """Per job, in order: its music, or the error that refused, cancelled or stopped it."""
    results: list[JobResult] = []
    for outcome in started:
        if isinstance(outcome, BgmError):
            results.append(outcome)
        elif outcome.error is not None:
            results.append(outcome.error)
        else:
            try:
                results.append(finish(outcome))
            except BgmError as error:
                results.append(kept(error))
    return results


def alone(
    backend: GeneratorBackend, brief: MusicBrief, progress: ProgressCallback | None
) -> GeneratedMusic:
    """generate() for a backend whose work is done by generate_batch: a batch of one."""
    [result] = backend.generate_batch([GenerationJob(brief, progress or (lambda _: None))])
    if isinstance(result, BgmError):
        raise result
    return result


def one_by_one(backend: GeneratorBackend, jobs: Sequence[GenerationJob]) -> list[JobResult]:
    """generate_batch for a backend with nothing to share between pieces."""
    results: list[JobResult] = []
    for job in jobs:
        try:
            results.append(backend.generate(job.brief, job.progress))
        except BgmError as error:
            results.append(kept(error))
    return results


def cut_alignment(
    beats_s: Sequence[float], bars_s: Sequence[float], cuts: Sequence[Cut]
) -> CutAlignment:
    """How close each cut falls to the planned beats and bar lines."""
    beats, bars = np.asarray(beats_s), np.asarray(bars_s)
    distances = [float(np.min(np.abs(beats - c.time_s))) * 1000 for c in cuts]
    bar_distances = [float(np.min(np.abs(bars - c.time_s))) * 1000 for c in cuts]
    return CutAlignment(
        cut_count=len(distances),
        on_beat_count=sum(d <= ON_BEAT_S * 1000 for d in distances),
        on_bar_count=sum(d <= ON_BEAT_S * 1000 for d in bar_distances),
        median_ms=round(float(np.median(distances)), 3) if distances else 0.0,
        worst_ms=round(max(distances), 3) if distances else 0.0,
    )


def validate_brief(brief: MusicBrief, info: GeneratorInfo, vocabulary: Vocabulary) -> None:
    """Refuse a brief the backend cannot honour, naming the field, with a message that lists
    what it can."""
    if not 0.0 < brief.duration_s <= info.max_duration_s:
        raise InvalidInputError(
            f"duration {brief.duration_s:g} s is outside 0 < duration <= {info.max_duration_s:g} s",
            field="brief.duration_s",
        )
    if brief.sample_rate not in info.sample_rates:
        raise InvalidInputError(
            f"sample rate {brief.sample_rate} is not supported; choose one of "
            f"{', '.join(map(str, info.sample_rates))}",
            field="brief.sample_rate",
        )
    if round(brief.duration_s * brief.sample_rate) < 1:
        raise InvalidInputError(
            f"duration {brief.duration_s:g} s is shorter than one sample at {brief.sample_rate} Hz",
            field="brief.duration_s",
        )
    check_structure(brief.structure, info, "brief.structure")
    if brief.stems and "stems" not in info.outputs:
        # (Asked directly, not through a gateway, they had been left out without a word.)
        raise InvalidInputError(f"the {info.name} generator makes no stems",
                                field="brief.stems", error_reason=NOT_OFFERED)  # fmt: skip
    check_timeline(brief, "brief")
    check_segment_moods(brief, "brief", vocabulary)
    if (brief.structure == "reference") != bool(brief.reference_audio):
        raise InvalidInputError("structure 'reference' and a reference audio file go together",
                                field="brief.reference_audio")  # fmt: skip
    tags = brief.tags
    low, high = BPM_LIMITS
    for name, value in (("bpm", tags.bpm), ("bpm_min", tags.bpm_min), ("bpm_max", tags.bpm_max)):
        if not low <= value <= high:
            raise InvalidInputError(f"{name} {value:.10g} is outside {low:g}..{high:g}",
                                    field=f"brief.tags.{name}")  # fmt: skip
    check_unit_interval("brief.tags.energy", tags.energy)
    if tags.bpm_min > tags.bpm_max:
        raise InvalidInputError(f"bpm_min {tags.bpm_min:g} is above bpm_max {tags.bpm_max:g}",
                                field="brief.tags.bpm_min")  # fmt: skip
    if not tags.genres:
        raise InvalidInputError("the brief names no genre", field="brief.tags.genres")
    check_known("genre", tags.genres, info.genres, "brief.tags.genres")
    check_known("mood", tags.moods, vocabulary.moods, "brief.tags.moods")
    check_known("instrument", tags.instruments, info.instruments, "brief.tags.instruments")
    check_known("tag", brief.negative,
                [*vocabulary.genres, *vocabulary.moods, *vocabulary.instruments],
                "brief.negative")  # fmt: skip
    negated = set(brief.negative) & {*tags.genres, *tags.moods, *tags.instruments}
    if negated:
        raise InvalidInputError(f"{', '.join(sorted(negated))} both asked for and negated",
                                field="brief.negative")  # fmt: skip
    try:
        vocabulary.parse_key(tags.key)
    except ValueError as error:
        raise InvalidInputError(str(error), field="brief.tags.key") from None
    # (A user's mood origin naming no mood had crashed the composer's tempo: INTERNAL.)
    check_origins(tags, vocabulary, "brief.tags")
