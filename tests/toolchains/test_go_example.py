"""The Go example client (examples/go), built offline from Debian's Go packages with the
protoc commands of docs/clients.md (examples/go/build.sh) and run against a real bridge and the
embedded upstream: a unary call, a streamed call with authorization and x-request-id
metadata, ListModels, and a failed call (an upstream 429 with Retry-After) whose
ErrorInfo and RetryInfo it decodes from the status details."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import CALLER_TOKEN, REPO_ROOT, free_port, upstream_error_info

# The first test pays for the build (about 10 s with a cold GOCACHE).
pytestmark = pytest.mark.timeout(240)

GO_EXAMPLE = REPO_ROOT / "examples" / "go"
TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
GOCODE = Path("/usr/share/gocode/src")
SOURCES = (
    "google.golang.org/grpc",
    "google.golang.org/protobuf",
    "google.golang.org/genproto/googleapis/rpc/errdetails",
    "github.com/golang/protobuf",
)


def _go_protoc_command(text: str, protos: str) -> str:
    """The Go protoc invocation in `text`, backslash-continued lines joined."""
    start = text.index(f"protoc -I {protos} --go_out=")
    end = re.compile(r"[^\\]\n").search(text, start)
    assert end, "the protoc command does not end"
    return " ".join(text[start : end.start() + 1].replace("\\\n", " ").split())


def test_build_script_runs_the_readme_protoc_command_after_making_its_folder():
    readme = (REPO_ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    script = (GO_EXAMPLE / "build.sh").read_text(encoding="utf-8")
    documented = _go_protoc_command(readme, "protos")
    assert documented.endswith(" protos/myrouter/chat/v1/chat.proto")
    assert _go_protoc_command(script, '"$protos"').replace('"$protos"', "protos") == documented
    assert "mkdir -p gen/go gen/java\nprotoc -I protos --go_out=gen/go" in readme
    assert "mkdir -p gen/go\nprotoc -I " in script


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing + [str(GOCODE / source) for source in SOURCES if not (GOCODE / source).is_dir()]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's binary, built once into a temporary GOPATH with its own GOCACHE."""
    missing = _missing_prerequisites()
    if missing:
        pytest.skip(
            "the Go example needs Debian's Go toolchain and gRPC sources (.ci/run installs "
            f"them; see examples/go/README.md); missing: {', '.join(missing)}"
        )
    build = tmp_path_factory.mktemp("go-example")
    result = subprocess.run(
        ["bash", str(GO_EXAMPLE / "build.sh"), str(build)],
        env={**os.environ, "GOCACHE": str(build / "cache")},
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return build / "bin" / "client"


def _run(client: Path, target: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MYROUTER_", "BRIDGE_"))
    }
    return subprocess.run(
        [str(client), "-target", target],
        env={**environ, "MYROUTER_TOKEN": CALLER_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_go_client_calls_unary_streaming_models_and_decodes_error_details(
    go_client, bridge, upstream
):
    result = _run(go_client, bridge.target)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    assert "unary: You said: hello from go" in lines
    assert "stream: You said: stream to go" in lines
    chunks = next(line for line in lines if line.startswith("stream chunks: "))
    assert int(chunks.split(": ")[1]) > 1  # token by token, not one message
    # Over StreamChatCompletionBatches: the 8 chunks came in 1 to 8 messages.
    assert chunks == "stream chunks: 8"
    messages = next(line for line in lines if line.startswith("stream messages: "))
    assert 1 <= int(messages.split(": ")[1]) <= 8
    assert "usage: input 3, output 5, total 8" in lines
    assert "models: myrouter/echo, myrouter/echo-large" in lines

    # The upstream's 429 with Retry-After: 7, as the status and its google.rpc details.
    assert "error: RESOURCE_EXHAUSTED (8): Rate limit exceeded" in lines
    error_info = upstream_error_info(lines, 429)
    assert "  RetryInfo: retry after 7 s" in lines
    request_id = next(line for line in lines if line.startswith("  x-request-id: "))
    assert f"request_id={request_id.split(': ')[1]}" in error_info  # trailer and ErrorInfo agree

    # The stream's metadata reached the API: the caller's token and its own request id,
    # which the bridge also returned in the response metadata.
    match = re.search(r"^stream x-request-id: (go-[0-9a-f]{16})$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    requests = upstream.requests()
    streamed = [r for r in requests if r.body and r.body.get("stream") is True]
    assert len(streamed) == 1
    assert streamed[0].headers["x-request-id"] == match.group(1)
    assert [r.body["scenario"] for r in requests if r.body and "scenario" in r.body] == [
        {"kind": "status", "status": 429, "retry_after": "7"}
    ]
    assert all(r.headers["authorization"] == f"Bearer {CALLER_TOKEN}" for r in requests)


def test_go_client_reports_an_unreachable_bridge_with_its_status(go_client):
    result = _run(go_client, f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE (14):")
