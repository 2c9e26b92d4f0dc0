"""The three services as Ray Serve applications behind Ray's gRPC proxy."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from services.devserver import (
    RAY_ENV,
    SERVING_DEPLOYMENTS,
    all_serving,
    deploy,
    free_port,
    ray_command,
    run_ray,
    serve_config,
    start,
    start_ray,
    stop,
    stop_ray,
)
from services.media.synth import Shot, SyntheticVideo, write_video
from tests.bgm_command import Finished, bgm

ROOT = Path(__file__).resolve().parent.parent
PROFILES = [ROOT / f"deploy/serve/bgm-{name}.yaml" for name in ("cpu", "gpu", "sonique")]


def test_a_deployment_scaling_after_a_load_counts_as_serving():
    """Waiting for a deploy: a deployment that autoscales (its replicas serve meanwhile)
    counts; one still starting or failed does not. bench_ray's second deploy had waited 180 s
    and failed: the tagger, scaled up by the load before it, was DOWNSCALING."""
    from ray.serve.schema import DeploymentStatus

    assert set(SERVING_DEPLOYMENTS) <= {status.value for status in DeploymentStatus}

    def reply(tagger: str) -> dict:
        return {
            "tagger": {"status": "RUNNING", "deployments": {"tagger": {"status": tagger}}},
            "generator": {"status": "RUNNING", "deployments": {"generator": {"status": "HEALTHY"}}},
        }

    names = ["tagger", "generator"]
    assert all_serving(reply("DOWNSCALING"), names)
    assert all_serving(reply("UPSCALING"), names)
    assert not all_serving(reply("UPDATING"), names)
    assert not all_serving(reply("UNHEALTHY"), names)
    assert not all_serving(reply("HEALTHY"), [*names, "gateway"])


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_serve_config_is_valid_for_ray(path: Path):
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(config)
    assert {a.name for a in schema.applications} == {"tagger", "generator", "gateway"}
    assert schema.grpc_options.port == 9000
    for application in schema.applications:
        module, attribute = application.import_path.split(":")
        builder = getattr(__import__(module, fromlist=[attribute]), attribute)
        assert callable(builder)
        (deployment,) = application.deployments
        assert deployment.autoscaling_config and deployment.max_ongoing_requests
    for function in schema.grpc_options.grpc_servicer_functions:
        module, _, name = function.rpartition(".")
        assert callable(getattr(__import__(module, fromlist=[name]), name))


def test_gpu_profile_gives_the_generator_a_gpu_and_lets_it_scale_to_zero():
    config = yaml.safe_load(PROFILES[1].read_text())
    generator = next(a for a in config["applications"] if a["name"] == "generator")
    (deployment,) = generator["deployments"]
    assert deployment["ray_actor_options"]["num_gpus"] == 1
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    cpu = yaml.safe_load(PROFILES[0].read_text())
    assert all(
        "num_gpus" not in d["ray_actor_options"]
        for a in cpu["applications"]
        for d in a["deployments"]
    )


@dataclass
class RayCluster:
    dashboard: str
    proxy: str
    folder: Path
    grpc_port: int
    http_port: int
    poison: Path
    metrics: str
    # Whether the applications differ from the profile's: a test that swaps one leaves it
    # swapped, and the next test that needs the profile's redeploys it (each deploy starts
    # replicas: tens of seconds).
    changed: bool = False

    def config(self, changes: dict[str, dict] | None = None) -> Path:
        """The CPU profile on this cluster's ports, the tagger's poison file set."""
        changes = {"tagger": {"serving": {"poison_file": str(self.poison)}}, **(changes or {})}
        return serve_config(PROFILES[0], self.folder, self.grpc_port, self.http_port, changes)

    def deploy(self, config: Path, changed: bool = True) -> None:
        self.changed = True  # until the deploy has finished
        deploy(self.dashboard, config)
        self.changed = changed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    folder = tmp_path_factory.mktemp("ray")
    stop_ray()
    metrics_port = free_port()
    patch = pytest.MonkeyPatch()
    # The cluster's authentication as devserver's commands set it, for this process's
    # ray.init too.
    for name, value in RAY_ENV.items():
        patch.setenv(name, value)
    # Ray starts its workers at nice 15, where the tests running beside these (pytest -n)
    # starve them past the deploy's deadline; here they share the machine evenly.
    patch.setenv("RAY_worker_niceness", "0")
    try:
        dashboard = start_ray(folder, cpus=2, metrics_port=metrics_port)
        grpc_port = free_port()
        cluster = RayCluster(
            dashboard=dashboard,
            proxy=f"127.0.0.1:{grpc_port}",
            folder=folder,
            grpc_port=grpc_port,
            http_port=free_port(),
            poison=folder / "poison",
            metrics=f"http://127.0.0.1:{metrics_port}/metrics",
        )
        cluster.deploy(cluster.config(), changed=False)
        yield cluster
    finally:
        stop_ray()
        patch.undo()


@pytest.fixture
def profile(cluster: RayCluster) -> RayCluster:
    """The cluster running the CPU profile's applications as they ship."""
    if cluster.changed:
        cluster.deploy(cluster.config(), changed=False)
    return cluster


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    folder = tmp_path_factory.mktemp("ray-media")
    return write_video(
        folder / "clip.mp4", [Shot(2.0, speed=0.4, hue=0.1), Shot(2.0, speed=0.8, hue=0.6)]
    )


