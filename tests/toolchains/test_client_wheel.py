"""The two wheels as `make wheel` builds them, installed as their users get them.

The client wheel (myrouter-client: stubs, contract, helper) is installed alone into a
fresh venv, letting pip resolve its own requirements, and must bring nothing of the
bridge's; a caller script then calls a running bridge with it. The server wheel must
carry the server only and depend on the client wheel at its own version; installed
from the two wheels, it serves calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import grpc
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import CALLER_TOKEN, SERVICE_KEY

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# What a caller of the stubs and the helper needs; the bridge's own HTTP stack is not in it.
CALLER_DEPENDENCIES = ("grpcio", "protobuf", "googleapis-common-protos")
# What only the server needs: none of it may reach a caller's venv with the client wheel.
SERVER_ONLY = (
    "myrouter-bridge",
    "aiohttp",
    "httpx",
    "uvloop",
    "orjson",
    "prometheus-client",
    "opentelemetry-semantic-conventions",
    "opentelemetry-api",
    "pyyaml",
    "grpcio-status",
    "grpcio-health-checking",
    "grpcio-reflection",
)
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
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make wheel`'s build, from a copy of the tree so it leaves nothing behind in it."""
    source = tmp_path_factory.mktemp("source") / "tree"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("dist")
    pip = (sys.executable, "-m", "pip")
    client, server = source / "clients" / "python", source
    _run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, client, server)
    return out


@pytest.fixture(scope="module")
def client_wheel(dist: Path) -> Path:
    return dist / f"myrouter_client-{VERSION}-py3-none-any.whl"


@pytest.fixture(scope="module")
def server_wheel(dist: Path) -> Path:
    return dist / f"myrouter_bridge-{VERSION}-py3-none-any.whl"


def _metadata(wheel: Path) -> dict[str, list[str]]:
    """The wheel's METADATA headers, each a list of values."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    return {key: message.get_all(key) or [] for key in set(message.keys())}


def _requires(wheel: Path) -> list[Requirement]:
    """Requirements without an extra: what `pip install <wheel>` brings."""
    found = [Requirement(r) for r in _metadata(wheel).get("Requires-Dist", [])]
    return [r for r in found if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(names: tuple[str, ...]) -> set[str]:
    """The named distributions and everything they require, as installed in this venv."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or ():
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This venv's versions as pip constraints: the fresh venvs get the same releases
    (from pip's cache), and the wheels' own requirements still decide what comes."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    pins = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if not canonicalize_name(dist.metadata["Name"]).startswith("myrouter-")
    }
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return path


def _fresh_venv(path: Path) -> tuple[Path, tuple[str | Path, ...]]:
    """A venv without pip (this venv's pip installs into it); its python, its pip command."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    python = path / "bin" / "python"
    return python, (sys.executable, "-m", "pip", "--python", python)


def _installed(pip: tuple[str | Path, ...]) -> set[str]:
    listed = json.loads(_run(*pip, "list", "--format", "json"))
    return {canonicalize_name(entry["name"]) for entry in listed}


def test_client_wheel_ships_the_stubs_the_contract_and_the_helper(client_wheel):
    names = set(zipfile.ZipFile(client_wheel).namelist())
    for name in (
        "chat.proto",
        "chat_pb2.py",
        "chat_pb2.pyi",
        "chat_pb2_grpc.py",
        "chat_pb2_grpc.pyi",
    ):
        assert f"myrouter/chat/v1/{name}" in names
    assert {"myrouter_client/__init__.py", "myrouter_client/py.typed", "myrouter/py.typed"} <= names
    shipped = zipfile.ZipFile(client_wheel).read("myrouter/chat/v1/chat.proto")
    assert shipped == (ROOT / "protos/myrouter/chat/v1/chat.proto").read_bytes()
    # Nothing else: no server module, no embedded upstream.
    top = {name.split("/")[0] for name in names}
    assert top == {"myrouter", "myrouter_client", f"myrouter_client-{VERSION}.dist-info"}


def test_client_wheel_requires_only_what_the_stubs_and_the_helper_import(client_wheel):
    assert _metadata(client_wheel)["Name"] == ["myrouter-client"]
    assert sorted(r.name for r in _requires(client_wheel)) == sorted(CALLER_DEPENDENCIES)


def test_server_wheel_carries_the_server_and_requires_the_client_at_its_version(
    server_wheel, client_wheel
):
    names = zipfile.ZipFile(server_wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"bridge", f"myrouter_bridge-{VERSION}.dist-info"}
    assert "bridge/server.py" in names
    assert not [
        n for n in names if n.startswith(("bridge/embedded_upstream/", "myrouter_upstream/"))
    ]
    requires = {r.name: r for r in _requires(server_wheel)}
    assert str(requires["myrouter-client"].specifier) == f"=={VERSION}"
    assert _metadata(client_wheel)["Version"] == [VERSION]


@pytest.fixture(scope="module")
def client_venv(
    client_wheel: Path, constraints: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, tuple[str | Path, ...]]:
    """A caller's fresh venv after `pip install myrouter_client-*.whl`: its python and pip."""
    python, pip = _fresh_venv(tmp_path_factory.mktemp("caller") / "venv")
    _run(*pip, "install", "--quiet", "--constraint", constraints, client_wheel)
    return python, pip


