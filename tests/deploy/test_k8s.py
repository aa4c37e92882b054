"""deploy/k8s: both overlays rendered by the real kustomize (pinned, installed by `make test`), every object
checked against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail) and the
ScaledObjects against KEDA's CRD schema, then the properties an SRE relies on asserted across all objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from spendstream.common.topics import USAGE_EVENTS, topic_name
from tests.deploy.deployables import (
    ROOT,
    SCHEMAS,
    SERVICES,
    Deployable,
    env_names,
    expand_k8s,
    kustomize_build,
    load_yaml_documents,
)

K8S_VERSION = "1.33.0"
OVERLAYS = ("dev", "prod")
Obj = dict[str, Any]

# Worst-case drain per service after SIGTERM, in seconds (docs/operations.md, "SIGTERM"): the 5 s preStop
# pause, uvicorn's 30 s for in-flight HTTP requests, then the consumer's graceful stop (30 s: finish the batch,
# write it, commit). terminationGracePeriodSeconds must exceed it or Kubernetes SIGKILLs a batch half-done.
DRAIN_SECONDS = {
    "ingest": 5 + 30,
    "rollup": 5 + 30 + 30,
    "alerts": 5 + 30 + 30,
    "retention": 5 + 30,
    "connectors": 5 + 30,
    "people": 5 + 30,
    "console": 5 + 30,
}
# The traffic each workload may open (egress ports besides DNS).
EGRESS_PORTS = {
    "ingest": {9092, 6379},
    "rollup": {9092, 8123},
    "alerts": {9092, 6379, 8082, 443, 465, 587},
    "retention": {9092},
    "connectors": {9092, 443},  # Kafka and the providers' APIs
    "people": {9092, 6379, 465, 587, 443},  # Kafka, Redis, SMTP (invitations), the OpenID provider (single sign-on)
    "console": set(),  # static pages: the browser calls the APIs
    "topics": {9092},
    "admin": {9092},
}
SECRETS = {
    "spendstream-kek": {"kek", "kek-id"},
    "spendstream-redis": {"password"},
    "spendstream-clickhouse": {"username", "password"},
    "spendstream-internal": {"token"},
    "spendstream-smtp": {"host", "username", "password"},
}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    return kustomize_build(str(request.param))


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def containers(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objs:
        if obj["kind"] in ("Deployment", "Job"):
            for container in pod_spec(obj)["containers"]:
                yield obj["metadata"]["name"], container


def strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused: the API server would silently prune them, hiding a typo."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def keda_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((SCHEMAS / "keda.sh_scaledobjects.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def test_every_object_is_valid_against_the_kubernetes_or_keda_schema(rendered: list[Obj]) -> None:
    keda = keda_validator()
    errors = []
    for obj in rendered:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("keda.sh/"):
            errors += [f"{where}: {e.message}" for e in keda.iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {exc.message}")
    assert errors == []
    assert {o["kind"] for o in rendered} >= {
        "Namespace",
        "ConfigMap",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
        "ScaledObject",
        "HorizontalPodAutoscaler",
    }


def test_the_validators_refuse_a_broken_object(rendered: list[Obj]) -> None:
    deployment = find(rendered, "Deployment", "ingest")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    scaled = find(rendered, "ScaledObject", "rollup")
    assert not keda_validator().is_valid({**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}})


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_deployment_has_probes_limits_and_a_locked_down_pod(rendered: list[Obj], service: Deployable) -> None:
    deployment = find(rendered, "Deployment", service.name)
    pod = pod_spec(deployment)
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": service.port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root filesystem needs a writable /tmp"
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS[service.name]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_deployment_has_its_service_account_pdb_network_policy_and_service(
    rendered: list[Obj], service: Deployable
) -> None:
    deployment = find(rendered, "Deployment", service.name)
    pod = pod_spec(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    account = find(rendered, "ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False

    def selects(selector: Obj) -> bool:
        return bool(selector["matchLabels"]) and selector["matchLabels"].items() <= labels.items()

    pdbs = [o for o in rendered if o["kind"] == "PodDisruptionBudget" and selects(o["spec"]["selector"])]
    assert len(pdbs) == 1
    policies = [
        o
        for o in rendered
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"].get("matchLabels")
        and selects(o["spec"]["podSelector"])
    ]
    assert [p["metadata"]["name"] for p in policies if "ingress" in p["spec"]] == [service.name]
    (policy,) = [p for p in policies if p["metadata"]["name"] == service.name]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [service.port]
    svc = find(rendered, "Service", service.name)
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"][0]["port"] == service.port


def test_network_policies_deny_by_default_and_open_only_the_needed_egress(rendered: list[Obj]) -> None:
    deny = find(rendered, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, ports in EGRESS_PORTS.items():
        policy = find(rendered, "NetworkPolicy", name)
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        opened = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert opened == ports, name


def test_secrets_are_referenced_never_inlined(rendered: list[Obj]) -> None:
    assert [o for o in rendered if o["kind"] == "Secret"] == []
    referenced: dict[str, set[str]] = {}
    for workload, container in containers(rendered):
        for var in container.get("env", []):
            if "value" in var:
                assert not re.search(r"KEK$|PASSWORD|TOKEN|SECRET", var["name"]), f"{workload}: {var['name']} inlined"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.setdefault(ref["name"], set()).add(ref["key"])
    assert referenced == SECRETS
    config = find(rendered, "ConfigMap", "spendstream-config")
    assert not [k for k in config["data"] if re.search(r"KEK$|PASSWORD|TOKEN|SECRET", k)]


def test_only_the_services_that_decrypt_get_the_kek(rendered: list[Obj]) -> None:
    holders = {
        workload for workload, c in containers(rendered) for var in c.get("env", []) if var["name"] == "SPENDSTREAM_KEK"
    }
    # people derives its CSRF, e-mail index and client-address keys from the KEK.
    assert holders == {"ingest", "rollup", "alerts", "people"}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_deployments_set_only_variables_their_settings_read(rendered: list[Obj], service: Deployable) -> None:
    (container,) = pod_spec(find(rendered, "Deployment", service.name))["containers"]
    config = find(rendered, "ConfigMap", "spendstream-config")["data"]
    names = {v["name"] for v in container["env"]} | set(config)
    ours = {n for n in names if n.startswith("SPENDSTREAM_")}
    known = env_names(service.settings)
    # The ConfigMap is shared: rollup's database name is harmless to the others, anything else is a typo.
    assert ours - {"SPENDSTREAM_CLICKHOUSE_DATABASE"} <= known, ours - known


def test_rollup_uses_a_clickhouse_server_so_it_can_run_more_than_one_replica(rendered: list[Obj]) -> None:
    (container,) = pod_spec(find(rendered, "Deployment", "rollup"))["containers"]
    url = next(v["value"] for v in container["env"] if v["name"] == "SPENDSTREAM_CLICKHOUSE_URL")
    assert url.startswith("http://") and "chdb" not in url


@pytest.mark.parametrize("name", ["rollup", "alerts"])
def test_consumers_scale_on_their_group_lag_and_never_past_the_partition_count(rendered: list[Obj], name: str) -> None:
    scaled = find(rendered, "ScaledObject", name)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == name and find(rendered, "Deployment", name)
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= USAGE_EVENTS.partitions
    (trigger,) = spec["triggers"]
    service = next(s for s in SERVICES if s.name == name)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == topic_name(USAGE_EVENTS, "")
    assert trigger["metadata"]["consumerGroup"] == service.group_id


@pytest.mark.parametrize("name", ["retention", "connectors"])
def test_a_single_coordinator_stays_single_even_during_a_rollout(rendered: list[Obj], name: str) -> None:
    deployment = find(rendered, "Deployment", name)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        o
        for o in rendered
        if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler") and o["spec"]["scaleTargetRef"]["name"] == name
    ]


def test_ingest_scales_on_cpu_with_an_hpa(rendered: list[Obj]) -> None:
    hpa = find(rendered, "HorizontalPodAutoscaler", "ingest")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingest"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_the_topic_job_provisions_with_the_cli_image(rendered: list[Obj]) -> None:
    job = find(rendered, "Job", "topics")
    (container,) = pod_spec(job)["containers"]
    assert container["args"] == ["topics", "create"]
    assert container["image"].startswith("spendstream/cli:")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(
    ("overlay", "namespace", "tag"), [("dev", "spendstream-dev", "dev"), ("prod", "spendstream", "0.1.0")]
)
def test_overlays_set_namespace_and_image_tags(overlay: str, namespace: str, tag: str) -> None:
    objs = kustomize_build(overlay)
    assert (
        find(objs, "Namespace", namespace)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {namespace}
    images = {c["image"] for _, c in containers(objs)}
    assert images == {
        f"spendstream/{n}:{tag}"
        for n in ("ingest", "rollup", "alerts", "retention", "connectors", "people", "console", "cli")
    }


def test_the_admin_pod_is_valid_locked_down_and_reaches_only_kafka(rendered: list[Obj]) -> None:
    (pod,) = load_yaml_documents((ROOT / "deploy" / "k8s" / "admin" / "pod.yaml").read_text())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert find(rendered, "ServiceAccount", pod["spec"]["serviceAccountName"])
    policy = find(rendered, "NetworkPolicy", pod["metadata"]["labels"]["app.kubernetes.io/name"])
    assert "ingress" not in policy["spec"]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {9092}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_accepts_the_configuration_its_deployment_gives_it(
    rendered: list[Obj], service: Deployable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap, then the container's env in order, `$(VAR)` expanded; secrets stand in as placeholders."""
    (container,) = pod_spec(find(rendered, "Deployment", service.name))["containers"]
    env: dict[str, str] = dict(find(rendered, "ConfigMap", "spendstream-config")["data"])
    for var in container["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        env[var["name"]] = f"secret-{ref['key']}" if ref else expand_k8s(var["value"], env)
    if "SPENDSTREAM_KEK" in env:
        env["SPENDSTREAM_KEK"] = "A" * 43 + "="  # base64 of 32 bytes, as the secret must hold
    for name in env_names(service.settings):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = service.settings()
    assert settings.http_port == service.port and settings.http_host == "0.0.0.0"
    assert "$(" not in settings.redis_url + settings.clickhouse_url
    if service.name == "rollup":
        assert settings.clickhouse_url == "http://secret-username:secret-password@" + env["CLICKHOUSE_HOST"] + ":8123"
    if service.name in ("ingest", "rollup", "alerts"):
        assert len(settings.kek_bytes()) == 32
