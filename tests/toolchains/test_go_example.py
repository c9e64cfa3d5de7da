"""The Go example client (examples/go), built offline from Debian's Go packages with the
protoc commands of docs/clients.md (examples/go/build.sh) and run against a real bridge and the
embedded upstream: a unary call, a streamed call with authorization and x-request-id
metadata, ListModels, and a failed call (an upstream 429 with Retry-After) whose
ErrorInfo and RetryInfo it decodes from the status details."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support import REPO_ROOT, assert_example_output, build_example, free_port, run_built_example

# The first test pays for the build (about 10 s with a cold GOCACHE).
pytestmark = pytest.mark.timeout(240)

GO_EXAMPLE = REPO_ROOT / "examples" / "go"
NEEDS = "Debian's Go toolchain and gRPC sources"  # what .ci/run installs for it
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
    build = tmp_path_factory.mktemp("go-example")
    missing = _missing_prerequisites()
    return build_example(GO_EXAMPLE, NEEDS, missing, build, GOCACHE=str(build / "cache"))


def test_go_client_calls_unary_streaming_models_and_decodes_error_details(
    go_client, bridge, upstream
):
    result = run_built_example(go_client, bridge.target)
    assert_example_output(result, upstream, "go")


def test_go_client_reports_an_unreachable_bridge_with_its_status(go_client):
    result = run_built_example(go_client, f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE (14):")
