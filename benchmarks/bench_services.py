"""Benchmark of the gRPC services: gateway overhead, and many clients at once.

    python benchmarks/bench_services.py

The three services run as `bgm serve all` in a child process on free localhost ports.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from services.config import ComposerConfig, RequestLimits, TaggerConfig
from services.devserver import start, stop
from services.domain import OutputOptions, UserControls
from services.gateway.client import score_remote
from services.generator.backends.composer.backend import ComposerGenerator
from services.media.synth import Shot, write_video
from services.pipeline import ScorePipeline
from services.tagger.backends.vision import VisionTagger
from services.vocabulary import load_vocabulary

sys.path.insert(0, str(Path(__file__).parent))
from bench_tagger import CACHE, best_of, proc_status_mb, speed_video


def overhead_section(gateway: str, folder: Path) -> float:
    video = speed_video(1280, 720)
    pipeline = ScorePipeline(
        VisionTagger(TaggerConfig()),
        ComposerGenerator(ComposerConfig()),
        load_vocabulary(),
        RequestLimits(),
    )
    local_out = folder / "local.mp4"
    remote_out = folder / "remote.mp4"
    in_process = best_of(3, lambda: pipeline.score(video, UserControls(), OutputOptions(local_out)))
    through = best_of(
        3,
        lambda: score_remote(
            gateway, str(video), UserControls(), OutputOptions(remote_out), lambda f: None
        ),
    )
    print("60 s 1280x720 H.264 -> MP4, best of 3:")
    print(f"  in-process `bgm score` pipeline      {in_process:6.2f} s")
    print(f"  through the gateway (upload)         {through:6.2f} s")
    print(f"  ratio                                {through / in_process:6.2f}")
    return through


def secured_section(folder: Path, media: Path, plaintext_s: float) -> None:
    """The same request with mutual TLS on every hop and a bearer token at the gateway."""
    import hashlib

    import yaml

    from services.config import ClientTlsConfig
    from services.devserver import make_pki

    pki = make_pki(folder / "pki", "bench-ca")
    server_cert, server_key = pki.issue("server", server=True)
    client_cert, client_key = pki.issue("client", server=False)
    key = "bench-key"
    keys = folder / "keys.yaml"
    keys.write_text(
        yaml.safe_dump([{"tenant": "bench", "sha256": hashlib.sha256(key.encode()).hexdigest()}])
    )
    tls = {
        "cert_file": str(server_cert),
        "key_file": str(server_key),
        "client_ca_file": str(pki.ca_file),
    }
    client = {
        "ca_file": str(pki.ca_file),
        "cert_file": str(client_cert),
        "key_file": str(client_key),
    }
    changes: dict[str, dict[str, Any]] = {
        "auth": {"enabled": True, "api_keys_file": str(keys)},
        "serving": {name: {"tls": tls} for name in ("gateway", "tagger", "generator")},
    }
    credentials = grpc.ssl_channel_credentials(
        pki.ca_file.read_bytes(), client_key.read_bytes(), client_cert.read_bytes()
    )
    running = start(
        folder / "secured",
        media,
        changes=changes,
        credentials=credentials,
        tagger_tls=client,
        generator_tls=client,
    )
    try:
        video = speed_video(1280, 720)
        out = folder / "secured.mp4"
        secured = best_of(
            3,
            lambda: score_remote(
                running.gateway,
                str(video),
                UserControls(),
                OutputOptions(out),
                lambda f: None,
                metadata=(("authorization", f"Bearer {key}"),),
                tls=ClientTlsConfig(**client),
            ),
        )
    finally:
        stop(running)
    print("same, mutual TLS on every hop and an API key at the gateway, best of 3:")
    print(f"  through the gateway (upload)         {secured:6.2f} s")
    overhead = 100 * (secured / plaintext_s - 1)
    print(f"  overhead against plaintext           {overhead:+6.1f} %")


@dataclass
class LoadRun:
    latencies: list[float]
    errors: list[str]
    seconds: float


def concurrent_scores(
    server: str, video: Path, folder: Path, clients: int, requests: int, extension: str
) -> LoadRun:
    """`clients` threads, each scoring `video` `requests` times through `server`."""
    run = LoadRun([], [], 0.0)
    lock = threading.Lock()

    def client(number: int) -> None:
        for request in range(requests):
            out = folder / f"c{number}-{request}{extension}"
            started = time.perf_counter()
            try:
                score_remote(server, str(video), UserControls(seed=request), OutputOptions(out),
                             lambda f: None, timeout_s=600)  # fmt: skip
            except grpc.RpcError as error:
                with lock:
                    run.errors.append(f"{error.code().name}: {error.details()}")
                continue
            with lock:
                run.latencies.append(time.perf_counter() - started)
            out.unlink()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.perf_counter() - started
    return run


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def concurrency_section(
    gateway: str, pid: int, folder: Path, staging: Path, clients: int, requests: int
) -> None:
    video = write_video(
        folder / "short.mp4", [Shot(2.0, speed=0.3, hue=0.2), Shot(2.0, speed=0.7, hue=0.6)]
    )
    # Warm up at full concurrency (the allocator's arenas and the sample bank's caches fill
    # then), then two runs, with the services' memory and open files before and after each:
    # a leak shows as growth from one run to the next.
    concurrent_scores(gateway, video.path, folder, clients, requests, ".mp4")
    usage = [(proc_status_mb("VmRSS", pid), open_files(pid))]
    print(f"{clients} concurrent clients x {requests} requests, 4 s 320x180 videos -> MP4:")
    for number in (1, 2):
        run = concurrent_scores(gateway, video.path, folder, clients, requests, ".mp4")
        usage.append((proc_status_mb("VmRSS", pid), open_files(pid)))
        latencies, errors, took = sorted(run.latencies), run.errors, run.seconds
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(f"  run {number}: requests ok / errors         {len(latencies)} / {len(errors)}")
        for error in sorted(set(errors))[:5]:
            print(f"    {error}")
        print(
            f"         latency p50 / p99             {statistics.median(latencies):6.2f} s / "
            f"{p99:6.2f} s"
        )
        print(f"         throughput                    {len(latencies) / took:6.2f} requests/s")
    print("  services' memory (MB) / open files: "
          + " -> ".join(f"{mb:.0f} / {files}" for mb, files in usage)
          + "  (before, after run 1, after run 2)")  # fmt: skip
    print(f"  staging folders left                 {len(list(staging.iterdir()))}")


def main() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        media = folder / "media"
        media.mkdir()
        # The clients all call from one address: the per-client limit (8 by default) is
        # raised to let one process play sixteen clients.
        running = start(folder, media, max_requests_per_client=16)
        try:
            plaintext = overhead_section(running.gateway, folder)
            concurrency_section(running.gateway, running.process.pid, folder, running.staging,
                                16, 5)  # fmt: skip
        finally:
            stop(running)
        (folder / "secured").mkdir()
        secured_section(folder, media, plaintext)


if __name__ == "__main__":
    main()
