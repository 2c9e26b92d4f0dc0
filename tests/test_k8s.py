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
        assert spec["nodeSelector"]
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

    _, objects = overlay
    for where, container in containers(objects):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("RAY_local_gc_interval_s") == RAY_ENV["RAY_local_gc_interval_s"], where


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
