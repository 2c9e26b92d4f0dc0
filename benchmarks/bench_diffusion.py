"""Benchmark of the diffusion backend on any diffusers checkpoint folder.

    python benchmarks/bench_diffusion.py --model PATH [--seconds 30] [--steps 50]
    python benchmarks/bench_diffusion.py --tiny      # a tiny random pipeline built here

Prints seconds per denoising step, the real-time factor and the process's peak memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from services.config import DiffusionConfig
from services.domain import Cut, Look, MusicBrief, MusicTags, Segment
from services.generator.backends.diffusion.backend import DiffusionGenerator
from services.generator.backends.diffusion.tiny import stable_audio

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="diffusers pipeline folder")
    parser.add_argument("--tiny", action="store_true", help="build and time a tiny pipeline")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the piece")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = stable_audio(Path(folder), window_s=8.0) if args.tiny else args.model
        if model is None:
            parser.error("give --model PATH or --tiny")
        started = time.perf_counter()
        generator = DiffusionGenerator(DiffusionConfig(model_path=model, steps=args.steps))
        loaded = time.perf_counter() - started
        look = Look(0.5, 0.5, 0.5, 0.5)
        tags = MusicTags(
            genres=["cinematic"],
            moods=["epic"],
            instruments=["strings"],
            bpm=100,
            bpm_min=90,
            bpm_max=110,
            key="D minor",
            energy=0.6,
        )
        half = args.seconds / 2
        brief = MusicBrief(
            tags=tags,
            duration_s=args.seconds,
            sample_rate=48000,
            seed=0,
            segments=[
                Segment(0.0, half, 0.4, look, ["epic"]),
                Segment(half, args.seconds, 0.8, look, ["epic"]),
            ],
            cuts=[Cut(half, "hard", 1.0)],
        )
        steps: list[float] = []
        started = time.perf_counter()
        generator.generate(brief, progress=lambda f: steps.append(time.perf_counter()))
        took = time.perf_counter() - started
        windows = max(1, round((len(steps) - 1) / args.steps))
        print(
            f"{generator.describe().version} at {model}, {args.seconds:g} s, "
            f"{args.steps} steps x {windows} window(s):"
        )
        print(f"  load                      {loaded:8.2f} s")
        print(
            f"  generate                  {took:8.2f} s   (real-time factor "
            f"{args.seconds / took:6.2f})"
        )
        print(f"  per denoising step        {took / (args.steps * windows) * 1000:8.1f} ms")
        print(f"  peak memory (process)     {peak_rss_mb():8.0f} MB")


if __name__ == "__main__":
    main()