def client_score(server: str, video: Path, out: Path, *extra: str) -> Finished:
    return bgm("client", "score", str(video), "--server", server, "-o", str(out), *extra)


@pytest.mark.slow
def test_score_through_rays_grpc_proxy(profile, clip, tmp_path):
    out = tmp_path / "scored.mp4"
    result = client_score(profile.proxy, clip.path, out, "--genre", "rock")
    assert result.returncode == 0, result.stderr
    assert "rock (user)" in result.stdout and "1/1 on a beat" in result.stdout
    assert out.stat().st_size > 10_000
    # Each replica logs its requests' audit lines, with time and level, to its worker's
    # standard error (in Ray's session logs): nothing had set up logging in a replica, and
    # every audit line was dropped.
    logs = Path("/tmp/ray/session_latest/logs")
    deadline = time.monotonic() + 30
    while not any(" INFO bgm.audit " in line and '"service": "bgm.v1.Gateway"' in line
                  and '"method": "Score"' in line
                  for path in logs.glob("worker-*.err")
                  for line in path.read_text(errors="replace").splitlines()):  # fmt: skip
        assert time.monotonic() < deadline, "no audit line from the gateway's replica"
        time.sleep(0.5)


@pytest.mark.slow
def test_the_gateway_analyzes_through_rays_grpc_proxy(profile, clip):
    """Gateway.Analyze, a unary call the proxy carries (the studio's, through
    `analyze_remote`): Ray's gateway application had offered only Score ("Tried to call a
    method 'Analyze' that does not exist")."""
    from services.gateway.client import analyze_remote

    message = analyze_remote(profile.proxy, clip.path)
    assert message.duration_s == pytest.approx(clip.duration_s, abs=0.1)
    assert [round(cut.time_s, 1) for cut in message.cuts] == [2.0]
    # Gateway.Describe the same way.
    from services.gen.bgm.v1 import gateway_pb2, gateway_pb2_grpc

    with grpc.insecure_channel(profile.proxy) as channel:
        offered = gateway_pb2_grpc.GatewayStub(channel).Describe(
            gateway_pb2.GatewayDescribeRequest(), metadata=(("application", "gateway"),),
            timeout=30,
        )  # fmt: skip
    assert offered.generator == "composer" and "rock" in offered.vocabulary.genres


@pytest.mark.slow
def test_proxy_reports_its_applications_and_a_missing_one(cluster, clip):
    from services.gen.bgm.v1 import tagger_pb2, tagger_pb2_grpc

    with grpc.insecure_channel(cluster.proxy) as channel:
        stub = tagger_pb2_grpc.TaggerStub(channel)
        reply = stub.Describe(
            tagger_pb2.TaggerDescribeRequest(), metadata=(("application", "tagger"),), timeout=30
        )
        assert reply.name == "vision"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Describe(
                tagger_pb2.TaggerDescribeRequest(),
                metadata=(("application", "nonexistent"),),
                timeout=30,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_bad_input_keeps_its_status_through_ray(profile, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 100)
    result = client_score(profile.proxy, notes, tmp_path / "out.mp4")
    assert result.returncode == 2  # bad input, as `bgm score` says it
    assert "INVALID_ARGUMENT" in result.stderr and "not a video" in result.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_a_failing_health_check_makes_serve_replace_the_replica(cluster):
    import ray
    from ray.util.state import list_actors

    ray.init(address="auto", logging_level=logging.ERROR)
    try:

        def tagger_replicas() -> set[str]:
            return {
                a.actor_id
                for a in list_actors(filters=[("state", "=", "ALIVE")])
                if "tagger" in (a.class_name or "") and "Replica" in a.class_name
            }

        original = tagger_replicas()
        assert len(original) == 1
        cluster.poison.touch()
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                current = tagger_replicas()
                if current and not current & original:
                    break
                time.sleep(1)
            else:
                raise AssertionError("Serve kept the unhealthy replica")
        finally:
            cluster.poison.unlink()
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_the_proxy_offers_reflection(cluster):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(cluster.proxy) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
        )
    names = {s.name for s in reply.list_services_response.service}
    assert {"bgm.v1.Gateway", "bgm.v1.Tagger", "bgm.v1.Generator"} <= names


