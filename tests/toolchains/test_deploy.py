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

from bridge.config import parse_serve_config
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
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(
        OBJECTS
    )


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
    assert _config().listen.port == port
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
