"""The Kubernetes manifests, validated offline: rendered with kustomize, checked against the
Kubernetes and KubeRay schemas, loaded into the kubernetes client's models, and reviewed."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT.parent / "shared" / "k8s-schemas"
KUBERNETES_VERSION = "1.32.0"  # the version docs/deploy.md names
OVERLAYS = ["cpu", "gpu", "sonique"]
CORE_KINDS = {"ConfigMap", "Service", "PersistentVolumeClaim", "PodDisruptionBudget"}


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl (with kustomize) is needed to render the manifests")
    rendered = subprocess.run([kubectl, "kustomize", str(folder)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(ROOT / "deploy/k8s/overlays" / request.param)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def rayservice(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (service,) = of_kind(objects, "RayService")
    return service


def strict(schema: Any) -> Any:
    """An OpenAPI v3 schema as JSON Schema in which undeclared fields are errors, except
    where the CRD says x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: strict(v) for k, v in schema.items()}
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        result.get("type") == "object"
        and "properties" in result
        and "additionalProperties" not in result
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@functools.cache
def crd_validator(name: str) -> Any:
    """A strict validator of a KubeRay CRD's v1 schema, built once: reading the CRD and
    checking its schema take seconds, validating an object a millisecond."""
    if not SCHEMAS.is_dir():
        raise FileNotFoundError(
            f"KubeRay's CRDs are expected in {SCHEMAS} (shared/ beside the checkout)"
        )
    crd = yaml.load((SCHEMAS / name).read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every container of the RayService's pod templates, with where it sits."""
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    found = [("head", c) for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]]
    for group in cluster.get("workerGroupSpecs", []):
        found += [(group["groupName"], c) for c in group["template"]["spec"]["containers"]]
    return found


COMPONENTS = ["auth", "monitoring", "tls"]


def with_components(folder: Path, overlay_name: str, components: list[str]) -> list[dict[str, Any]]:
    """An overlay rendered with optional components, from a kustomization in `folder`."""
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize takes relative paths only.
        "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays" / overlay_name, folder)],
        "components": [os.path.relpath(ROOT / "deploy/k8s/components" / c, folder)
                       for c in components],
    }))  # fmt: skip
    return kustomize(folder)