@pytest.mark.slow
def test_service_metrics_are_exported_through_ray(profile, clip, tmp_path):
    import urllib.request

    result = client_score(profile.proxy, clip.path, tmp_path / "m.wav")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(profile.metrics, timeout=5).read().decode()
        if "bgm_requests_total{" in text and 'method="Score"' in text:
            break
        time.sleep(2)
    lines = [line for line in text.splitlines() if "bgm_requests_total{" in line]
    assert any('method="Score"' in line and 'code="OK"' in line for line in lines), lines
    assert any("bgm_compute_seconds_per_music_second" in line for line in text.splitlines())


def object_store_mib() -> int:
    """What Ray's object store holds now, MiB (`ray memory --stats-only`)."""
    out = run_ray(ray_command("memory", "--stats-only"), capture_output=True, text=True,
                  check=True).stdout  # fmt: skip
    found = re.search(r"Plasma memory usage (\d+) MiB", out)
    assert found is not None, out
    return int(found.group(1))


# A caller that reads slowly: a small receive window, so what it does not read stays on the
# server's side.
SLOW_READER = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


@pytest.mark.slow
def test_a_cancelled_streams_unread_messages_leave_the_object_store(profile, beat_analysis):
    from services.contract import brief_to_proto
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc
    from services.generator.beatcheck import genre_brief

    before = object_store_mib()
    brief = brief_to_proto(genre_brief(beat_analysis, "pop", duration_s=60.0))
    with grpc.insecure_channel(profile.proxy, options=SLOW_READER) as channel:
        call = generator_pb2_grpc.GeneratorStub(channel).Generate(
            generator_pb2.GenerateRequest(brief=brief, stems=True),
            metadata=(("application", "generator"),),
            timeout=300,
        )
        next(call)
        # Ray runs the replica's stream to its end; what the caller has not read waits in
        # the object store (about 130 MiB of music and stems).
        deadline = time.monotonic() + 120
        while object_store_mib() < before + 64:
            assert time.monotonic() < deadline, "the stream never reached the object store"
            time.sleep(1)
        call.cancel()
    # Until a Python collection ran in Ray's processes, the cancelled stream's messages had
    # stayed there (661 MiB for three such streams, 123 s after their cancel).
    deadline = time.monotonic() + 60
    while (held := object_store_mib()) > before + 8:
        assert time.monotonic() < deadline, f"{held} MiB still held a minute after the cancel"
        time.sleep(2)


# ---- tests that change the applications (last: the tests above run on the profile as it
# ships, and a change is redeployed away only when a later test asks for the profile) ----


@pytest.mark.slow
def test_saturated_replicas_push_back_with_resource_exhausted(cluster, beat_analysis):
    from concurrent.futures import ThreadPoolExecutor

    from services.contract import brief_to_proto
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc
    from services.generator.beatcheck import genre_brief

    config = cluster.config()
    data = yaml.safe_load(config.read_text())
    generator = next(a for a in data["applications"] if a["name"] == "generator")
    one = {"min_replicas": 1, "max_replicas": 1, "initial_replicas": 1,
           "target_ongoing_requests": 1}  # fmt: skip
    generator["deployments"][0].update(
        max_ongoing_requests=1, max_queued_requests=1, autoscaling_config=one
    )
    config.write_text(yaml.safe_dump(data))
    cluster.deploy(config)
    brief = brief_to_proto(genre_brief(beat_analysis, "pop", duration_s=240.0))

    def generate(_: int) -> grpc.StatusCode:
        with grpc.insecure_channel(cluster.proxy) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            try:
                for _message in stub.Generate(
                    generator_pb2.GenerateRequest(brief=brief),
                    metadata=(("application", "generator"),),
                    timeout=120,
                ):
                    pass
            except grpc.RpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(generate, range(6)))
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.mark.slow
def test_swap_in_a_generator_served_outside_ray(cluster, clip, tmp_path):
    # A standalone generator; the gateway application is redeployed to use it instead.
    outside = start(tmp_path, clip.path.parent, which="generator")
    try:
        gateway = {"generator_address": outside.generator, "generator_metadata": {}}
        cluster.deploy(cluster.config({"gateway": {"gateway": gateway}}))
        before = outside_requests(outside.generator_metrics)
        result = client_score(cluster.proxy, clip.path, tmp_path / "swapped.wav")
        assert result.returncode == 0, result.stderr
        assert outside_requests(outside.generator_metrics) == before + 1
    finally:
        assert stop(outside) == 0


