"""The command line as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from support import CALLER_TOKEN

pytestmark = pytest.mark.timeout(60)


def _run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def bridge_process(start_bridge_process):
    proc = start_bridge_process()
    yield proc.target
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_help_lists_the_commands_and_settings():
    result = _run("--help")
    assert result.returncode == 0
    for command in ("serve", "chat", "models", "health", "upstream", "demo"):
        assert command in result.stdout
    serve_help = _run("serve", "--help").stdout
    for setting in ("BRIDGE_LISTEN", "MYROUTER_BASE_URL", "MYROUTER_API_KEY", "--api-key-file"):
        assert setting in serve_help
    assert "--api-key " not in serve_help  # never a plain flag for the key


def test_chat_streams_the_answer(bridge_process):
    result = _run("chat", "--target", bridge_process, "--model", "myrouter/echo", "hello", "cli")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: hello cli"
    assert "[usage] input 2, output 4, total 6 tokens" in result.stderr


def test_chat_reads_the_prompt_from_stdin_and_sends_the_token(bridge_process, upstream):
    result = _run(
        "chat",
        "--target",
        bridge_process,
        "--model",
        "myrouter/echo",
        stdin="from stdin\n",
        MYROUTER_TOKEN=CALLER_TOKEN,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "You said: from stdin"
    assert upstream.requests()[-1].headers["authorization"] == f"Bearer {CALLER_TOKEN}"


def test_chat_reports_a_failed_call_in_one_line_with_exit_1(bridge_process):
    result = _run("chat", "--target", bridge_process, "--model", "nope/none", "hi")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: NOT_FOUND:")


def test_models_lists_model_ids(bridge_process):
    result = _run("models", "--target", bridge_process)
    assert result.returncode == 0, result.stderr
    assert "myrouter/echo" in result.stdout


def test_serve_refuses_bad_configuration():
    result = _run("serve", "--upstream-url", "ftp://nowhere")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --upstream-url (MYROUTER_BASE_URL): must be an http:// or https:// URL\n"
    )


def test_serve_names_the_setting_of_a_bad_number():
    from_env = _run("serve", BRIDGE_MAX_CONCURRENT_RPCS="abc")
    assert from_env.returncode == 2
    assert from_env.stderr == (
        "error: --max-concurrent-rpcs (BRIDGE_MAX_CONCURRENT_RPCS): must be an integer, got 'abc'\n"
    )
    from_flag = _run("serve", "--max-concurrent-rpcs", "abc")
    assert from_flag.returncode == 2  # a usage error: the usage, then one line
    assert from_flag.stderr.splitlines()[-1] == (
        "myrouter-bridge serve: error: argument --max-concurrent-rpcs: "
        "must be an integer, got 'abc'"
    )


def test_demo_runs_end_to_end():
    result = _run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said: Explain in one breath" in result.stdout
    assert "myrouter/echo" in result.stdout
