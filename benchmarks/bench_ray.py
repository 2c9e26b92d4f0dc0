"""Benchmark of the Ray Serve path: overhead against the standalone servers, and generator
throughput with one and two replicas under eight concurrent clients.

    python benchmarks/bench_ray.py

Starts a local Ray cluster (2 CPUs) with deploy/serve/bgm-cpu.yaml, and `bgm serve all`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from services.devserver import deploy, free_port, serve_config, start, start_ray, stop, stop_ray
from services.domain import OutputOptions, UserControls
from services.gateway.client import score_remote
from services.media.synth import Shot, write_video

sys.path.insert(0, str(Path(__file__).parent))
from bench_services import concurrent_scores
from bench_tagger import CACHE, best_of, speed_video

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        media = folder / "media"
        media.mkdir()
        video = speed_video(1280, 720)
        short = write_video(
            media / "short.mp4", [Shot(3.0, speed=0.3, hue=0.2), Shot(3.0, speed=0.7, hue=0.6)]
        ).path
        standalone = start(folder, media)
        try:
            direct = best_of(
                3,
                lambda: score_remote(
                    standalone.gateway,
                    str(video),
                    UserControls(),
                    OutputOptions(folder / "a.mp4"),
                    lambda f: None,
                ),
            )
        finally:
            stop(standalone)
        stop_ray()
        dashboard = start_ray(folder, cpus=2)
        try:
            grpc_port = free_port()
            proxy = f"127.0.0.1:{grpc_port}"
            deploy(
                dashboard,
                serve_config(ROOT / "deploy/serve/bgm-cpu.yaml", folder, grpc_port, free_port()),
            )
            through_ray = best_of(
                3,
                lambda: score_remote(
                    proxy,
                    str(video),
                    UserControls(),
                    OutputOptions(folder / "b.mp4"),
                    lambda f: None,
                ),
            )
            print("60 s 1280x720 H.264 -> MP4, best of 3, same machine:")
            print(f"  standalone servers (bgm serve all)   {direct:6.2f} s")
            print(f"  Ray Serve, through the gRPC proxy    {through_ray:6.2f} s")
            print(f"  ratio                                {through_ray / direct:6.2f}")
            print("8 concurrent clients x 3 requests, 6 s videos -> WAV, through Ray:")
            for replicas in (1, 2):
                fixed = {
                    "min_replicas": replicas,
                    "max_replicas": replicas,
                    "initial_replicas": replicas,
                }
                config = serve_config(
                    ROOT / "deploy/serve/bgm-cpu.yaml", folder, grpc_port, free_port()
                )
                data = yaml.safe_load(config.read_text())
                generator = next(a for a in data["applications"] if a["name"] == "generator")
                generator["deployments"][0]["autoscaling_config"].update(fixed)
                config.write_text(yaml.safe_dump(data))
                deploy(dashboard, config)
                run = concurrent_scores(proxy, short, folder, 8, 3, ".wav")
                print(
                    f"  {replicas} generator replica{'s' if replicas > 1 else ' '}"
                    f"                 {len(run.latencies) / run.seconds:6.2f} requests/s, "
                    f"median {statistics.median(run.latencies):5.2f} s, "
                    f"{len(run.errors)} failed"
                )
        finally:
            stop_ray()


if __name__ == "__main__":
    main()
