"""deploy/: Kubernetes manifests checked against the Kubernetes schemas, and against the bridge.

kubernetes-validate ships the official OpenAPI-derived JSON schemas, so a typo
in a field name or a wrong type fails here (strict mode refuses unknown
fields). The checks after that tie the manifests to this code: the container's
arguments parse with the real `serve` parser, the probes use the health
service's names, and the termination grace period covers the whole drain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from bridge.callers import ANONYMOUS
from bridge.config import parse_serve_config
from bridge.policy import OTHER_LABEL, parse_policy
from bridge.server import ABORT_SECONDS, CHAT_SERVICE_NAME

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.30.0"
"""Oldest Kubernetes release the manifests must work with (gRPC probes are GA since 1.27)."""


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kubernetes_objects() -> dict[str, dict[str, Any]]:
    objects = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _documents(path):
            objects[doc["kind"]] = doc
    return objects


OBJECTS = _kubernetes_objects()


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_manifest_is_valid_against_the_kubernetes_schema(kind):
    kubernetes_validate.validate(OBJECTS[kind], KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_a_misspelt_field():
    broken = yaml.safe_load(yaml.safe_dump(OBJECTS["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_required_object_is_there():
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    } <= set(OBJECTS)


def _container():
    [container] = OBJECTS["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _config():
    # The image's ENTRYPOINT is `myrouter-bridge serve` (tests/test_image.py checks it).
    return parse_serve_config(_container()["args"], {})


def test_container_arguments_are_valid_bridge_settings():
    config = _config()
    assert config.workers == int(_container()["resources"]["limits"]["cpu"])
    assert config.metrics_listen is not None
    assert config.max_connection_age > 0


def test_probes_use_grpc_health_on_the_grpc_port():
    container = _container()
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    assert _config().listen.endswith(f":{port}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port
    assert container["readinessProbe"]["grpc"]["service"] == CHAT_SERVICE_NAME


def test_termination_grace_covers_prestop_delay_grace_and_abort():
    spec = OBJECTS["Deployment"]["spec"]["template"]["spec"]
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    config = _config()
    needed = float(command[1]) + config.shutdown_delay + config.shutdown_grace + ABORT_SECONDS
    assert spec["terminationGracePeriodSeconds"] > needed


def test_service_speaks_grpc_and_selects_the_pods():
    service = OBJECTS["Service"]
    labels = OBJECTS["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc_port["appProtocol"] == "grpc"


def test_hpa_and_pdb_point_at_the_deployment():
    deployment = OBJECTS["Deployment"]
    target = OBJECTS["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    selector = OBJECTS["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    container = _container()
    assert container["resources"]["requests"]["cpu"]  # the HPA's utilisation needs requests


def test_istio_resources_parse_and_target_the_service():
    """Istio's CRDs have no schema here: parse them and check the fields that matter."""
    service = OBJECTS["Service"]["metadata"]["name"]
    docs = _documents(DEPLOY / "istio" / "bridge.yaml")
    kinds = {doc["kind"]: doc for doc in docs}
    assert set(kinds) == {"DestinationRule", "VirtualService"}
    for doc in docs:
        assert doc["apiVersion"].startswith("networking.istio.io/")
        assert doc["metadata"]["name"]
    assert kinds["DestinationRule"]["spec"]["host"] == service
    virtual = kinds["VirtualService"]["spec"]
    assert virtual["hosts"] == [service]
    [route] = virtual["http"]
    assert "unavailable" in route["retries"]["retryOn"]
    assert "resource-exhausted" not in route["retries"]["retryOn"]  # a 429 must not be retried
    assert route["route"][0]["destination"]["host"] == service


# --------------------------------------------------------------------------- #
# Callers: the policy ConfigMap, and Istio's identity and access resources
# --------------------------------------------------------------------------- #


def _policy_text() -> str:
    [(name, text)] = OBJECTS["ConfigMap"]["data"].items()
    assert name == "policy.yaml"
    return str(text)


def test_the_policy_configmap_is_a_valid_policy_mounted_where_the_bridge_reads_it():
    policy = parse_policy(_policy_text(), "deploy/kubernetes/policy.yaml")
    assert policy.rules
    spec = OBJECTS["Deployment"]["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == OBJECTS["ConfigMap"]["metadata"]["name"]
    [mount] = [m for m in _container()["volumeMounts"] if m["name"] == volume["name"]]
    assert "subPath" not in mount  # a subPath mount never sees the ConfigMap's updates
    assert mount["readOnly"] is True
    policy_file = _config().policy_file
    assert policy_file is not None
    assert str(policy_file) == f"{mount['mountPath']}/policy.yaml"


def test_the_shipped_default_keeps_the_bridge_as_before_policies():
    # without a mesh every caller is anonymous: the default must still let them use the key
    rule = parse_policy(_policy_text()).rule_for(ANONYMOUS)
    assert rule.allow and rule.service_key


def _istio_callers() -> dict[str, dict[str, Any]]:
    docs = _documents(DEPLOY / "istio" / "callers.yaml")
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs)
    return kinds


def test_istio_callers_resources_select_the_bridge():
    kinds = _istio_callers()
    assert set(kinds) == {"PeerAuthentication", "AuthorizationPolicy", "EnvoyFilter"}
    labels = OBJECTS["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for doc in kinds.values():
        assert doc["apiVersion"].startswith(("security.istio.io/", "networking.istio.io/"))
        spec = doc["spec"]
        selector = spec.get("selector", {}).get("matchLabels") or spec["workloadSelector"]["labels"]
        assert selector.items() <= labels.items()


def _grpc_port() -> int:
    return int({p["name"]: p["containerPort"] for p in _container()["ports"]}["grpc"])


def test_istio_requires_mtls_and_lets_in_only_named_service_accounts():
    kinds = _istio_callers()
    assert kinds["PeerAuthentication"]["spec"]["mtls"]["mode"] == "STRICT"
    authz = kinds["AuthorizationPolicy"]["spec"]
    assert authz["action"] == "ALLOW"
    policy = parse_policy(_policy_text())
    grpc_rules = [
        rule for rule in authz["rules"] if str(_grpc_port()) in rule["to"][0]["operation"]["ports"]
    ]
    [rule] = grpc_rules
    [source] = rule["from"]
    principals = source["source"]["principals"]
    assert principals and all("*" not in p for p in principals)
    for principal in principals:
        namespace_sa = principal.split("/")
        assert namespace_sa[1::2] == ["ns", "sa"] and len(namespace_sa) == 5
        # each service account let in has an entry of its own in the policy
        caller = policy.rule_for(f"spiffe://{principal}")
        assert caller.label not in (OTHER_LABEL, ANONYMOUS) and caller.allow
    # every other rule opens only the metrics port
    for other in authz["rules"]:
        if other is not rule:
            assert "from" not in other
            assert other["to"][0]["operation"]["ports"] == [
                str(_config().metrics_listen).split(":")[1]
            ]


def test_the_sidecar_sets_xfcc_with_the_callers_uri_on_the_grpc_port():
    [patch] = _istio_callers()["EnvoyFilter"]["spec"]["configPatches"]
    assert patch["match"]["context"] == "SIDECAR_INBOUND"
    assert patch["match"]["listener"]["portNumber"] == _grpc_port()
    manager = patch["patch"]["value"]["typed_config"]
    assert manager["@type"].endswith(".HttpConnectionManager")
    # SANITIZE_SET: the caller's own header is dropped; the element left is the sidecar's
    assert manager["forward_client_cert_details"] == "SANITIZE_SET"
    assert manager["set_current_client_cert_details"]["uri"] is True
