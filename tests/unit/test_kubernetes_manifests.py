"""deploy/kubernetes: the base and the production overlay, rendered as Kustomize renders
them, valid against the Kubernetes schemas, and right about what the services need.

The overlays keep to the kustomization fields `render` knows (resources, namespace,
images, JSON 6902 patches with a target kind and name), so the test needs no kustomize
binary: `kubectl kustomize` gives the same objects. It needs kubernetes-validate (the
Kubernetes schemas), jsonpatch and PyYAML, and fails without them.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from services.intake.__main__ import DEFAULT_PORT as INTAKE_PORT
from services.results.__main__ import DEFAULT_PORT as RESULTS_PORT
from services.worker.__main__ import DEFAULT_PORT as WORKER_PORT
from shared.domain.campaigns import Campaign
from shared.runtime.ops import ops_router
from shared.runtime.settings import Settings
from shared.runtime.startup import StartupError, refuse_development_secrets
from shared.topology import WORK_QUEUE

Resource = dict[str, Any]

PROJECT = Path(__file__).resolve().parents[2]
KUBERNETES = PROJECT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
PRODUCTION = KUBERNETES / "overlays" / "production"
# The oldest Kubernetes the manifests claim, and a later one; both bundled by
# kubernetes-validate 1.33 and later.
KUBERNETES_VERSIONS = ("1.31", "1.33")
KUSTOMIZATION_FIELDS = {"resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}
TOP_LEVEL_FIELDS = {"apiVersion", "kind", "metadata", "spec", "data", "stringData", "type"}
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),
}
SERVICE_PORTS = {
    "redeem-intake": INTAKE_PORT,
    "redeem-worker": WORKER_PORT,
    "redeem-results": RESULTS_PORT,
}
# The Secrets the production overlay expects made out of band, and their keys.
SECRET_KEYS = {
    "redeem-secrets": {
        "REDEEM_API_KEYS",
        "REDEEM_REDEMPTION_ID_SECRET",
        "REDEEM_CONTEXT_SECRET",
        "REDEEM_CONSOLE_SECRET",
        "REDEEM_CODE_SECRET",
        "REDEEM_WEBHOOK_SECRETS",
        "REDEEM_RABBITMQ_URL",
        "REDEEM_MONGODB_URL",
    },
    "redeem-mongodb-password": {"password"},
}


# Rendering: the subset of Kustomize the overlays use.


def _documents(path: Path) -> list[Any]:
    with path.open() as file:
        return [document for document in yaml.safe_load_all(file) if document is not None]


def render(directory: Path) -> list[Resource]:
    """The resources of the kustomization in `directory`, as `kubectl kustomize` gives
    them, for the fields of `KUSTOMIZATION_FIELDS`; any other field fails the test."""
    (kustomization,) = _documents(directory / "kustomization.yaml")
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: {sorted(unknown)} is not rendered by this test"
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += render(path)
        else:
            # Kustomize loads files from within the kustomization's own directory only.
            assert path.is_relative_to(directory.resolve()), f"{entry}: outside {directory}"
            resources += _documents(path)
    for patch in kustomization.get("patches", []):
        resources = _patched(directory, patch, resources)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        assert set(image) <= {"name", "newName", "newTag"}, image
        for resource in resources:
            _set_image(resource, image)
    names = [_identity(resource) for resource in resources]
    assert len(names) == len(set(names)), f"{directory}: a resource twice in {names}"
    return resources


def _patched(directory: Path, patch: dict[str, Any], resources: list[Resource]) -> list[Resource]:
    assert set(patch) == {"path", "target"}, f"{directory}: only JSON 6902 patches: {patch}"
    assert set(patch["target"]) == {"kind", "name"}, patch["target"]
    operations = _documents(directory / patch["path"])[0]
    assert isinstance(operations, list), f"{patch['path']}: not a JSON 6902 patch"
    kind, name = patch["target"]["kind"], patch["target"]["name"]
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{patch['path']}: {kind} {name} found {len(found)} times"
    patched: Resource = jsonpatch.apply_patch(found[0], operations)
    return [patched if resource is found[0] else resource for resource in resources]


def _set_image(node: Any, image: dict[str, str]) -> None:
    """Kustomize's images transformer: every container whose image is `name`."""
    if isinstance(node, list):
        for item in node:
            _set_image(item, image)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                if "image" in container:
                    container["image"] = _new_image(container["image"], image)
        _set_image(value, image)


