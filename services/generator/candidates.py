"""Several candidates for one brief: one job per seed (seed, seed+1, ...), generated as one
batch (a diffusion backend shares its pipeline calls between them), then ranked."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from services.domain import CandidateScore, GeneratedMusic, MusicBrief
from services.errors import BgmError
from services.generator.backend import GenerationJob, JobResult, ProgressCallback
from services.generator.ranking import rank
from services.rules import check_candidates


def candidate_jobs(
    brief: MusicBrief, count: int, progress: ProgressCallback
) -> list[GenerationJob]:
    """`count` jobs; `progress` hears the mean of their fractions and may cancel them all."""
    check_candidates(count)
    fractions = [0.0] * count
    lock = threading.Lock()

    def reporter(index: int) -> ProgressCallback:
        def report(fraction: float) -> None:
            with lock:
                fractions[index] = fraction
                overall = sum(fractions) / count
            progress(overall)

        return report

    return [
        GenerationJob(dataclasses.replace(brief, seed=brief.seed + index), reporter(index))
        for index in range(count)
    ]


def ranked(
    brief: MusicBrief, results: list[JobResult], heartbeat: Callable[[], None]
) -> tuple[list[GeneratedMusic], list[CandidateScore]]:
    """The candidates' music and, for more than one, their ranking (best first); the first
    failed job's error is raised. `heartbeat` is called as they are measured (it raises to
    cancel)."""
    musics = []
    for result in results:
        if isinstance(result, BgmError):
            raise result
        musics.append(result)
    return musics, rank(brief, musics, heartbeat) if len(musics) > 1 else []
