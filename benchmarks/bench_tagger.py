"""Benchmark of the tagger's `vision` backend: speed, memory and accuracy.

    python benchmarks/bench_tagger.py            # everything (first run writes ~1 GB of media)
    python benchmarks/bench_tagger.py --quick    # skip the 10-minute 1080p memory run

Speed is measured on one core (the process is pinned to one CPU), best of three runs.
Media is generated with PyAV and cached in $BGM_BENCH_CACHE (default ~/.cache/bgm-bench).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.stats import spearmanr

from services.config import TaggerConfig
from services.media.synth import (
    Shot,
    SyntheticVideo,
    accuracy_shots,
    motion_shots,
    write_video,
)
from services.tagger.backend import AnalysisRequest
from services.tagger.backends.vision import VisionTagger

CACHE = Path(os.environ.get("BGM_BENCH_CACHE", Path.home() / ".cache" / "bgm-bench"))


def pin_to_one_core() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)


def best_of(runs: int, job: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return min(times)


def decode_every_frame(path: Path) -> None:
    """The floor: PyAV decoding every frame with its defaults, doing nothing with them."""
    with av.open(str(path)) as container:
        for _frame in container.decode(video=0):
            pass


def speed_video(width: int, height: int) -> Path:
    """60 s, 30 fps H.264 (x264 preset medium: B-frames, CABAC), 20 shots of varied motion."""
    path = CACHE / f"speed-{width}x{height}-60s.mp4"
    if not path.exists():
        shots = [
            Shot(3.0, speed=0.05 * (i % 7), hue=(i * 0.13) % 1.0, brightness=0.3 + 0.1 * (i % 5))
            for i in range(20)
        ]
        write_video(path, shots, width=width, height=height, fps=30.0, x264_preset="medium")
    return path


def long_video(minutes: int) -> Path:
    """A 1080p 30 fps H.264 video of `minutes`, by remuxing the 60 s one (no re-encoding)."""
    path = CACHE / f"memory-1920x1080-{minutes}min.mp4"
    if path.exists():
        return path
    source = speed_video(1920, 1080)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as dst:
        out_stream = None
        for copy in range(minutes):
            with av.open(str(source)) as src:
                in_stream = src.streams.video[0]
                if out_stream is None:
                    out_stream = dst.add_stream_from_template(in_stream)
                assert in_stream.duration is not None
                shift = copy * in_stream.duration
                for packet in src.demux(in_stream):
                    if packet.dts is None:
                        continue
                    packet.dts += shift
                    if packet.pts is not None:
                        packet.pts += shift
                    packet.stream = out_stream
                    dst.mux(packet)
    partial.rename(path)
    return path


def speed_section(tagger: VisionTagger) -> None:
    path = speed_video(1280, 720)
    analysis = tagger.analyze(AnalysisRequest(path))
    floor = best_of(3, lambda: decode_every_frame(path))
    took = best_of(3, lambda: tagger.analyze(AnalysisRequest(path)))
    print(f"60 s 1280x720 30 fps H.264 ({len(analysis.cuts)} cuts found, 19 true), one core:")
    print(f"  analysis                      {took:6.2f} s   ({60.0 / took:5.1f}x real time)")
    print(f"  decode every frame (floor)    {floor:6.2f} s")
    print(f"  analysis / decode             {took / floor:6.2f}")


def memory_section(minutes: int) -> None:
    path = long_video(minutes)
    started = time.perf_counter()
    # A fresh process, so the peak is the analysis's own and not this one's media writing.
    result = subprocess.run(
        [sys.executable, __file__, "--analyze-only", str(path)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    took = time.perf_counter() - started
    peak_mb = float(result.stdout.split("peak_rss_mb=")[1])
    print(f"{minutes} min 1920x1080 30 fps H.264, one core:")
    print(f"  peak memory (whole process)   {peak_mb:6.0f} MB")
    print(
        f"  analysis time                 {took:6.1f} s   ({minutes * 60 / took:5.1f}x real time)"
    )


def cut_scores(found: list[float], truth: list[float], fps: float) -> tuple[int, int, int]:
    tolerance = 1.0 / fps + 1e-6
    hits = sum(any(abs(f - t) <= tolerance for f in found) for t in truth)
    false = sum(not any(abs(f - t) <= tolerance for t in truth) for f in found)
    return hits, false, len(found)


def accuracy_section(tagger: VisionTagger) -> None:
    folder = CACHE / "accuracy"
    folder.mkdir(exist_ok=True)
    videos: list[SyntheticVideo] = [write_video(folder / "cuts.mp4", accuracy_shots())]
    for codec, extension in (
        ("libx264", "mp4"),
        ("libx265", "mp4"),
        ("libvpx-vp9", "webm"),
        ("libsvtav1", "mkv"),
        ("mpeg4", "mov"),
    ):
        name = f"cuts-{codec}.{extension}"
        videos.append(write_video(folder / name, accuracy_shots(), codec=codec, seed=7))
    videos.append(write_video(folder / "motion.mp4", motion_shots(), audio=False))
    hits = false = found = true = 0
    for video in videos:
        analysis = tagger.analyze(AnalysisRequest(video.path))
        h, f, n = cut_scores(analysis.cuts_s, video.cuts_s, video.fps)
        hits, false, found, true = hits + h, false + f, found + n, true + len(video.cuts_s)
    # The loop's last analysis is the motion video's.
    motion = videos[-1]
    values = np.array(analysis.motion.values)
    times = np.arange(len(values)) / analysis.motion.hz
    frame_times = np.array(motion.frame_times_s)
    truth = np.array(motion.speed_at_frame)[np.searchsorted(frame_times, times, "right") - 1]
    rho = spearmanr(values, truth).statistic
    print(f"Accuracy on {len(videos)} generated videos (H.264, H.265, VP9, AV1, MPEG-4):")
    print(f"  hard cuts found within 1 frame {hits}/{true} = {hits / true:6.1%}")
    print(f"  false cuts                     {false}/{found} = {false / max(found, 1):6.1%}")
    print(f"  motion vs true speed, Spearman {rho:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the long memory run")
    parser.add_argument("--minutes", type=int, default=10, help="length of the memory video")
    parser.add_argument("--analyze-only", metavar="VIDEO", help=argparse.SUPPRESS)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    pin_to_one_core()
    tagger = VisionTagger(TaggerConfig())
    if args.analyze_only:
        tagger.analyze(AnalysisRequest(Path(args.analyze_only)))
        print(f"peak_rss_mb={peak_rss_mb():.1f}")
        return
    print(f"machine: {os.cpu_count()} cores, pinned to 1; {platform_line()}")
    speed_section(tagger)
    accuracy_section(tagger)
    if not args.quick:
        memory_section(args.minutes)


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, ...), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/{pid}/status")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), which, unlike ru_maxrss, a child does
    not inherit from the parent that forked it."""
    return proc_status_mb("VmHWM")


def gpu_peak_note() -> str:
    """ ", GPU <peak allocated> MB" on CUDA (the peak is then reset), else ""."""
    import torch

    if not torch.cuda.is_available():
        return ""
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return f", GPU {peak:.0f} MB"


def platform_line() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
