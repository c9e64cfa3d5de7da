"""The Python client package as a caller gets it: build the wheel from this pyproject,
install it into a fresh venv with only the caller's three runtime dependencies, and
call a running bridge with the shipped stubs and the myrouter_client helper."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from support import CALLER_TOKEN

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
# What a caller of the stubs and the helper needs; the bridge's own HTTP stack is not in it.
CALLER_DEPENDENCIES = ("grpcio", "protobuf", "googleapis-common-protos")
NOT_SOURCES = shutil.ignore_patterns(
    *(".git", ".venv", ".hypothesis", ".*cache*", "__pycache__", "node_modules"),
    *("build", "dist", "*.egg-info"),
)


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build from a copy of the tree, so the build leaves nothing behind in it."""
    source = tmp_path_factory.mktemp("source") / "tree"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, source)
    (built,) = out.glob("myrouter_bridge-*.whl")
    return built


def test_wheel_ships_the_stubs_the_contract_and_the_helper(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "chat.proto",
        "chat_pb2.py",
        "chat_pb2.pyi",
        "chat_pb2_grpc.py",
        "chat_pb2_grpc.pyi",
    ):
        assert f"myrouter/chat/v1/{name}" in names
    assert {"myrouter_client/__init__.py", "myrouter_client/py.typed"} <= names
    shipped = zipfile.ZipFile(wheel).read("myrouter/chat/v1/chat.proto")
    assert shipped == (ROOT / "protos/myrouter/chat/v1/chat.proto").read_bytes()


def test_a_caller_with_only_the_wheel_calls_the_bridge(wheel, bridge, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--quiet")
    _run(*pip, "--no-deps", wheel)
    # The versions this venv runs, so pip's cache serves them.
    _run(*pip, *(f"{name}=={metadata.version(name)}" for name in CALLER_DEPENDENCIES))
    caller = tmp_path / "caller.py"
    shutil.copy(ROOT / "tests" / "toolchains" / "wheel_caller.py", caller)

    found = json.loads(_run(python, caller, bridge.target, CALLER_TOKEN, cwd=tmp_path))

    assert found["stubs_from"].startswith(str(venv))
    assert not found["httpx_installed"]
    assert found["stream"] == "You said: hello wheel"
    assert found["total_tokens"] > 0
    assert found["unary"] == "You said: whole"
    assert found["error"] == {
        "code": "RESOURCE_EXHAUSTED",
        "reason": "UPSTREAM_HTTP_ERROR",
        "http_status": "429",
        "retry_delay": 3.0,
        "request_id": "wheel-2",
        "is_grpc_error": True,
    }
    assert "myrouter/echo" in found["models"]
    assert {"chat.proto", "chat_pb2.pyi", "chat_pb2_grpc.pyi"} <= set(found["shipped"])
