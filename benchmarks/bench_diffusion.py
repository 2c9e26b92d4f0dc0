"""Benchmark of the diffusion backend on any diffusers checkpoint folder or SONIQUE folder.

    python benchmarks/bench_diffusion.py --model PATH [--seconds 30] [--steps 50] [--batch 4]
    python benchmarks/bench_diffusion.py --tiny ace-step   # a tiny random pipeline built here
    .venv-sonique/bin/python benchmarks/bench_diffusion.py --tiny sonique [--real-size]

Prints, for one request and for a batch of requests generated together: seconds per denoising
step (per pipeline call), the real-time factor, and peak memory (the process's resident memory;
on CUDA also the GPU's allocated peak).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.config import ComposerConfig, DiffusionConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment
from services.generator.backend import GenerationJob
from services.generator.backends.diffusion.adapters import RenderRequest
from services.generator.backends.diffusion.backend import DiffusionGenerator
from services.generator.backends.diffusion.tiny import BUILDERS, sonique

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import gpu_peak_note, peak_rss_mb


def bench_brief(seconds: float, seed: int) -> MusicBrief:
    look = Look(0.5, 0.5, 0.5, 0.5)
    tags = MusicTags(genres=["cinematic"], moods=["epic"], instruments=["strings"], bpm=100,
                     bpm_min=90, bpm_max=110, key="D minor", energy=0.6)  # fmt: skip
    half = seconds / 2
    return MusicBrief(
        tags=tags,
        duration_s=seconds,
        sample_rate=48000,
        seed=seed,
        segments=[Segment(0.0, half, 0.4, look, ["epic"]), Segment(half, seconds, 0.8, look, [])],
        cuts=[Cut(half, "hard", 1.0)],
    )


class CallCounter:
    """Counts the adapter's pipeline calls (each runs every denoising step once)."""

    def __init__(self, generator: DiffusionGenerator):
        self.calls = 0
        render = generator.adapter.render

        def counted(
            requests: list[RenderRequest],
            steps: int,
            guidance: float,
            on_step: Callable[[int, int], None],
        ) -> list[np.ndarray]:
            self.calls += 1
            return render(requests, steps, guidance, on_step)

        generator.adapter.render = counted  # type: ignore[method-assign]


def run(
    label: str,
    generator: DiffusionGenerator,
    counter: CallCounter,
    briefs: list[MusicBrief],
    steps: int,
) -> None:
    counter.calls = 0
    jobs = [GenerationJob(brief, lambda fraction: None) for brief in briefs]
    started = time.perf_counter()
    results = generator.generate_batch(jobs)
    took = time.perf_counter() - started
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise SystemExit(f"generation failed: {failed[0]}")
    music_s = sum(b.duration_s for b in briefs)
    print(f"  {label}")
    print(f"    pipeline calls          {counter.calls:8d}")
    print(f"    generate                {took:8.2f} s   ({took / len(briefs):.2f} s a request)")
    print(f"    per denoising step      {took / (steps * counter.calls) * 1000:8.1f} ms")
    print(f"    real-time factor        {music_s / took:8.2f}   (seconds of music per second)")
    print(f"    peak memory             {peak_rss_mb():8.0f} MB (process){gpu_peak_note()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="diffusers pipeline folder")
    parser.add_argument("--tiny", choices=sorted(BUILDERS), help="build and time a tiny pipeline")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each piece")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per call")
    parser.add_argument("--batch", type=int, default=4, help="requests generated together")
    parser.add_argument(
        "--real-size", action="store_true", help="--tiny sonique: SONIQUE's config, random weights"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.real_size and args.tiny != "sonique":
            parser.error("--real-size is for --tiny sonique")
        model = (sonique(Path(folder), real_size=True) if args.real_size
                 else BUILDERS[args.tiny](Path(folder)) if args.tiny else args.model)  # fmt: skip
        if model is None:
            parser.error("give --model PATH or --tiny FAMILY")
        started = time.perf_counter()
        generator = DiffusionGenerator(DiffusionConfig(model_path=model, steps=args.steps,
                                                       max_batch=args.batch),
                                       ComposerConfig())  # fmt: skip
        loaded = time.perf_counter() - started
        print(f"{generator.describe().version} at {model}: {args.seconds:g} s pieces, "
              f"{args.steps} steps, window {generator.adapter.window_s:g} s")  # fmt: skip
        print(f"  load                      {loaded:8.2f} s   (peak {peak_rss_mb():.0f} MB)")
        # Once untimed: the first call pays for lazy initialisation.
        generator.generate(bench_brief(min(args.seconds, 2.0), seed=99))
        counter = CallCounter(generator)
        run("1 request", generator, counter, [bench_brief(args.seconds, seed=0)], args.steps)
        briefs = [bench_brief(args.seconds, seed=seed) for seed in range(args.batch)]
        run(f"batch of {args.batch} requests", generator, counter, briefs, args.steps)


if __name__ == "__main__":
    main()