def pod_templates(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each of the RayService's pod templates with the labels KubeRay gives its pods (kuberay
    ray-operator/controllers/ray/common/pod.go, labelPod; the RayService controller marks
    the pods whose Serve proxy is healthy ray.io/serve=true, every node's with
    proxy_location EveryNode)."""
    service = rayservice(objects)
    cluster = service["spec"]["rayClusterConfig"]
    groups = [("head", "head", "headgroup", cluster["headGroupSpec"]["template"])]
    groups += [(g["groupName"], "worker", g["groupName"], g["template"])
               for g in cluster.get("workerGroupSpecs", [])]  # fmt: skip
    found = []
    for where, node_type, group, template in groups:
        labels = dict(template.get("metadata", {}).get("labels", {}))
        labels.setdefault("app.kubernetes.io/name", "kuberay")
        labels |= {"app.kubernetes.io/created-by": "kuberay-operator",
                   "ray.io/cluster": service["metadata"]["name"],
                   "ray.io/node-type": node_type, "ray.io/group": group,
                   "ray.io/is-ray-node": "yes", "ray.io/serve": "true"}  # fmt: skip
        found.append((where, {**template, "metadata": {"labels": labels}}))
    return found


def selected(selector: dict[str, str], objects: list[dict[str, Any]]) -> list[str]:
    """The pod templates whose pods `selector` (matchLabels) selects."""
    return [where for where, template in pod_templates(objects)
            if selector.items() <= template["metadata"]["labels"].items()]  # fmt: skip


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_every_reference_between_the_objects_reaches_one(tmp_path, overlay_name):
    """What each object names is there once rendered: the ConfigMap and the claim every pod
    mounts (kustomize adds a hash to a generated ConfigMap's name, and renames references
    only where it knows the field: the pods had mounted a "bgm-config" that did not exist),
    and the pods every selector means (the Service, the disruption budget, the PodMonitor,
    the NetworkPolicy had selected none: KubeRay does not label pods by the RayService's
    labels)."""
    objects = with_components(tmp_path, overlay_name, COMPONENTS)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for where, template in pod_templates(objects):
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, (where, volume)
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, (where, volume)
    (service,) = of_kind(objects, "Service")
    assert selected(service["spec"]["selector"], objects) == [w for w, _ in pod_templates(objects)]
    (budget,) = of_kind(objects, "PodDisruptionBudget")
    assert selected(budget["spec"]["selector"]["matchLabels"], objects) == ["head"]
    (monitor,) = of_kind(objects, "PodMonitor")
    assert selected(monitor["spec"]["selector"]["matchLabels"], objects) == [
        w for w, _ in pod_templates(objects)
    ]
    (policy,) = of_kind(objects, "NetworkPolicy")
    assert selected(policy["spec"]["podSelector"]["matchLabels"], objects) == [
        w for w, _ in pod_templates(objects)
    ]
    own = policy["spec"]["ingress"][1]["from"][0]["podSelector"]["matchLabels"]
    assert selected(own, objects) == [w for w, _ in pod_templates(objects)]


GIB = 1024**3
# What a replica's process holds besides its audio, and Ray's own processes on a pod
# (measured outside Ray on this project's CPU defaults: the vision tagger 0.57 GB after an
# analysis, the composer 0.80 GB after a 3-minute piece; Ray adds its worker's own).
REPLICA_BYTES = 1 * GIB
RAY_BYTES = 2 * GIB
# The gateway's mastering: its working set and the music, against the music (docs/services.md,
# "Memory for audio": 1.45 times).
MASTERING = 1.45


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("4", "500m", "16Gi") as a number."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 1024, "Mi": 1024**2, "Gi": GIB, "Ti": 1024**4}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def test_each_pod_holds_the_replicas_it_may_host(overlay, tmp_path, monkeypatch):
    """At their most replicas, the deployments a pod hosts fit it: their CPUs within its CPU
    limit (the GPU profile's head had 4 CPUs for up to 8 taggers of 2 and 4 gateways of 1,
    so at most one tagger ever ran), and in its memory limit each gateway's and generator's
    audio (its budget, or one larger request alone, limits.max_music_s at 48 kHz; the
    gateway's mastering on top), Ray's object store, and the processes themselves (the
    budgets had been 3 GiB a process, 12 GiB on an 8 GiB head)."""
    from services.ray_glue import application_settings

    _, objects = overlay
    (config_map,) = of_kind(objects, "ConfigMap")
    (tmp_path / "bgm.yaml").write_text(config_map["data"]["bgm.yaml"])
    monkeypatch.setenv("BGM_CONFIG", str(tmp_path / "bgm.yaml"))
    serve = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    pods = {"head": cluster["headGroupSpec"]}
    for group in cluster.get("workerGroupSpecs", []):
        pods[group["groupName"]] = group
    hosted: dict[str, list[tuple[str, dict[str, Any], Any]]] = {name: [] for name in pods}
    for app in serve["applications"]:
        settings = application_settings(app["args"].get("config", {}))
        (deployment,) = app["deployments"]
        options = deployment["ray_actor_options"]
        # A GPU replica lands on a GPU worker, one replica a GPU; the rest on the head
        # (bgm_head), or anywhere where there are no workers (the CPU profile: the head).
        where = "gpu" if options.get("num_gpus") else "head"
        hosted[where].append((app["name"], deployment, settings))
    for name, group in pods.items():
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        replicas = []
        for app_name, deployment, settings in hosted[name]:
            most = deployment["autoscaling_config"]["max_replicas"]
            if name != "head":
                # One replica a GPU, one GPU a worker: each worker hosts one.
                most = 1
            replicas.append((app_name, most, deployment["ray_actor_options"], settings))
        cpus = sum(most * options["num_cpus"] for _, most, options, _ in replicas)
        assert cpus <= quantity(limits["cpu"]), (name, cpus, limits["cpu"])
        # Each gateway or generator replica holds at once its budget's worth of requests'
        # audio, or one request larger than that alone (limits.max_music_s of 48 kHz
        # stereo); the gateway's mastering half as much again.
        audio = 0.0
        for app_name, most, _, settings in replicas:
            if app_name in ("gateway", "generator"):
                largest = settings.limits.max_music_s * 48000 * 2 * 4
                held = max(getattr(settings, app_name).audio_budget_bytes, largest)
                audio += most * held * (MASTERING if app_name == "gateway" else 1.0)
        store = quantity(group["rayStartParams"]["object-store-memory"])
        count = sum(most for _, most, _, _ in replicas)
        needed = audio + store + count * REPLICA_BYTES + RAY_BYTES
        assert needed <= quantity(limits["memory"]), (name, needed / GIB, limits["memory"])


def test_every_overlay_renders(overlay):
    name, objects = overlay
    kinds = {o["kind"] for o in objects}
    assert {"RayService", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    if name != "cpu":
        assert "PersistentVolumeClaim" in kinds


def test_core_kinds_are_valid_kubernetes_strictly(overlay):
    _, objects = overlay
    checked = 0
    for item in objects:
        if item["kind"] in CORE_KINDS:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 3


def test_rayservice_matches_kuberays_crd(overlay):
    _, objects = overlay
    crd_validator("ray.io_rayservices.yaml").validate(rayservice(objects))


def test_its_ray_cluster_matches_the_raycluster_crd(overlay):
    _, objects = overlay
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "bgm"},
        "spec": rayservice(objects)["spec"]["rayClusterConfig"],
    }
    crd_validator("ray.io_rayclusters.yaml").validate(cluster)


def test_strictness_catches_a_misspelt_field(overlay):
    _, objects = overlay
    broken = yaml.safe_load(yaml.safe_dump(rayservice(objects)))
    broken["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalling"):
        crd_validator("ray.io_rayservices.yaml").validate(broken)


def test_embedded_serve_config_is_the_one_in_deploy_serve(overlay):
    from ray.serve.schema import ServeDeploySchema

    name, objects = overlay
    embedded = rayservice(objects)["spec"]["serveConfigV2"]
    source = (ROOT / f"deploy/serve/bgm-{name}.yaml").read_text()
    assert yaml.safe_load(embedded) == yaml.safe_load(source)
    schema = ServeDeploySchema.model_validate(yaml.safe_load(embedded))
    for application in schema.applications:
        for deployment in application.deployments:
            assert deployment.autoscaling_config is not None


def test_objects_load_into_the_kubernetes_client_models(overlay):
    _, objects = overlay
    api = client.ApiClient()
    models = {
        "ConfigMap": "V1ConfigMap",
        "Service": "V1Service",
        "PersistentVolumeClaim": "V1PersistentVolumeClaim",
        "PodDisruptionBudget": "V1PodDisruptionBudget",
    }
    for item in objects:
        if item["kind"] in models:
            model = api._ApiClient__deserialize(item, models[item["kind"]])  # type: ignore[attr-defined]
            assert model.metadata.name == item["metadata"]["name"]
    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster.get("workerGroupSpecs", [])
    ]
    for template in templates:
        pod = api._ApiClient__deserialize(template, "V1PodTemplateSpec")  # type: ignore[attr-defined]
        assert pod.spec.containers


def test_every_container_has_requests_and_limits(overlay):
    _, objects = overlay
    for where, container in containers(objects):
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), (where, kind)
    autoscaler = rayservice(objects)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    assert {"cpu", "memory"} <= set(autoscaler["resources"]["limits"])


def test_gpu_pods_ask_for_gpus_tolerate_gpu_taints_and_scale_to_zero(overlay):
    name, objects = overlay
    groups = rayservice(objects)["spec"]["rayClusterConfig"].get("workerGroupSpecs", [])
    gpu_groups = [
        g
        for g in groups
        if any(
            "nvidia.com/gpu" in c["resources"]["limits"]
            for c in g["template"]["spec"]["containers"]
        )
    ]
    if name == "cpu":
        assert gpu_groups == []
        return
    assert gpu_groups
    for group in gpu_groups:
        assert group["minReplicas"] == 0
        spec = group["template"]["spec"]
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        # A label GPU feature discovery adds once a node runs: an autoscaler cannot know a
        # pool scaled to zero would carry it, so the pool never scaled up.
        assert "nvidia.com/gpu.present" not in spec.get("nodeSelector", {})
        for container in spec["containers"]:
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
            assert int(container["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert rayservice(objects)["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_service_port_is_the_serve_grpc_port(overlay):
    _, objects = overlay
    serve = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    (service,) = of_kind(objects, "Service")
    assert [p["port"] for p in service["spec"]["ports"]] == [serve["grpc_options"]["port"]]
    assert serve["grpc_options"]["port"] in {
        p["containerPort"] for _, c in containers(objects) for p in c.get("ports", [])
    }


def test_images_are_pinned_and_nothing_runs_privileged(overlay):
    _, objects = overlay
    for where, container in containers(objects):
        image = container["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), where
        security = container.get("securityContext", {})
        assert security.get("privileged") is False, where
        assert security.get("allowPrivilegeEscalation") is False, where


def test_every_ray_pod_collects_garbage_as_the_local_cluster_does(overlay):
    # A stream cancelled unread holds its messages in Ray's object store until a collection
    # runs (test_ray); every node's raylet asks for one at this interval.
    from services.devserver import RAY_ENV

    # And the proxy takes messages up to serving.max_message_bytes, as the standalone
    # servers do (Ray's default, 2 GiB, had let any caller make the head hold that much).
    _, objects = overlay
    for where, container in containers(objects):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for name in ("RAY_local_gc_interval_s", "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"):
            assert env.get(name) == RAY_ENV[name], (where, name)


def _found(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text` (a line of it)."""
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"nothing matches {pattern!r}"
    return match.group(1)


def test_images_are_the_ones_the_dockerfiles_build(overlay):
    _, objects = overlay
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version = project["project"]["version"]
    (ray_pin,) = project["project"]["optional-dependencies"]["ray"]
    ray_version = ray_pin.split("==")[1]
    built = {}
    # SONIQUE's image: the GPU image's base and lock, then its own layer over them.
    dockerfiles = {
        "cpu": ("cpu", ["cpu"]),
        "gpu": ("gpu", ["gpu"]),
        "sonique": ("gpu", ["gpu", "sonique"]),
    }
    for flavour, (base_flavour, locks) in dockerfiles.items():
        dockerfile = (ROOT / f"deploy/docker/Dockerfile.{flavour}").read_text()
        base = _found(r"^FROM rayproject/ray:(\S+)", dockerfile)
        assert base == f"{ray_version}-py311-{base_flavour}"
        installed = re.findall(r"--require-hashes -r (\S+)", dockerfile)
        assert installed == [f"requirements-{lock}.lock" for lock in locks]
        assert f"\nray=={ray_version} " in (ROOT / "deploy/docker" / installed[0]).read_text()
        tag = _found(r"-t (\S+) \.", dockerfile)
        built[flavour] = tag
        assert tag == f"bgm/bgm-{flavour}:{version}"
    images = {container["image"] for _, container in containers(objects)}
    assert images <= set(built.values())


# In every image Ray builds on (Ubuntu): the C and C++ runtimes and zlib.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def _debian_dependencies(package: str) -> set[str] | None:
    """The packages an installed Debian package depends on (every alternative), or None
    where it is not installed here."""
    found = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", package],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode:
        return None
    return {re.sub(r"\(.*?\)", "", name).strip().split(":")[0]
            for group in found.stdout.split(",") for name in group.split("|")} - {""}  # fmt: skip


def _with_dependencies(packages: set[str]) -> set[str]:
    """`packages` and all they depend on, as this machine's Debian has them."""
    seen: set[str] = set()
    waiting = list(packages)
    while waiting:
        package = waiting.pop()
        if package in seen:
            continue
        seen.add(package)
        waiting += _debian_dependencies(package) or set()
    return seen


def test_the_images_install_the_system_libraries_opencv_loads():
    """OpenCV's wheel (opencv-python, which scenedetect requires: not the headless build)
    loads libGL and GLib from the system; Ray's images have neither, so every Serve
    application's `import cv2` failed. Each Dockerfile's apt packages, with what they depend
    on (as this machine's Debian has them), cover the packages of every library `ldd` finds
    outside the wheel."""
    import importlib.util

    spec = importlib.util.find_spec("cv2")
    assert spec is not None and spec.origin is not None
    (module,) = Path(spec.origin).parent.glob("cv2*.so")
    libraries = subprocess.run(["ldd", str(module)], capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
    # Files by name: dpkg records some under /lib, some under /usr/lib (merged /usr).
    outside = {Path(path).resolve().name for path in re.findall(r"=> (/\S+)", libraries)
               if "site-packages" not in path}  # fmt: skip
    needed = set()
    for name in sorted(outside):
        owner = subprocess.run(["dpkg-query", "-S", f"*/{name}"], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        needed |= {package.strip() for package in owner.split(":")[0].split(",")}
    needed -= BASE_IMAGE_PACKAGES
    assert {"libgl1", "libglib2.0-0"} <= needed
    for flavour in ("cpu", "gpu", "sonique"):
        dockerfile = (ROOT / f"deploy/docker/Dockerfile.{flavour}").read_text()
        listed = _found(r"apt-get install -y -q --no-install-recommends \\\n\s+(.+)", dockerfile)
        installed = _with_dependencies(set(listed.replace("\\", " ").split()))
        assert needed <= installed, (flavour, sorted(needed - installed))


# What docs/deploy.md has a user run in each overlay to use their registry's images
# (`kustomize edit set image NAME=NEW:TAG`, written as that command writes it).
REGISTRY_IMAGES = {
    "cpu": {"bgm/bgm-cpu": "registry.example/bgm-cpu"},
    "gpu": {"bgm/bgm-cpu": "registry.example/bgm-cpu", "bgm/bgm-gpu": "registry.example/bgm-gpu"},
    "sonique": {"bgm/bgm-cpu": "registry.example/bgm-cpu",
                "bgm/bgm-sonique": "registry.example/bgm-sonique"},
}  # fmt: skip


def test_the_documented_image_steps_point_every_pod_at_the_registry(tmp_path):
    """Each overlay set to the registry's images as docs/deploy.md says, the GPU overlay too
    before SONIQUE's (which builds on it): every pod runs a registry image, SONIQUE's workers
    SONIQUE's. The guide had repointed only the GPU image, leaving the head on a name nobody
    pushed, and a GPU overlay so edited had put the GPU image on SONIQUE's workers."""
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy/k8s", copy)
    for overlay, images in REGISTRY_IMAGES.items():
        path = copy / "overlays" / overlay / "kustomization.yaml"
        kustomization = yaml.safe_load(path.read_text())
        entries = {entry["name"]: entry for entry in kustomization.get("images", [])}
        for name, new_name in images.items():
            entries[name] = {"name": name, "newName": new_name, "newTag": "0.1.0"}
        kustomization["images"] = list(entries.values())
        path.write_text(yaml.safe_dump(kustomization))
    documented = (ROOT / "docs/deploy.md").read_text()
    for overlay, images in REGISTRY_IMAGES.items():
        pods = {
            where: c["image"] for where, c in containers(kustomize(copy / "overlays" / overlay))
        }
        assert pods["head"] == "registry.example/bgm-cpu:0.1.0", (overlay, pods)
        workers = {"gpu": "registry.example/bgm-gpu:0.1.0",
                   "sonique": "registry.example/bgm-sonique:0.1.0"}  # fmt: skip
        if overlay in workers:
            assert pods["gpu"] == workers[overlay], (overlay, pods)
        # The guide names each of these steps.
        step = " ".join(f"{name}=REGISTRY/{new.rpartition('/')[2]}:0.1.0"
                        for name, new in images.items())  # fmt: skip
        assert f"cd deploy/k8s/overlays/{overlay} && kustomize edit set image {step}" in documented


def test_the_sonique_overlay_runs_only_the_generator_on_sonique():
    objects = kustomize(ROOT / "deploy/k8s/overlays/sonique")
    gpu = kustomize(ROOT / "deploy/k8s/overlays/gpu")
    images = {where: container["image"] for where, container in containers(objects)}
    assert images == {**{w: c["image"] for w, c in containers(gpu)}, "gpu": "bgm/bgm-sonique:0.1.0"}
    serve = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    gpu_serve = yaml.safe_load(rayservice(gpu)["spec"]["serveConfigV2"])
    apps = {a["name"]: a for a in serve["applications"]}
    gpu_apps = {a["name"]: a for a in gpu_serve["applications"]}
    assert apps["generator"]["args"]["config"]["generator"]["diffusion"]["model_path"] == (
        "/models/sonique"
    )
    assert {n: a for n, a in apps.items() if n != "generator"} == {
        n: a for n, a in gpu_apps.items() if n != "generator"
    }
    # Its replicas need a GPU, so they land on the GPU workers, which run SONIQUE's image.
    (generator,) = apps["generator"]["deployments"]
    assert generator["ray_actor_options"]["num_gpus"] == 1


def test_the_monitoring_component_adds_a_podmonitor(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only.
                "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays/gpu", tmp_path)],
                "components": [
                    os.path.relpath(ROOT / "deploy/k8s/components/monitoring", tmp_path)
                ],
            }
        )
    )
    objects = kustomize(tmp_path)
    (monitor,) = of_kind(objects, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    ports = {p.get("name") for _, c in containers(objects) for p in c.get("ports", [])}
    assert "metrics" in ports


@pytest.mark.parametrize("overlay_name", OVERLAYS)
def test_the_auth_component_mounts_the_keys_and_limits_who_reaches_the_proxy(
    tmp_path, overlay_name
):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays" / overlay_name, tmp_path)],
        "components": [os.path.relpath(ROOT / "deploy/k8s/components/auth", tmp_path)],
    }))  # fmt: skip
    objects = kustomize(tmp_path)
    (policy,) = of_kind(objects, "NetworkPolicy")
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    first = policy["spec"]["ingress"][0]
    assert first["ports"] == [{"port": 9000, "protocol": "TCP"}]
    assert first["from"][0]["podSelector"]["matchLabels"] == {"bgm.io/client": "true"}
    # KubeRay's operator submits the Serve config to the dashboard and asks the proxies'
    # health, from its own namespace: shut out, no application was deployed and no pod
    # marked ray.io/serve=true, so the Service had no endpoints.
    # Only from the operator's namespace: any pod may carry the operator's label, and the
    # dashboard runs whatever job it is sent.
    operator = {"app.kubernetes.io/component": "kuberay-operator"}
    (rule,) = [r for r in policy["spec"]["ingress"]
               if any(f.get("podSelector", {}).get("matchLabels") == operator
                      for f in r["from"])]  # fmt: skip
    assert {p["port"] for p in rule["ports"]} == {8265, 8000}
    for source in rule["from"]:
        namespaces = source["namespaceSelector"].get("matchLabels", {})
        assert namespaces.get("kubernetes.io/metadata.name"), source
    # Every other rule that opens a port to other namespaces opens only the gRPC or the
    # metrics port.
    for other in policy["spec"]["ingress"]:
        if other is not rule and any("namespaceSelector" in f for f in other["from"]):
            assert {p["port"] for p in other["ports"]} <= {9000, 8080}, other
    service = rayservice(objects)
    crd_validator("ray.io_rayservices.yaml").validate(service)
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    (volume,) = [v for v in head["volumes"] if v["name"] == "auth"]
    assert volume["secret"]["secretName"] == "bgm-auth"
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["name"] == "auth"]
    assert mount == {"name": "auth", "mountPath": "/etc/bgm/auth", "readOnly": True}


