"""Benchmark of the tempo map's trade (issue 13): how many cuts a genre's plans put on beats,
against how steady their pulse is, on videos cut at random (plans only, nothing rendered).

    python benchmarks/bench_tempo.py                         # every genre, 14 videos, ~1 min
    python benchmarks/bench_tempo.py --genres pop acoustic --beat-change 0.02 0.01

bench_music's six videos include a regular one and a slow one, every cut of which lands on a
beat, and one irregular video: its figures say little about the videos a user cuts. Here the
videos are cut at random, ten with gaps of 1.5-6 s (30 or 40 s long) and four with gaps of
1-3 s (30 s), each a fixed seed. For each genre (seeds 1 and 2 of every video):
- cuts >= 1.5 s from both neighbours on a beat of the plan (within 50 ms), as bench_music
  counts them; a cut off the beat is struck at its time all the same;
- tempo swing: per piece, the fastest beat's tempo over the slowest's within any 3 s, and
  over the whole piece (bench_music's "tempo drift"); the median piece's and the worst.
`--beat-change` plays the same plans again at other limits of the beat-to-beat tempo change
(`timing.MAX_BEAT_CHANGE`), to weigh that trade.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench_music  # noqa: E402

from services.config import ComposerConfig, TaggerConfig  # noqa: E402
from services.generator.backends.composer import timing  # noqa: E402
from services.generator.backends.composer.backend import ComposerGenerator  # noqa: E402
from services.generator.beatcheck import genre_brief  # noqa: E402
from services.progress import Heartbeat  # noqa: E402
from services.tagger.backend import AnalysisRequest  # noqa: E402
from services.tagger.backends.vision import VisionTagger  # noqa: E402

SEEDS = (1, 2)
# The solved map keeps this far inside the limit (timing.SOLVED_BEAT_CHANGE's margin).
SOLVED_MARGIN = timing.MAX_BEAT_CHANGE - timing.SOLVED_BEAT_CHANGE


def random_case(low: float, high: float, total_s: float, seed: int) -> bench_music.Case:
    gaps = bench_music.random_gaps(low, high, total_s, seed)
    return bench_music.Case(f"gaps-{low:g}-{high:g}s-{seed}", "", bench_music.shots_for(gaps, seed))


def random_cases() -> list[bench_music.Case]:
    cases = [random_case(1.5, 6.0, 40 if seed % 2 else 30, seed) for seed in range(20, 30)]
    return cases + [random_case(1.0, 3.0, 30, seed) for seed in range(30, 34)]


def genre_line(generator: ComposerGenerator, genre: str, analyses: list) -> str:
    on_beat = long_cuts = 0
    within, over = [], []
    for case, analysis in analyses:
        for seed in SEEDS:
            brief = genre_brief(analysis, genre, seed=seed)
            beats = list(generator.compose(brief, Heartbeat(lambda fraction: None)).plan.beats_s)
            swing, whole = bench_music.tempo_drift(beats)
            within.append(swing)
            over.append(whole)
            hits = bench_music.near(case.cuts_s, beats, bench_music.BEAT_TOLERANCE_S)
            mask = bench_music.long_cut_mask(case.cuts_s, case.duration_s)
            on_beat += sum(hit for hit, long in zip(hits, mask, strict=True) if long)
            long_cuts += sum(mask)
    return (
        f"  {genre:<11} {on_beat / long_cuts:6.1%} {on_beat:>4}/{long_cuts:<4} "
        f"{np.median(within):6.1%} {max(within):6.1%}   {np.median(over):6.1%} {max(over):6.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genres", nargs="+", help="genres to plan (default: all)")
    parser.add_argument(
        "--beat-change",
        nargs="+",
        type=float,
        default=[timing.MAX_BEAT_CHANGE],
        help="limits of the beat-to-beat tempo change to compare (default: the composer's)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    all_genres = list(ComposerGenerator(ComposerConfig()).describe().genres)
    genres = args.genres or all_genres
    unknown = sorted(set(genres) - set(all_genres))
    if unknown:
        parser.error(f"unknown genres {unknown}; known: {', '.join(all_genres)}")
    if any(not SOLVED_MARGIN < change < 1.0 for change in args.beat_change):
        parser.error(f"--beat-change must lie in ({SOLVED_MARGIN:g}, 1)")
    tagger = VisionTagger(TaggerConfig())
    cases = random_cases()
    analyses = [(case, tagger.analyze(AnalysisRequest(bench_music.video_path(case))))
                for case in cases]  # fmt: skip
    cuts = sum(sum(bench_music.long_cut_mask(c.cuts_s, c.duration_s)) for c in cases)
    print(
        f"{len(cases)} videos cut at random (cached in {bench_music.CACHE / 'music'}), "
        f"{cuts} cuts >= 1.5 s from both neighbours; seeds {', '.join(map(str, SEEDS))}"
    )
    for change in args.beat_change:
        print()
        whose = " (the composer's)" if change == timing.MAX_BEAT_CHANGE else ""
        print(f"Beat-to-beat tempo change at most {change:.2%}{whose}:")
        print("  genre       cuts on plan beats   swing within 3 s   over a piece")
        print("                                   median  worst     median  worst")
        with (
            mock.patch.object(timing, "MAX_BEAT_CHANGE", change),
            mock.patch.object(timing, "SOLVED_BEAT_CHANGE", change - SOLVED_MARGIN),
        ):
            generator = ComposerGenerator(ComposerConfig())
            for genre in genres:
                print(genre_line(generator, genre, analyses), flush=True)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
