"""The three services in a child process on free localhost ports, for tests and benchmarks.

running = start(folder, media_folder)    # `bgm serve all` with a config written in folder
...                                      # running.gateway is "127.0.0.1:PORT"
stop(running)                            # SIGTERM: drain, then exit status
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.config import ServingConfig

_HANDED_OUT: set[int] = set()
# Ports are drawn below the kernel's ephemeral range (32768 and up on Linux), from which both
# a bind to port 0 and every outgoing connection take theirs: a port found free there could be
# taken by a client's connection before its service binds it. Each pytest-xdist worker (up to
# 23; more share blocks) draws from its own block, a process outside pytest from the first,
# so two workers never pick the same port before either binds it.
_PORT_BASE, _PORT_BLOCK, _PORT_BLOCKS = 20000, 500, 24


def free_port() -> int:
    """A localhost port free now, from this process's block, never one this process handed
    out before."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) % (_PORT_BLOCKS - 1) + 1 if worker.startswith("gw") else 0
    first = _PORT_BASE + block * _PORT_BLOCK
    # Where in the block to start: another run beside this one (a benchmark, a second
    # checkout's tests) most likely starts elsewhere.
    start = random.randrange(_PORT_BLOCK)
    for step in range(_PORT_BLOCK):
        port = first + (start + step) % _PORT_BLOCK
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port left in {first}..{first + _PORT_BLOCK - 1}")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    gateway: str
    tagger: str
    generator: str
    metrics: str
    generator_metrics: str
    staging: Path
    tagger_scratch: Path
    media: Path
    outputs: Path
    log: Path


def write_config(
    folder: Path,
    media: Path,
    tagger_sources: dict[str, object] | None = None,
    changes: dict[str, dict[str, Any]] | None = None,
    **gateway: object,
) -> tuple[Path, dict[str, int]]:
    """A config for the three services on free ports; `changes` are merged into its
    sections (auth, serving's endpoints, ...), `gateway` into the gateway's."""
    ports = {name: free_port() for name in ("gateway", "tagger", "generator")}
    metrics = {name: free_port() for name in ports}
    staging = folder / "staging"
    outputs = folder / "outputs"
    outputs.mkdir(exist_ok=True)
    config: dict[str, dict[str, Any]] = {
        "tagger": {
            "sources": tagger_sources or {"file_roots": [str(staging), str(media)]},
            "scratch_dir": str(folder / "tagger-scratch"),
        },
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
    for section, values in (changes or {}).items():
        merged = config.setdefault(section, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    path = folder / "bgm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ports | {f"{k}_metrics": v for k, v in metrics.items()}


def wait_serving(
    address: str,
    service: str = "",
    seconds: float = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
    options: tuple[tuple[str, str], ...] = (),
    statuses: tuple[int, ...] = (health_pb2.HealthCheckResponse.SERVING,),
) -> None:
    """Until the health service says one of `statuses` (SERVING by default)."""
    deadline = time.monotonic() + seconds
    channel = (grpc.insecure_channel(address) if credentials is None
               else grpc.secure_channel(address, credentials, options=options))  # fmt: skip
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status in statuses:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} never answered {statuses}")


def start(
    folder: Path,
    media: Path,
    which: str = "all",
    extra_args: tuple[str, ...] = (),
    tagger_sources: dict[str, object] | None = None,
    changes: dict[str, dict[str, Any]] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: tuple[tuple[str, str], ...] = (),
    alone: bool = False,
    **gateway: object,
) -> Running:
    """`credentials` (and channel `options`): how to reach the services when they use TLS.
    `alone`: the service runs without the ones it calls (a gateway alone is up, but NOT_SERVING
    once it sees them down), so wait until it answers at all."""
    config, ports = write_config(folder, media, tagger_sources, changes, **gateway)
    log = folder / f"serve-{which}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "--config",
            str(config),
            "serve",
            which,
            *extra_args,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    running = Running(
        process,
        f"127.0.0.1:{ports['gateway']}",
        f"127.0.0.1:{ports['tagger']}",
        f"127.0.0.1:{ports['generator']}",
        f"http://127.0.0.1:{ports['gateway_metrics']}/metrics",
        # `serve all` serves its one registry on the gateway's metrics port only.
        f"http://127.0.0.1:{ports['gateway_metrics' if which == 'all' else 'generator_metrics']}"
        "/metrics",
        folder / "staging",
        folder / "tagger-scratch",
        media,
        folder / "outputs",
        log,
    )
    try:
        up = (health_pb2.HealthCheckResponse.SERVING,
              *((health_pb2.HealthCheckResponse.NOT_SERVING,) if alone else ()))  # fmt: skip
        wait_serving(running.gateway if which in ("all", "gateway") else getattr(running, which),
                     credentials=credentials, options=options, statuses=up)  # fmt: skip
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"the services did not start:\n{log.read_text()}") from None
    return running


def stop(running: Running) -> int:
    running.process.send_signal(signal.SIGTERM)
    return running.process.wait(timeout=60)