def unknown_fields(model: Any, document: Any, where: str = "") -> list[str]:
    """Fields of `document` the validated model dropped (pydantic ignores unknown fields):
    the misspelt or made-up ones."""
    if isinstance(document, dict):
        kept = model if isinstance(model, dict) else {}
        return [item for key, value in document.items()
                for item in ([f"{where}.{key}"] if key not in kept
                             else unknown_fields(kept[key], value, f"{where}.{key}"))]  # fmt: skip
    if isinstance(document, list) and isinstance(model, list):
        return [item for i, (m, d) in enumerate(zip(model, document, strict=True))
                for item in unknown_fields(m, d, f"{where}[{i}]")]  # fmt: skip
    return []


def test_the_tls_component_issues_the_gateways_certificate_for_its_ingress(tmp_path):
    from cloudcoil.models.cert_manager.v1 import Certificate

    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "deploy/k8s/overlays/gpu", tmp_path)],
        "components": [os.path.relpath(ROOT / "deploy/k8s/components/tls", tmp_path)],
    }))  # fmt: skip
    objects = kustomize(tmp_path)
    (certificate,) = of_kind(objects, "Certificate")
    # cert-manager's v1 API, as models generated from its CRDs: types and enums checked,
    # and no field the API does not have.
    model = Certificate.model_validate(certificate)
    assert unknown_fields(model.model_dump(by_alias=True, exclude_none=True), certificate) == []
    (ingress,) = of_kind(objects, "Ingress")
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"] == certificate["spec"]["secretName"]
    assert tls["hosts"] == certificate["spec"]["dnsNames"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    services = of_kind(objects, "Service")
    (service,) = [s for s in services if s["metadata"]["name"] == backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    # An inline video (up to 32 MiB through Ray's proxy) must pass the ingress.
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "64m"
    misspelt = {**certificate, "spec": {**certificate["spec"], "secretname": "x"}}
    model = Certificate.model_validate(misspelt)
    assert unknown_fields(model.model_dump(by_alias=True, exclude_none=True), misspelt) == [
        ".spec.secretname"
    ]


def test_overlays_are_generated_from_deploy_serve():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/render_k8s.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_gateway_holds_uploads_to_its_staging_volume(overlay):
    """The gateway's staging capacity is the staging volume's sizeLimit, and the volume is
    mounted where the gateway stages: the node's free disk had been the only bound, so
    uploads could fill the volume past its limit and have the head pod evicted before
    STAGING_FULL (a hostile QA round)."""
    from services.config import BgmConfig

    _, objects = overlay
    (config_map,) = of_kind(objects, "ConfigMap")
    config = BgmConfig.model_validate(yaml.safe_load(config_map["data"]["bgm.yaml"]))
    head = rayservice(objects)["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    (container,) = head["containers"]
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    (staging,) = [name for name, path in mounted.items()
                  if path == str(config.gateway.staging_dir)]  # fmt: skip
    limit = quantity(volumes[staging]["emptyDir"]["sizeLimit"])
    assert config.gateway.staging_capacity_bytes == limit
    assert config.gateway.min_free_staging_bytes < limit