def outside_requests(metrics_url: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('bgm_requests_total{code="OK",method="Generate"')
    )


@pytest.mark.slow
def test_swap_in_a_generator_app_with_another_backend(cluster, clip, tmp_path):
    """A diffusion generator app in place of the composer, pooling concurrent requests into
    shared pipeline calls (@serve.batch) and giving each caller its own music."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from services.config import ComposerConfig, DiffusionConfig
    from services.contract import brief_to_proto
    from services.gen.bgm.v1 import generator_pb2, generator_pb2_grpc
    from services.generator.backends.diffusion.backend import DiffusionGenerator
    from services.generator.backends.diffusion.tiny import stable_audio
    from services.generator.beatcheck import genre_brief

    model = stable_audio(tmp_path, window_s=4.0)
    generator = {
        "backend": "diffusion",
        "diffusion": {"model_path": str(model), "steps": 2},
        # The pair below fills a batch; the window is wide enough that a loaded machine still
        # lands both calls in it.
        "batching": {"max_jobs": 2, "wait_s": 5.0},
    }
    serving = {"generator": {"port": 0, "max_concurrent": 4}}
    cluster.deploy(cluster.config({"generator": {"generator": generator, "serving": serving}}))
    result = client_score(cluster.proxy, clip.path, tmp_path / "diffused.wav")
    assert result.returncode == 0, result.stderr
    assert "ending: fade" in result.stdout  # the diffusion backend's plan, not the composer's

    from services.config import TaggerConfig
    from services.tagger.backend import AnalysisRequest
    from services.tagger.backends import create_tagger_backend

    analysis = create_tagger_backend(TaggerConfig()).analyze(AnalysisRequest(clip.path))
    briefs = [genre_brief(analysis, "ambient", seed=3, sample_rate=48000),
              genre_brief(analysis, "rock", seed=9, sample_rate=48000)]  # fmt: skip

    def generate(brief) -> np.ndarray:
        request = generator_pb2.GenerateRequest(brief=brief_to_proto(brief))
        with grpc.insecure_channel(cluster.proxy) as channel:
            stub = generator_pb2_grpc.GeneratorStub(channel)
            messages = stub.Generate(request, metadata=(("application", "generator"),),
                                     timeout=120)  # fmt: skip
            pcm = b"".join(m.audio.pcm_f32le for m in messages
                           if m.WhichOneof("event") == "audio")  # fmt: skip
        return np.frombuffer(pcm, np.float32).reshape(-1, 2)

    with ThreadPoolExecutor(2) as pool:
        served = list(pool.map(generate, briefs))
    local = DiffusionGenerator(DiffusionConfig(model_path=model, steps=2), ComposerConfig())
    for brief, audio in zip(briefs, served, strict=True):
        np.testing.assert_allclose(audio, local.generate(brief).audio, atol=1e-4)
    assert not np.allclose(served[0], served[1])
    # And they were generated together: a batch of more than one job was recorded.
    assert batches_over_one_job(cluster.metrics) >= 1


def batches_over_one_job(metrics_url: str) -> float:
    """Batches of the generator holding more than one job, from Ray's exported histogram
    (waiting for the export, which lags by seconds)."""
    import re
    import urllib.request

    deadline = time.monotonic() + 60
    over = 0.0
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        counts = re.findall(r"^\S*bgm_generator_batch_jobs_count\{.*\} (\S+)$", text, re.M)
        ones = re.findall(r'^\S*bgm_generator_batch_jobs_bucket\{.*le="1(?:\.0)?".*\} (\S+)$',
                          text, re.M)  # fmt: skip
        over = sum(map(float, counts)) - sum(map(float, ones))
        if over >= 1:
            break
        time.sleep(2)
    return over