# The environment of the local Ray cluster's commands. Its authentication is set rather than
# left to Ray's default: once any local `ray.init()` has left a token in ~/.ray, `ray start`
# turns token authentication on, and `serve deploy` is then refused by the dashboard (401).
# Each node runs a Python collection in its Ray processes this often, seconds (Ray's default:
# 90 minutes). The messages of a stream its caller cancelled before reading them stay in the
# object store until one runs (a reference cycle in Ray's own processes holds them); the
# Kubernetes manifests set the same on every Ray pod, and the largest message Ray's gRPC
# proxy takes or sends: serving.max_message_bytes, as the standalone servers (Ray's default
# of 2 GiB let any caller make the proxy hold that much before a servicer saw the request).
RAY_ENV = {
    "RAY_DISABLE_USAGE_STATS": "1",
    "RAY_AUTH_MODE": "disabled",
    "RAY_local_gc_interval_s": "30",
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(ServingConfig().max_message_bytes),
}


def run_ray(command: list[str], **options: Any) -> subprocess.CompletedProcess:
    """A `ray` or `serve` command, in RAY_ENV."""
    return subprocess.run(command, env={**os.environ, **RAY_ENV}, **options)


def ray_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("ray")), *args]


def serve_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("serve")), *args]


def start_ray(folder: Path, cpus: int = 2, metrics_port: int = 0) -> str:
    """`ray start --head` on free ports (Ray's metrics on `metrics_port` if given); returns the
    dashboard address Serve deploys to."""
    dashboard = free_port()
    metrics = [f"--metrics-export-port={metrics_port}"] if metrics_port else []
    run_ray(
        ray_command("start", "--head", f"--num-cpus={cpus}", f"--port={free_port()}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    "--disable-usage-stats", *metrics),
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return f"http://127.0.0.1:{dashboard}"


def stop_ray() -> None:
    run_ray(ray_command("stop", "--force"), check=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)  # fmt: skip


def serve_config(
    source: Path,
    folder: Path,
    grpc_port: int,
    http_port: int,
    changes: dict[str, dict] | None = None,
) -> Path:
    """A copy of a Serve config on other ports, with per-application config changes."""
    config = yaml.safe_load(source.read_text())
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    for application in config["applications"]:
        settings = application.setdefault("args", {}).setdefault("config", {})
        gateway = settings.get("gateway")
        if gateway is not None:
            for key in ("tagger_address", "generator_address"):
                gateway[key] = f"127.0.0.1:{grpc_port}"
        for section, values in (changes or {}).get(application["name"], {}).items():
            settings.setdefault(section, {}).update(values)
    path = folder / f"serve-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# A deployment serves in these states: autoscaling up or down, its replicas run (one that an
# earlier load scaled up stays DOWNSCALING for Serve's downscale delay, which had failed
# bench_ray's second deploy after 180 s).
SERVING_DEPLOYMENTS = ("HEALTHY", "UPSCALING", "DOWNSCALING")


def all_serving(applications: dict[str, Any], names: list[str]) -> bool:
    """Whether Serve's REST API reply (`applications`) has every named application RUNNING
    with every deployment serving."""
    return all(applications.get(n, {}).get("status") == "RUNNING" for n in names) and all(
        d.get("status") in SERVING_DEPLOYMENTS
        for n in names
        for d in applications[n].get("deployments", {}).values()
    )


def deploy(dashboard: str, config: Path, seconds: float = 180.0) -> None:
    """`serve deploy`, then wait until every application is RUNNING and serving."""
    run_ray(serve_command("deploy", "-a", dashboard, str(config)), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    names = [a["name"] for a in yaml.safe_load(config.read_text())["applications"]]
    deadline = time.monotonic() + seconds
    applications: dict[str, Any] = {}
    while time.monotonic() < deadline:
        # Serve's REST API, not `serve status`: each of those is a process that imports Ray,
        # seconds of CPU taken from the replicas being started.
        with urllib.request.urlopen(f"{dashboard}/api/serve/applications/", timeout=10) as reply:
            applications = json.load(reply).get("applications") or {}
        if all_serving(applications, names):
            return
        time.sleep(1.0)
    lines = []
    for name in names:
        app = applications.get(name, {})
        lines.append(f"{name}: {app.get('status')} {app.get('message', '')}")
        for deployment, state in app.get("deployments", {}).items():
            lines.append(f"  {deployment}: {state.get('status')} {state.get('message', '')}")
    raise TimeoutError(
        f"Serve applications not RUNNING after {seconds:.0f} s:\n" + "\n".join(lines)
    )


# ---- certificates for tests and benchmarks ------------------------------------------


@dataclass
class Pki:
    folder: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    ca_file: Path

    def issue(self, name: str, server: bool) -> tuple[Path, Path]:
        """A certificate and key for `name` (a server for localhost/127.0.0.1, or a client),
        signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)  # fmt: skip
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_file, key_file = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        return cert_file, key_file


def make_pki(folder: Path, name: str) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    ca_file = folder / f"{name}.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Pki(folder, key, ca, ca_file)