def test_the_client_wheel_installs_alone_without_the_servers_dependencies(client_venv):
    _, pip = client_venv
    installed = _installed(pip)
    assert not installed & {canonicalize_name(name) for name in SERVER_ONLY}
    assert {"myrouter-client", *CALLER_DEPENDENCIES} <= installed
    # Nothing beyond the three and what they themselves require.
    assert installed - {"myrouter-client"} <= _closure(CALLER_DEPENDENCIES)


def test_a_caller_with_only_the_client_wheel_calls_the_bridge(client_venv, bridge, tmp_path):
    python, _ = client_venv
    venv = python.parent.parent
    caller = tmp_path / "caller.py"
    shutil.copy(ROOT / "tests" / "toolchains" / "wheel_caller.py", caller)

    found = json.loads(_run(python, caller, bridge.target, CALLER_TOKEN, cwd=tmp_path))

    assert found["stubs_from"].startswith(str(venv))
    assert not found["httpx_installed"]
    assert not found["grpc_status_installed"]  # the errors decode without it
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
        "class": "RateLimitError",
    }
    assert found["sync"] == "You said: sync"
    assert found["sync_request_id"] == "wheel-3"
    assert found["sync_error"] == ["RateLimitError", "UPSTREAM_HTTP_ERROR", 3.0, "wheel-4"]
    assert found["stub_error"] == [True, "INVALID_REQUEST", True, True]
    assert "myrouter/echo" in found["models"]
    assert {"chat.proto", "chat_pb2.pyi", "chat_pb2_grpc.pyi"} <= set(found["shipped"])


TYPED_CALLER = """
from myrouter.chat.v1 import chat_pb2
from myrouter_client import chat_request

request: chat_pb2.ChatCompletionRequest = chat_request("myrouter/echo", "hi")
content: int = chat_pb2.ChatMessage(role="user").content
"""


