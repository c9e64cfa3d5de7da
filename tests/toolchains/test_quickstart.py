"""The quick start as a newcomer meets it: a fresh clone, a user who is not root, and a
PATH with Python 3.11+, make, git and the basic shell tools, but no node, npm or ruby;
`make demo` must pass there and stream the answer.

The clone is of this checkout's HEAD commit (uncommitted changes are not in it; CI
runs on a fresh clone, where there are none). The newcomer reaches the package index
as this machine lets anyone do (of this process's environment only the settings for
reaching the index are passed on), with an empty home and so an empty pip cache.
Creating the user needs root, which CI has.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import REPO_ROOT, require_tool

pytestmark = [pytest.mark.quickstart, pytest.mark.timeout(600)]

# What a bare machine has besides Python, make and git: a shell and coreutils.
BASE_TOOLS = ("sh", "env", "cat", "cp", "ls", "mkdir", "mv", "rm", "touch", "id", "uname")
# What the quick start must not need; none of it is on the newcomer's PATH.
OTHER_TOOLCHAINS = ("node", "npm", "npx", "ruby", "gem", "grpc_tools_ruby_protoc", "go", "buf")
# The settings that let pip reach the package index from this machine, if any are set.
INDEX_ENV = (
    *("PIP_INDEX_URL", "PIP_CERT", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"),
    *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
)
# Development tools the quick start must not install.
DEV_ONLY = ("pytest", "mypy", "ruff", "hypothesis", "py-spy", "kubernetes-validate", "trustme")
STREAMED = "You said: Explain in one breath why a gRPC bridge beats hand-written HTTP clients"
DEMO_SECONDS = 480


def _as_root(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture
def newcomer() -> Iterator[str]:
    """A user created for this run (and removed after it), with no home of its own yet."""
    if os.geteuid() != 0:
        pytest.skip("creating the newcomer's user needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "runuser", "chown"):
        require_tool(tool, "the quick-start test creates a user and runs make demo as it")
    name = f"myrouter-newcomer-{os.getpid()}"
    _as_root("useradd", "--user-group", "--no-create-home", "--shell", "/bin/sh", name)
    try:
        yield name
    finally:
        _as_root("userdel", name)


def _python_for(user: str) -> str:
    """A Python 3.11+ with venv that `user` can run (this venv's base may sit in /root)."""
    candidates: list[str] = [os.path.realpath(getattr(sys, "_base_executable", sys.executable))]
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        found = shutil.which("python3", path=directory)
        if found:
            candidates.append(found)
    probe = "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))"
    for candidate in candidates:
        result = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", probe],
            capture_output=True,
            timeout=30,
        )
        if result.returncode == 0:
            return candidate
    pytest.skip(f"no Python 3.11+ with venv that a non-root user can run among {candidates}")


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="myrouter-quickstart-"))
    path.chmod(0o755)  # the newcomer walks through it to its home
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _newcomer_path(workspace: Path, python: str) -> Path:
    """A bin directory with links to Python, make, git and the base tools only."""
    bin_dir = workspace / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    for name in ("make", "git", *BASE_TOOLS):
        found = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
        assert found, f"{name} is part of the newcomer's machine"
        (bin_dir / name).symlink_to(found)
    return bin_dir


def test_make_demo_passes_for_a_newcomer_with_only_python_make_and_git(newcomer, workspace):
    python = _python_for(newcomer)
    bin_dir = _newcomer_path(workspace, python)
    for tool in OTHER_TOOLCHAINS:
        assert shutil.which(tool, path=str(bin_dir)) is None
    home = workspace / "home"
    clone = home / "myrouter"
    # (safe.directory: the checkout may belong to another user than the one running this)
    git = ("git", "-c", f"safe.directory={REPO_ROOT}")
    head = _as_root(*git, "-C", REPO_ROOT, "rev-parse", "HEAD").strip()
    _as_root(*git, "clone", "--quiet", "--no-hardlinks", "--no-checkout", REPO_ROOT, clone)
    _as_root("git", "-C", clone, "checkout", "--quiet", "--detach", head)
    _as_root("chown", "-R", f"{newcomer}:", home)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(home),
        **{key: os.environ[key] for key in INDEX_ENV if key in os.environ},
    }

    clean_env = ("env", "-i", *(f"{key}={value}" for key, value in env.items()))

    started = time.monotonic()
    proc = subprocess.Popen(
        ["runuser", "-u", newcomer, "--", *clean_env, "make", "demo"],
        cwd=clone,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=DEMO_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"make demo did not finish in {DEMO_SECONDS} s:\n{output}")
    took = time.monotonic() - started

    assert proc.returncode == 0, f"make demo failed after {took:.0f} s:\n{output}"
    assert STREAMED in output.splitlines(), output
    assert "» done: both processes stopped." in output
    # The demo, not the set-up's noise: no setuptools warning box (editable "compat" mode).
    boxes = [line for line in output.splitlines() if "*" * 20 in line or "Warning:" in line]
    assert not boxes, output
    # It installed what the demo needs and nothing of the development tools or toolchains.
    listed = subprocess.run(
        [clone / ".venv" / "bin" / "python", "-m", "pip", "list", "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert not installed & set(DEV_ONLY), installed
    assert {"grpcio", "grpcio-tools", "aiohttp", "myrouter-bridge", "myrouter-client"} <= installed
    assert not (clone / "tools" / "node_modules").exists()
    assert not (clone / "examples" / "node" / "node_modules").exists()
    assert not (clone / "examples" / "ruby" / "gen").exists()
