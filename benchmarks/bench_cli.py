"""Start-up of the `bgm` command: how long before a user sees anything.

    python benchmarks/bench_cli.py

Each figure is the median wall time of several runs of the installed `bgm` in a fresh
process (what a user waits for, the interpreter's own start-up included).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.media.synth import Shot, write_video

RUNS = 7


def median_s(command: list[str]) -> tuple[float, int]:
    """The median wall time of `command`, and its exit status."""
    times, status = [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        status = subprocess.run(command, capture_output=True).returncode
        times.append(time.perf_counter() - started)
    return statistics.median(times), status


def main() -> None:
    bgm = str(Path(sys.executable).with_name("bgm"))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        clip = write_video(folder / "one-second.mp4", [Shot(1.0, speed=0.4, hue=0.2)]).path
        silent = write_video(folder / "silent.mp4", [Shot(1.0, speed=0.4, hue=0.2)],
                             audio=False).path  # fmt: skip
        cases = [
            ("bgm --help", [bgm, "--help"]),
            ("an argument error (bgm score --bpm 0)",
             [bgm, "score", str(clip), "--bpm", "0", "-o", str(folder / "out.wav")]),
            ("a missing video (bgm score gone.mp4)",
             [bgm, "score", str(folder / "gone.mp4"), "-o", str(folder / "out.wav")]),
            ("bgm analyze on a 1 s clip with sound", [bgm, "analyze", str(clip)]),
            ("bgm analyze on a 1 s clip without", [bgm, "analyze", str(silent)]),
        ]  # fmt: skip
        print(f"start-up of the bgm command, median of {RUNS} runs:")
        for label, command in cases:
            seconds, status = median_s(command)
            print(f"  {label:<40} {seconds:5.2f} s (exit {status})")


if __name__ == "__main__":
    main()