def test_a_callers_mypy_reads_the_installed_stubs(client_venv, tmp_path):
    python, _ = client_venv
    (tmp_path / "typed_caller.py").write_text(TYPED_CALLER)
    mypy = ("-m", "mypy", "--strict", "--no-incremental", "--python-executable", python)
    result = subprocess.run(
        [sys.executable, *mypy, "typed_caller.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The one error is the one only the .pyi can show: the field is a str. Without the
    # py.typed marker mypy would skip the package instead ("missing library stubs").
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert errors == [
        'typed_caller.py:6: error: Incompatible types in assignment (expression has type "str",'
        ' variable has type "int")  [assignment]'
    ], result.stdout + result.stderr


TYPED_CLIENT_CALLER = """
import grpc
from myrouter.chat.v1 import chat_pb2
from myrouter_client import AsyncClient, Client, RateLimitError, Retries, build_request

REQUEST = build_request("myrouter/echo", [("user", "hi"), {"role": "user", "content": "x"}])


def call(target: str) -> tuple[str, str | None]:
    with Client(target, retries=Retries(attempts=2)) as client:
        try:
            completion, request_id = client.create_with_request_id(REQUEST)
        except RateLimitError as exc:
            delay: float | None = exc.retry_delay
            code: grpc.StatusCode = exc.code
            raise
        with client.stream(REQUEST) as stream:
            pieces = [c.delta.content for chunk in stream for c in chunk.choices]
        return completion.choices[0].message.content + "".join(pieces), stream.request_id


async def acall(target: str) -> chat_pb2.ChatCompletion:
    async with AsyncClient(target, credentials=grpc.ssl_channel_credentials()) as client:
        async for chunk in client.stream(REQUEST):
            print(chunk.id)
        return await client.create(REQUEST)


wrong: int = call("127.0.0.1:1")[1]
"""


# googleapis-common-protos ships no stubs: the client's own import of google.rpc is untyped.
TYPED_CLIENT_MYPY_INI = (
    "[mypy]\nstrict = True\n[mypy-google.rpc.*]\nignore_missing_imports = True\n"
)


def test_a_callers_mypy_strict_passes_with_the_typing_extra(client_wheel, constraints, tmp_path):
    python, pip = _fresh_venv(tmp_path / "venv")
    _run(*pip, "install", "--quiet", "--constraint", constraints, f"{client_wheel}[typing]")
    (tmp_path / "client_caller.py").write_text(TYPED_CLIENT_CALLER)
    (tmp_path / "mypy.ini").write_text(TYPED_CLIENT_MYPY_INI)

    def mypy(*targets: str) -> tuple[list[str], str]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--no-incremental",
                "--python-executable",
                python,
                *targets,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        return [line for line in output.splitlines() if ": error:" in line], output

    # grpc typed too (types-grpcio), so the one error is the deliberate one: a request id
    # may be None. Without the stubs, --strict would stop at "missing library stubs".
    errors, output = mypy("client_caller.py")
    assert errors == [
        "client_caller.py:29: error: Incompatible types in assignment (expression has type"
        ' "str | None", variable has type "int")  [assignment]'
    ], output
    # The installed package itself, against types-grpcio (the repository's lint has none).
    errors, output = mypy("-p", "myrouter_client")
    assert not errors and "Success: no issues found" in output, output


@pytest.fixture
def served_from_wheels(
    client_wheel: Path, server_wheel: Path, constraints: Path, upstream, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """`myrouter-bridge serve` from a venv holding the two wheels and nothing of the tree."""
    venv = tmp_path / "venv"
    python, pip = _fresh_venv(venv)
    _run(*pip, "install", "--quiet", "--constraint", constraints, client_wheel, server_wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BRIDGE_"))}
    serve = ("serve", "--workers", "1", "--listen", "127.0.0.1:0")
    proc = subprocess.Popen(
        [venv / "bin" / "myrouter-bridge", *serve, "--upstream-url", upstream.base_url],
        cwd=tmp_path,
        env={**env, "MYROUTER_API_KEY": SERVICE_KEY},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ports: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            ports.extend(re.findall(r"listening on 127\.0\.0\.1:(\d+)", line))
            if ports:
                listening.set()
        listening.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert listening.wait(60) and ports, "".join(lines)
        yield f"127.0.0.1:{ports[0]}", python
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(5)


def test_the_server_wheel_installs_with_the_client_wheel_and_serves(served_from_wheels):
    target, python = served_from_wheels
    with grpc.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        models = stub.ListModels(
            chat_pb2.ListModelsRequest(), metadata=[("authorization", CALLER_TOKEN)], timeout=20
        )
    assert "myrouter/echo" in [model.id for model in models.data]
    probe = (
        "import json, bridge, myrouter_client, importlib.util as u; print(json.dumps(["
        "bridge.__file__, myrouter_client.__file__, u.find_spec('myrouter_upstream')"
        " is None]))"
    )
    where = json.loads(_run(python, "-c", probe, cwd=python.parent))
    venv = str(python.parent.parent)
    assert where[0].startswith(venv) and where[1].startswith(venv)
    assert where[2], "the embedded upstream is not part of the server wheel"
