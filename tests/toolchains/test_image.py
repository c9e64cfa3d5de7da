"""The container image and the Kubernetes manifest that runs it agree.

The Dockerfile is read as text (its final stage is what runs), so these checks
need no container tools: user, ports, the probes' port, the one writable path,
the entrypoint the manifest's args are given to, the image name `make image`
tags, and the labels. The `built_image` tests ask podman about the image
`make image` built, when it is there (`make image-test` runs them after the
build; without podman or the image they are skipped); `make image-test` also
starts the image's own entrypoint (deploy/image/smoke.py).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
MAX_IMAGE_BYTES = 250 * 10**6


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def _pairs(arguments: str) -> dict[str, str]:
    """KEY=value pairs of ENV, LABEL or ARG (values may be quoted)."""
    return dict(word.split("=", 1) for word in shlex.split(arguments))


class Stage:
    """The runtime (final) stage of the Dockerfile, and the ARG defaults before the first FROM."""

    def __init__(self, text: str) -> None:
        instructions = _instructions(text)
        first_from = next(i for i, (name, _) in enumerate(instructions) if name == "FROM")
        last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
        self.global_args: dict[str, str] = {}
        for _, arguments in instructions[:first_from]:
            self.global_args.update(_pairs(arguments))
        self.all = instructions
        self.final = instructions[last_from:]

    def one(self, instruction: str) -> str:
        [arguments] = [a for name, a in self.final if name == instruction]
        return arguments

    def merged(self, instruction: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for name, arguments in self.final:
            if name == instruction:
                result.update(_pairs(arguments))
        return result

    def stage_arg(self, name: str) -> str:
        """An ARG default of any stage."""
        for instruction, arguments in self.all:
            if instruction == "ARG" and arguments.startswith(f"{name}="):
                return arguments.split("=", 1)[1]
        raise KeyError(name)


DOCKERFILE = Stage((ROOT / "Dockerfile").read_text())


def _deployment() -> dict[str, Any]:
    for doc in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "bridge.yaml").read_text()):
        if doc and doc["kind"] == "Deployment":
            return dict(doc)
    raise AssertionError("no Deployment")


POD = _deployment()["spec"]["template"]
[CONTAINER] = POD["spec"]["containers"]
PORTS = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _image_uid_gid() -> tuple[int, int]:
    user, _, group = DOCKERFILE.one("USER").partition(":")
    return int(user), int(group)  # numeric, so a kubelet can check runAsNonRoot


def test_image_user_is_the_manifests_non_root_uid():
    uid, gid = _image_uid_gid()
    security = POD["spec"]["securityContext"]
    assert uid != 0 and gid != 0
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid == 10001


def test_image_exposes_the_manifests_ports_and_serves_them_by_default():
    exposed = {int(p.split("/")[0]) for p in DOCKERFILE.one("EXPOSE").split()}
    assert exposed == set(PORTS.values())
    env = DOCKERFILE.merged("ENV")
    assert _port(env["BRIDGE_LISTEN"]) == PORTS["grpc"]
    assert _port(env["BRIDGE_METRICS_LISTEN"]) == PORTS["metrics"]
    assert int(POD["metadata"]["annotations"]["prometheus.io/port"]) == PORTS["metrics"]


def test_probes_ask_the_port_the_image_serves_grpc_on():
    env = DOCKERFILE.merged("ENV")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert CONTAINER[probe]["grpc"]["port"] == _port(env["BRIDGE_LISTEN"])


def _writable_mounts() -> set[str]:
    return {m["mountPath"] for m in CONTAINER["volumeMounts"] if not m.get("readOnly")}


def test_only_tmp_is_writable_in_the_image_and_the_manifest():
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(json.loads(DOCKERFILE.one("VOLUME"))) == _writable_mounts() == {"/tmp"}
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    for mount in CONTAINER["volumeMounts"]:
        # the writable one is an emptyDir; the others (the policy's ConfigMap) are read-only
        kind = "emptyDir" if mount["mountPath"] in _writable_mounts() else "configMap"
        assert kind in volumes[mount["name"]]


def test_manifest_args_go_to_the_images_serve_entrypoint():
    entrypoint = json.loads(DOCKERFILE.one("ENTRYPOINT"))
    script = PYPROJECT["project"]["scripts"]
    assert (
        Path(entrypoint[0]).name in script and script[Path(entrypoint[0]).name] == "bridge.cli:main"
    )
    assert entrypoint[1:] == ["serve"]
    assert "command" not in CONTAINER  # the image's ENTRYPOINT runs
    assert CONTAINER["args"][0].startswith("--")  # serve's flags, no second subcommand


def test_manifest_runs_the_image_make_image_tags():
    makefile = (ROOT / "Makefile").read_text()
    [name] = re.findall(r"^IMAGE_NAME\s*\?=\s*(\S+)", makefile, re.MULTILINE)
    assert CONTAINER["image"] == f"{name}:{VERSION}"


def test_image_labels_name_source_version_and_licence():
    labels = DOCKERFILE.merged("LABEL")
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


def test_image_leaves_out_the_embedded_upstream_that_image_test_runs_on_the_host():
    assert DOCKERFILE.stage_arg("EMBEDDED_UPSTREAM") == "false"
    package = DOCKERFILE.stage_arg("UPSTREAM_PACKAGE")
    assert importlib.util.find_spec(package) is not None  # renamed: update the Dockerfile
    smoke = ast.parse((ROOT / "deploy" / "image" / "smoke.py").read_text())
    [upstream_module] = [
        ast.literal_eval(node.value)
        for node in smoke.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["UPSTREAM_MODULE"]
    ]
    assert upstream_module == package  # the smoke test runs on the host what the image leaves out


def test_build_context_is_the_host_built_wheels_only():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns == ["*", "!build/image/wheels/"]
    copies = [a for name, a in DOCKERFILE.all if name == "COPY" and not a.startswith("--from")]
    assert copies == ["build/image/wheels/ /wheels/"]


def _inspect(image: str) -> dict[str, Any] | None:
    if shutil.which("podman") is None:
        return None
    found = subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    [inspected] = json.loads(found.stdout)
    return dict(inspected)


IMAGE = CONTAINER["image"]
BUILT = _inspect(IMAGE)
built_image = pytest.mark.skipif(
    BUILT is None, reason=f"{IMAGE} not built (make image; make image-test runs these)"
)


@built_image
def test_built_image_matches_the_manifest():
    assert BUILT is not None
    config = BUILT["Config"]
    uid, gid = _image_uid_gid()
    assert config["User"] == f"{uid}:{gid}"
    assert set(config["ExposedPorts"]) == {f"{port}/tcp" for port in PORTS.values()}
    assert set(config["Volumes"]) == _writable_mounts()
    assert config["Entrypoint"] == json.loads(DOCKERFILE.one("ENTRYPOINT"))
    assert f"BRIDGE_LISTEN=0.0.0.0:{PORTS['grpc']}" in config["Env"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.source"]


@built_image
def test_built_image_is_at_most_250_mb_and_tagged_latest_too():
    assert BUILT is not None
    assert BUILT["Size"] <= MAX_IMAGE_BYTES, f"{BUILT['Size'] / 1e6:.0f} MB"
    latest = _inspect(IMAGE.rsplit(":", 1)[0] + ":latest")
    assert latest is not None and latest["Id"] == BUILT["Id"]
