"""`make demo` (``python -m myrouter_upstream.demo``): the bridge's main job end to end, on this
machine alone.

Starts the embedded MyRouter API and the bridge as two real processes on free
loopback ports, then runs the bridge's command-line client (``python -m bridge
models``, then ``chat``) to list the models and stream an answer to the
terminal, and stops both processes. Every piece is the real one; only the
upstream is local.

It only starts processes and imports nothing of the bridge, so the dependency
stays one way: the bridge may delegate to this package (``myrouter-bridge
demo``), this package never needs the bridge's modules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

__all__ = ["DEMO_KEY", "DEMO_MODEL", "DEMO_PROMPT", "run_demo"]

DEMO_KEY = "demo-service-key"
DEMO_MODEL = "myrouter/echo"
DEMO_PROMPT = "Explain in one breath why a gRPC bridge beats hand-written HTTP clients"
STARTUP_SECONDS = 30.0


@contextmanager
def _process(
    name: str, args: list[str], env: dict[str, str], ready: re.Pattern[str]
) -> Iterator[str]:
    """Run a child process until it prints a line matching `ready`; yield the match's group 1."""
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        yield _wait_for_line(proc, name, ready)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_line(proc: subprocess.Popen[str], name: str, ready: re.Pattern[str]) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    stream: IO[str] | None = proc.stdout
    assert stream is not None
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        match = ready.search(line)
        if match:
            return match.group(1)
    raise RuntimeError(f"{name} did not start:\n{''.join(seen)}")


def _python_module(module: str, *args: str) -> list[str]:
    """The argv of `python -m module args...` under this interpreter."""
    return [sys.executable, "-m", module, *args]


def run_demo() -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("MYROUTER_API_KEY", "MYROUTER_TOKEN")}
    upstream_args = _python_module(
        "myrouter_upstream", "--port", "0", "--chunk-delay", "0.04", "--api-key", DEMO_KEY
    )
    print("» starting the embedded MyRouter API ...", flush=True)
    upstream_ready = re.compile(r"listening on (http://\S+)")
    with _process("myrouter_upstream", upstream_args, env, upstream_ready) as upstream_url:
        print(f"  upstream: {upstream_url}", flush=True)
        bridge_env = {**env, "MYROUTER_API_KEY": DEMO_KEY, "BRIDGE_LOG_LEVEL": "INFO"}
        bridge_args = _python_module(
            "bridge", "serve", "--listen", "127.0.0.1:0", "--upstream-url", upstream_url
        )
        print("» starting the bridge ...", flush=True)
        bridge_ready = re.compile(r"bridge listening on (\S+)")
        with _process("bridge serve", bridge_args, bridge_env, bridge_ready) as target:
            print(f"  bridge:   {target}", flush=True)
            client = _python_module("bridge")
            print("\n» ListModels", flush=True)
            models = [*client, "models", "--target", target, "--timeout", "10"]
            status = subprocess.run(models, env=env, check=False).returncode
            print(f"\n» StreamChatCompletion ({DEMO_MODEL}): {DEMO_PROMPT!r}\n", flush=True)
            chat = [
                *client,
                "chat",
                "--target",
                target,
                "--model",
                DEMO_MODEL,
                "--system",
                "You are a helpful assistant.",
                "--request-id",
                "demo-1",
                "--timeout",
                "30",
                DEMO_PROMPT,
            ]
            status = status or subprocess.run(chat, env=env, check=False).returncode
    print("\n» done: both processes stopped." if status == 0 else "\n» demo failed", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(run_demo())