def _new_image(reference: str, image: dict[str, str]) -> str:
    name, _, tag = reference.rpartition(":") if ":" in reference else (reference, "", "")
    if "/" in tag:  # a registry port, no tag
        name, tag = reference, ""
    if name != image["name"]:
        return reference
    tag = image.get("newTag", tag)
    return image.get("newName", name) + (f":{tag}" if tag else "")


def _identity(resource: Resource) -> tuple[str, str, str]:
    return (resource["kind"], resource["metadata"].get("namespace", ""), _name(resource))


def _name(resource: Resource) -> str:
    name = resource["metadata"]["name"]
    assert isinstance(name, str)
    return name


@cache
def _rendered(directory: Path) -> tuple[Resource, ...]:
    return tuple(render(directory))


RENDERS = {"base": BASE, "production": PRODUCTION}


@pytest.fixture(params=sorted(RENDERS))
def resources(request: pytest.FixtureRequest) -> list[Resource]:
    """The rendered base, then the rendered production overlay (copies to change)."""
    return copy.deepcopy(list(_rendered(RENDERS[request.param])))


def _one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and _name(r) == name]
    assert len(found) == 1, f"{kind} {name}: found {len(found)}"
    return found[0]


def _pod_specs(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource, resource["spec"]["template"]["spec"]


def _containers(resources: list[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for resource, pod in _pod_specs(resources):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield resource, container


def _config(resources: list[Resource]) -> dict[str, str]:
    data = _one(resources, "ConfigMap", "redeem-config")["data"]
    assert isinstance(data, dict)
    return data


# The renderer itself.


def test_the_renderer_patches_namespaces_and_sets_images_as_kustomize_does() -> None:
    base = {_identity(r): r for r in _rendered(BASE)}
    production = {_identity(r): r for r in _rendered(PRODUCTION)}
    assert ("Namespace", "", "redeem") in production
    assert all(namespace == "redeem" for kind, namespace, _ in production if kind != "Namespace")
    intake = production[("Deployment", "redeem", "redeem-intake")]
    image = intake["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/redemption-codes:0.1.0"
    base_intake = base[("Deployment", "", "redeem-intake")]
    assert base_intake["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "redemption-codes:0.1.0"
    )
    assert _new_image("localhost:5000/redemption-codes", {"name": "x", "newTag": "1"}) == (
        "localhost:5000/redemption-codes"
    )


# Schemas.


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_resources_match_the_kubernetes_schemas(
    resources: list[Resource], version: str
) -> None:
    core = [r for r in resources if (r["apiVersion"], r["kind"]) not in CUSTOM_RESOURCES]
    assert core
    for resource in core:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{resource['kind']} {_name(resource)}: {error.message} at {error.path}")


def test_the_custom_resources_are_the_operators_and_kedas(resources: list[Resource]) -> None:
    custom = {(r["apiVersion"], r["kind"]) for r in resources} - {
        (r["apiVersion"], r["kind"])
        for r in resources
        if r["apiVersion"] == "v1" or "." not in r["apiVersion"].split("/")[0]
    }
    assert custom == CUSTOM_RESOURCES
    for resource in resources:
        assert set(resource) <= TOP_LEVEL_FIELDS, _name(resource)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", _name(resource)), _name(resource)


def test_rabbitmq_is_a_persistent_cluster_of_the_operator(resources: list[Resource]) -> None:
    rabbitmq = _one(resources, "RabbitmqCluster", "redeem-rabbitmq")
    assert rabbitmq["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbitmq["spec"]["persistence"]["storage"]
    assert {"requests", "limits"} <= set(rabbitmq["spec"]["resources"])
    production = rabbitmq["metadata"].get("namespace") == "redeem"
    assert rabbitmq["spec"]["replicas"] == (3 if production else 1)


def test_mongodb_is_a_replica_set_of_three_with_a_scram_user(resources: list[Resource]) -> None:
    mongodb = _one(resources, "MongoDBCommunity", "redeem-mongodb")
    spec = mongodb["spec"]
    assert mongodb["apiVersion"] == "mongodbcommunity.mongodb.com/v1"
    assert (spec["type"], spec["members"]) == ("ReplicaSet", 3)
    assert re.fullmatch(r"8\.0\.\d+", spec["version"]), spec["version"]
    assert spec["security"]["authentication"]["modes"] == ["SCRAM"]
    (user,) = spec["users"]
    assert user["name"] == "redeem"
    assert user["passwordSecretRef"] == {"name": "redeem-mongodb-password", "key": "password"}
    assert user["scramCredentialsSecretName"]
    assert user["roles"] == [{"name": "readWrite", "db": _config(resources)["REDEEM_MONGODB_DB"]}]
    claims = spec["statefulSet"]["spec"]["volumeClaimTemplates"]
    assert {claim["metadata"]["name"] for claim in claims} == {"data-volume", "logs-volume"}


# How each part grows.


def test_workers_grow_with_the_depth_of_the_work_queue(resources: list[Resource]) -> None:
    scaled = _one(resources, "ScaledObject", "redeem-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"name": "redeem-worker"}
    _one(resources, "Deployment", "redeem-worker")
    # Workers act on timers the queue does not show: never none of them.
    assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == WORK_QUEUE
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert int(trigger["metadata"]["value"]) > 0
    assert "host" not in trigger["metadata"]
    auth = _one(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    (host,) = auth["spec"]["secretTargetRef"]
    assert host == {"parameter": "host", "name": "redeem-secrets", "key": "REDEEM_RABBITMQ_URL"}
    assert "replicas" not in _one(resources, "Deployment", "redeem-worker")["spec"]


def test_intakes_grow_with_cpu(resources: list[Resource]) -> None:
    autoscaler = _one(resources, "HorizontalPodAutoscaler", "redeem-intake")
    spec = autoscaler["spec"]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "redeem-intake",
    }
    (metric,) = spec["metrics"]
    assert (metric["type"], metric["resource"]["name"]) == ("Resource", "cpu")
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"]
    assert "replicas" not in _one(resources, "Deployment", "redeem-intake")["spec"]


def test_results_is_one_process(resources: list[Resource]) -> None:
    spec = _one(resources, "Deployment", "redeem-results")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert not [
        r for r in resources if r["kind"] == "PodDisruptionBudget" and "results" in _name(r)
    ]


def test_intake_and_workers_have_disruption_budgets(resources: list[Resource]) -> None:
    for name in ("redeem-intake", "redeem-worker"):
        budget = _one(resources, "PodDisruptionBudget", name)
        labels = _one(resources, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_intake_service_reaches_the_intake(resources: list[Resource]) -> None:
    service = _one(resources, "Service", "redeem-intake")
    pod = _one(resources, "Deployment", "redeem-intake")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == INTAKE_PORT
    (container,) = pod["spec"]["containers"]
    assert _port_number(container, port["targetPort"]) == INTAKE_PORT


# Each container.


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    assert isinstance(number, int)
    return number


def test_every_service_has_health_and_readiness_probes_on_its_port(
    resources: list[Resource],
) -> None:
    paths = {getattr(route, "path", None) for route in ops_router([]).routes}
    assert {"/healthz", "/readyz"} <= paths
    deployments = [r for r in resources if r["kind"] == "Deployment"]
    assert {_name(d) for d in deployments} == set(SERVICE_PORTS)
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = SERVICE_PORTS[_name(deployment)]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{_name(deployment)} {probe}"
            assert _port_number(container, http["port"]) == port, f"{_name(deployment)} {probe}"
        service = _name(deployment).removeprefix("redeem-")
        assert container["command"] == ["python", "-m", f"services.{service}"]


def test_every_container_has_resources(resources: list[Resource]) -> None:
    containers = list(_containers(resources))
    assert len(containers) == 4
    for owner, container in containers:
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, _name(owner)


def test_every_container_runs_unprivileged_as_the_images_user(resources: list[Resource]) -> None:
    uid = int(re.findall(r"--uid (\d+)", (PROJECT / "deploy" / "Dockerfile").read_text())[-1])
    for owner, pod in _pod_specs(resources):
        assert pod["securityContext"]["runAsNonRoot"] is True, _name(owner)
        assert pod["securityContext"]["runAsUser"] == uid, _name(owner)
        assert pod["automountServiceAccountToken"] is False, _name(owner)
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, _name(owner)
            assert context["allowPrivilegeEscalation"] is False, _name(owner)
            assert context["readOnlyRootFilesystem"] is True, _name(owner)
            assert context["capabilities"] == {"drop": ["ALL"]}, _name(owner)
            assert "privileged" not in context, _name(owner)


def test_workers_outlast_a_fulfillment_call_when_stopped(resources: list[Resource]) -> None:
    (timeout,) = [f.default for f in dataclasses.fields(Campaign) if f.name == "timeout_s"]
    assert isinstance(timeout, float)
    pods = {_name(owner): pod for owner, pod in _pod_specs(resources)}
    assert pods["redeem-worker"]["terminationGracePeriodSeconds"] == 60
    assert pods["redeem-worker"]["terminationGracePeriodSeconds"] > timeout
    for name in ("redeem-intake", "redeem-results"):
        assert 15 <= pods[name]["terminationGracePeriodSeconds"] <= 60


def test_prepare_runs_once_as_a_job(resources: list[Resource]) -> None:
    job = _one(resources, "Job", "redeem-prepare")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["redeem", "prepare"]
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "redeem" in scripts
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    service = _one(resources, "Deployment", "redeem-results")["spec"]["template"]["spec"]
    assert container["image"] == service["containers"][0]["image"]


# Settings and secrets.


def _environment(container: dict[str, Any], resources: list[Resource]) -> dict[str, Any]:
    """The variables a container gets: its ConfigMaps' and its own `env`."""
    names: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "secrets by key only, never a whole Secret"
        names |= _one(resources, "ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in container.get("env", []):
        names[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return names


def _secret_references(resources: list[Resource]) -> Iterator[tuple[str, str, str]]:
    """(who, Secret, key) of every Secret key a resource names."""
    for owner, container in _containers(resources):
        for variable in container.get("env", []):
            if "secretKeyRef" in variable.get("valueFrom", {}):
                ref = variable["valueFrom"]["secretKeyRef"]
                yield f"{_name(owner)} {variable['name']}", ref["name"], ref["key"]
    for auth in (r for r in resources if r["kind"] == "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            yield _name(auth), ref["name"], ref["key"]
    for mongodb in (r for r in resources if r["kind"] == "MongoDBCommunity"):
        for user in mongodb["spec"]["users"]:
            ref = user["passwordSecretRef"]
            yield _name(mongodb), ref["name"], ref.get("key", "password")


def test_every_redeem_variable_is_a_setting(resources: list[Resource]) -> None:
    for owner, container in _containers(resources):
        variables = _environment(container, resources)
        for name in variables:
            if name.startswith("REDEEM_"):
                setting = name.removeprefix("REDEEM_").lower()
                assert setting in Settings.model_fields, f"{_name(owner)}: {name}"
        assert variables["REDEEM_HTTP_HOST"] == "0.0.0.0", _name(owner)
    for secret in (r for r in resources if r["kind"] == "Secret"):
        for key in secret.get("stringData", {}) | secret.get("data", {}):
            if key.startswith("REDEEM_"):
                assert key.removeprefix("REDEEM_").lower() in Settings.model_fields, key
    config = _config(resources)
    Settings.model_validate(
        {k.removeprefix("REDEEM_").lower(): v for k, v in config.items() if "REDEEM_" in k}
    )


def test_every_secret_key_referenced_is_in_its_secret(resources: list[Resource]) -> None:
    secrets = {_name(r): r for r in resources if r["kind"] == "Secret"}
    if secrets:  # the base: its placeholder Secrets
        keys = {
            name: set(secret.get("stringData", {})) | set(secret.get("data", {}))
            for name, secret in secrets.items()
        }
        assert keys == SECRET_KEYS
    references = list(_secret_references(resources))
    for who, secret, key in references:
        assert key in SECRET_KEYS.get(secret, set()), f"{who}: no key {key} in Secret {secret}"
    named = {(secret, key) for _, secret, key in references}
    assert named == {(secret, key) for secret, keys in SECRET_KEYS.items() for key in keys}


def test_each_service_gets_the_secrets_it_reads(resources: list[Resource]) -> None:
    urls = {"REDEEM_RABBITMQ_URL", "REDEEM_MONGODB_URL"}
    wanted = {
        "redeem-intake": urls
        | {
            "REDEEM_API_KEYS",
            "REDEEM_REDEMPTION_ID_SECRET",
            "REDEEM_CONTEXT_SECRET",
            "REDEEM_CONSOLE_SECRET",
            "REDEEM_CODE_SECRET",
        },
        "redeem-worker": urls | {"REDEEM_CODE_SECRET", "REDEEM_WEBHOOK_SECRETS"},
        "redeem-results": urls,
        "redeem-prepare": urls,
    }
    got: dict[str, set[str]] = {}
    for who, secret, key in _secret_references(resources):
        if secret == "redeem-secrets" and " " in who:
            got.setdefault(who.split()[0], set()).add(key)
    assert got == wanted


def test_the_placeholder_secrets_cannot_run_in_production() -> None:
    (secret,) = [
        r for r in _rendered(BASE) if r["kind"] == "Secret" and _name(r) == "redeem-secrets"
    ]
    values = {k.removeprefix("REDEEM_").lower(): v for k, v in secret["stringData"].items()}
    assert _config(list(_rendered(BASE)))["REDEEM_ENVIRONMENT"] == "development"
    refuse_development_secrets(Settings.model_validate(values | {"environment": "development"}))
    with pytest.raises(StartupError):
        refuse_development_secrets(Settings.model_validate(values | {"environment": "production"}))
    for value in secret["stringData"].values():
        assert re.search("change-me|dev-admin-key", value, re.IGNORECASE), value


def test_production_ships_no_secret_and_runs_as_production() -> None:
    production = list(_rendered(PRODUCTION))
    assert not [r for r in production if r["kind"] == "Secret"]
    assert _config(production)["REDEEM_ENVIRONMENT"] == "production"
    for _, container in _containers(production):
        assert container["image"].startswith("registry.example.com/redemption-codes:")
        assert not container["image"].endswith(":latest")
    autoscaler = _one(production, "HorizontalPodAutoscaler", "redeem-intake")["spec"]
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (3, 20)
    scaled = _one(production, "ScaledObject", "redeem-worker")["spec"]
    assert scaled["minReplicaCount"] >= 3
    base = {_name(owner): c["resources"] for owner, c in _containers(list(_rendered(BASE)))}
    for owner, container in _containers(production):
        if _name(owner) != "redeem-prepare":
            assert container["resources"] != base[_name(owner)], _name(owner)
