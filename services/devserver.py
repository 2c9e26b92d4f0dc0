"""The three services in a child process on free localhost ports, for tests and benchmarks.

running = start(folder, media_folder)    # `bgm serve all` with a config written in folder
...                                      # running.gateway is "127.0.0.1:PORT"
stop(running)                            # SIGTERM: drain, then exit status
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    gateway: str
    tagger: str
    generator: str
    metrics: str
    generator_metrics: str
    staging: Path
    media: Path
    outputs: Path
    log: Path


def write_config(folder: Path, media: Path, **gateway: object) -> tuple[Path, dict[str, int]]:
    ports = {name: free_port() for name in ("gateway", "tagger", "generator")}
    metrics = {name: free_port() for name in ports}
    staging = folder / "staging"
    outputs = folder / "outputs"
    outputs.mkdir(exist_ok=True)
    config = {
        "tagger": {"sources": {"file_roots": [str(staging), str(media)]}},
        "gateway": {
            "tagger_address": f"127.0.0.1:{ports['tagger']}",
            "generator_address": f"127.0.0.1:{ports['generator']}",
            "staging_dir": str(staging),
            "sources": {"file_roots": [str(media)]},
            "output_roots": [str(outputs)],
            **gateway,
        },
        "serving": {name: {"port": ports[name], "metrics_port": metrics[name]} for name in ports}
        | {"grace_s": 20},
    }
    path = folder / "bgm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ports | {f"{k}_metrics": v for k, v in metrics.items()}


def wait_serving(address: str, service: str = "", seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} never became SERVING")


def start(folder: Path, media: Path, which: str = "all", **gateway: object) -> Running:
    config, ports = write_config(folder, media, **gateway)
    log = folder / f"serve-{which}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "--config", str(config), "serve", which],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    running = Running(
        process,
        f"127.0.0.1:{ports['gateway']}",
        f"127.0.0.1:{ports['tagger']}",
        f"127.0.0.1:{ports['generator']}",
        f"http://127.0.0.1:{ports['gateway_metrics']}/metrics",
        f"http://127.0.0.1:{ports['generator_metrics']}/metrics",
        folder / "staging",
        media,
        folder / "outputs",
        log,
    )
    try:
        wait_serving(running.gateway if which in ("all", "gateway") else getattr(running, which))
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"the services did not start:\n{log.read_text()}") from None
    return running


def stop(running: Running) -> int:
    running.process.send_signal(signal.SIGTERM)
    return running.process.wait(timeout=60)
