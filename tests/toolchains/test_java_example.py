"""The Java example client (examples/java), built offline from Debian's Java packages
(examples/java/build.sh: pom.xml's coordinates resolved from /usr/share/maven-repo, the
protoc command of docs/clients.md, javac) and run against a real bridge and the embedded
upstream: a unary call, a streamed call (StreamChatCompletionBatches) with authorization
and x-request-id metadata, ListModels, and a failed call (an upstream 429 with
Retry-After) whose ErrorInfo and RetryInfo it decodes from the status details."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from support import REPO_ROOT, assert_example_output, build_example, free_port, run_built_example

# The first test pays for the build (about 20 s: javac over the generated stubs).
pytestmark = pytest.mark.timeout(240)

JAVA_EXAMPLE = REPO_ROOT / "examples" / "java"
NEEDS = "Debian's JDK, grpc-java and protobuf packages"  # what .ci/run installs for it
TOOLS = ("java", "javac", "jar", "protoc")
# grpc-java's release name for the plugin, and Debian's.
PLUGINS = ("protoc-gen-grpc-java", "grpc_java_plugin")
WELL_KNOWN = Path("/usr/include/google/protobuf/struct.proto")
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _classpath_module() -> Any:
    spec = importlib.util.spec_from_file_location("classpath", JAVA_EXAMPLE / "classpath.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


classpath = _classpath_module()


def _write_pom(repo: Path, key: str, body: str = "", version: str = "debian") -> None:
    """A Debian-style entry: group/artifact/version/artifact-version.{pom,jar}."""
    group, artifact = key.split(":")
    folder = repo / group.replace(".", "/") / artifact / version
    folder.mkdir(parents=True)
    coordinates = f"<groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
    (folder / f"{artifact}-{version}.pom").write_text(
        f"<project>{coordinates}<version>{version}</version>{body}</project>"
    )
    (folder / f"{artifact}-{version}.jar").write_bytes(b"")


def _dependency(key: str, extra: str = "") -> str:
    group, artifact = key.split(":")
    coordinates = f"<groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
    return f"<dependency>{coordinates}{extra}</dependency>"


def _resolved(repo: Path, pom_body: str, scope: str) -> list[str]:
    pom = repo / "pom.xml"
    pom.write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0">'
        f"<dependencies>{pom_body}</dependencies></project>"
    )
    jars = classpath.resolve(pom, scope, classpath.Repository(repo))
    return [jar.name.rsplit("-", 1)[0] for jar in jars]


def test_classpath_follows_maven_scopes_optional_exclusions_and_relocations(tmp_path):
    _write_pom(
        tmp_path,
        "g:lib",
        "<parent><groupId>g</groupId><artifactId>parent</artifactId></parent><dependencies>"
        + _dependency("g:needed")
        + _dependency("g:at-run-time", "<scope>runtime</scope>")
        + _dependency("g:managed-test")  # its scope comes from the parent's management
        + _dependency("g:optional", "<optional>true</optional>")
        + _dependency("g:excluded")
        + _dependency("g:old-name")
        + "</dependencies>",
    )
    _write_pom(
        tmp_path,
        "g:parent",
        "<packaging>pom</packaging><dependencyManagement><dependencies>"
        + _dependency("g:managed-test", "<scope>test</scope>")
        + "</dependencies></dependencyManagement>",
    )
    for key in ("g:needed", "g:at-run-time", "g:managed-test", "g:optional", "g:excluded"):
        _write_pom(tmp_path, key)
    _write_pom(
        tmp_path,
        "g:old-name",
        "<distributionManagement><relocation><artifactId>new-name</artifactId>"
        "</relocation></distributionManagement>",
    )
    _write_pom(tmp_path, "g:new-name", version="1.0")
    _write_pom(tmp_path, "g:provided")
    pom_body = _dependency(
        "g:lib",
        "<exclusions><exclusion><groupId>g</groupId><artifactId>excluded</artifactId>"
        "</exclusion></exclusions>",
    ) + _dependency("g:provided", "<scope>provided</scope>")

    assert _resolved(tmp_path, pom_body, "compile") == ["lib", "provided", "needed", "new-name"]
    assert _resolved(tmp_path, pom_body, "runtime") == ["lib", "needed", "at-run-time", "new-name"]


def test_classpath_names_a_coordinate_that_is_not_installed(tmp_path):
    _write_pom(tmp_path, "g:lib", "<dependencies>" + _dependency("g:absent") + "</dependencies>")
    with pytest.raises(LookupError, match="g:absent is not in"):
        _resolved(tmp_path, _dependency("g:lib"), "runtime")
    # grpc-core's annotation-only dependency, whose Debian package brings Maven, may be absent.
    _write_pom(
        tmp_path,
        "g:core",
        "<dependencies>"
        + _dependency("org.codehaus.mojo:animal-sniffer-annotations")
        + "</dependencies>",
    )
    assert _resolved(tmp_path, _dependency("g:core"), "runtime") == ["core"]


def _java_protoc_command(text: str, protos: str) -> str:
    """The Java protoc invocation in `text`, backslash-continued lines joined, without a
    trailing comment."""
    start = text.index(f"protoc -I {protos} --java_out=gen/java")
    end = re.compile(r"[^\\]\n").search(text, start)
    assert end, "the protoc command does not end"
    command = text[start : end.start() + 1].replace("\\\n", " ").split(" #")[0]
    return " ".join(command.split())


def test_build_script_runs_the_readme_protoc_command_after_making_its_folder():
    readme = (REPO_ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    script = (JAVA_EXAMPLE / "build.sh").read_text(encoding="utf-8")
    documented = _java_protoc_command(readme, "protos")
    assert documented.endswith(" protos/myrouter/chat/v1/chat.proto")
    in_script = _java_protoc_command(script, '"$protos"').replace('"$protos"', "protos")
    # The script names the plugin it found (Debian's is grpc_java_plugin).
    assert in_script.replace('"$grpc_java"', "$(which protoc-gen-grpc-java)") == documented
    assert "mkdir -p gen/java\nprotoc -I " in script


def _pom_coordinates() -> list[str]:
    root = ET.parse(JAVA_EXAMPLE / "pom.xml").getroot()
    properties = {p.tag.split("}")[1]: p.text or "" for p in root.findall("m:properties/*", POM_NS)}
    coordinates = []
    for dependency in root.findall("m:dependencies/m:dependency", POM_NS):
        parts = [dependency.findtext(f"m:{tag}", "", POM_NS) for tag in ("groupId", "artifactId")]
        version = dependency.findtext("m:version", "", POM_NS)
        parts.append(re.sub(r"\$\{(.+?)\}", lambda m: properties[str(m.group(1))], version))
        coordinates.append(":".join(parts))
    return coordinates


def test_readme_gradle_coordinates_are_the_pom_dependencies():
    readme = (JAVA_EXAMPLE / "README.md").read_text(encoding="utf-8")
    gradle = re.findall(
        r"^\s*(?:implementation|runtimeOnly|compileOnly) '([^']+)'$", readme, re.MULTILINE
    )
    assert gradle == _pom_coordinates()


def test_readme_installs_the_packages_ci_installs():
    readme = (JAVA_EXAMPLE / "README.md").read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    documented = re.search(r"apt-get install --no-install-recommends ([^`]+?)\n```", readme)
    installed = re.search(r"java_debs=\(([^)]+)\)", ci)
    assert documented and installed
    assert documented.group(1).replace("\\\n", " ").split() == installed.group(1).split()


def _missing_prerequisites() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not any(shutil.which(plugin) for plugin in PLUGINS):
        missing.append(" or ".join(PLUGINS))
    if not WELL_KNOWN.is_file():
        missing.append(str(WELL_KNOWN))
    for scope in ("compile", "runtime"):
        result = subprocess.run(
            [sys.executable, str(JAVA_EXAMPLE / "classpath.py"), scope],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            missing.append(result.stderr.strip())
    return missing


@pytest.fixture(scope="module")
def java_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's launcher, built once into a temporary directory."""
    build = tmp_path_factory.mktemp("java-example")
    missing = _missing_prerequisites()
    return build_example(JAVA_EXAMPLE, NEEDS, missing, build, PYTHON=sys.executable)


def test_java_client_calls_unary_streaming_models_and_decodes_error_details(
    java_client, bridge, upstream
):
    result = run_built_example(java_client, bridge.target)
    assert_example_output(result, upstream, "java")


def test_java_client_reports_an_unreachable_bridge_with_its_status(java_client):
    result = run_built_example(java_client, f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE (14):")
