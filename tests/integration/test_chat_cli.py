"""`myrouter-bridge chat` as a person uses it: tokens as they arrive, --json, --system,
--extra, stdin, the usage line, one-line errors with exit codes, Ctrl-C and `| head`."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from typing import Any

import pytest
import trustme

from support import CALLER_TOKEN

pytestmark = pytest.mark.timeout(60)

CHAT = (sys.executable, "-m", "bridge", "chat", "--model", "myrouter/echo")
ENV = {**os.environ, "MYROUTER_TOKEN": CALLER_TOKEN}


def _chat(target: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHAT, "--target", target, *args],
        env=ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _scenario(**scenario: Any) -> tuple[str, str]:
    return "--extra", json.dumps({"scenario": scenario})


def _read_until(proc: subprocess.Popen[bytes], wanted: bytes) -> bytes:
    """What the process printed so far, once `wanted` is in it (pytest-timeout bounds this)."""
    assert proc.stdout is not None
    seen = b""
    while wanted not in seen:
        select.select([proc.stdout], [], [])
        piece = os.read(proc.stdout.fileno(), 4096)
        assert piece, f"stdout closed before {wanted!r}; got {seen!r}"
        seen += piece
    return seen


def test_json_prints_each_chunk_as_one_json_line(bridge):
    result = _chat(bridge.target, "--json", "a", "b")
    assert result.returncode == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content", "")
        for chunk in chunks
        for choice in chunk.get("choices", [])
    )
    assert text == "You said: a b"
    assert chunks[-1]["usage"]["total_tokens"] == 6
    assert "[usage] input 2, output 4, total 6 tokens" in result.stderr


def test_system_message_goes_first_and_extra_parameters_are_sent(bridge, upstream):
    result = _chat(bridge.target, "--system", "be brief", "--extra", '{"seed": 7}', stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: hi\n"
    body = upstream.requests()[-1].body
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == "be brief"
    assert body["seed"] == 7


def test_extra_must_be_a_json_object(bridge):
    result = _chat(bridge.target, "--extra", "[1]", "hi")
    assert result.returncode == 2
    assert "--extra: must be a JSON object" in result.stderr


def test_an_error_is_one_line_with_retry_and_request_id_and_exit_1(bridge):
    result = _chat(
        bridge.target,
        "--request-id",
        "rq-cli",
        *_scenario(kind="status", status=429, retry_after=3),
        "hi",
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: RESOURCE_EXHAUSTED: ")
    assert line.endswith("(retry after 3 s; request id rq-cli)")


def test_a_stream_cut_short_ends_the_answer_line_then_reports(bridge):
    result = _chat(bridge.target, *_scenario(kind="truncate", after=2), "a", "b", "c")
    assert result.returncode == 1
    assert result.stdout.endswith("\n") and result.stdout.startswith("You")
    assert result.stderr.startswith("error: UNAVAILABLE: ")


def test_tokens_print_as_they_arrive_and_ctrl_c_cancels_the_call(bridge, upstream):
    proc = subprocess.Popen(
        [*CHAT, "--target", bridge.target, *_scenario(stall_after=3, stall=3600), "a b c d e"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _read_until(proc, b"You said").startswith(b"You said")
        assert proc.poll() is None  # the answer is still coming: we saw it before the end
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None
    assert proc.stderr.read().decode().strip() == "interrupted"  # no traceback
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"


def test_a_closed_stdout_ends_the_command_quietly(bridge):
    words = " ".join(f"w{i}" for i in range(400))
    proc = subprocess.Popen(
        [*CHAT, "--target", bridge.target, *_scenario(chunk_delay=0.01), words],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _read_until(proc, b"w1")
    assert proc.stdout is not None
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(timeout=20) == -signal.SIGPIPE
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()


def test_chat_and_models_speak_tls_with_a_private_ca(make_bridge, tmp_path):
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    ca_file.write_bytes(ca.cert_pem.bytes())
    bridge = make_bridge(tls_cert_file=cert, tls_key_file=key)

    result = _chat(bridge.target, "--ca-file", str(ca_file), "over", "tls")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: over tls\n"
    models = subprocess.run(
        [sys.executable, "-m", "bridge", "models", "--target", bridge.target, "--ca-file", ca_file],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert models.returncode == 0, models.stderr
    assert "myrouter/echo" in models.stdout

    plaintext = _chat(bridge.target, "hi")  # no TLS against a TLS listener: a clear status
    assert plaintext.returncode == 1
    assert plaintext.stderr.startswith("error: UNAVAILABLE: ")
    missing = _chat(bridge.target, "--ca-file", str(tmp_path / "nope.pem"), "hi")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: --ca-file: cannot read ")


def _client(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_chat_and_models_present_a_client_certificate_to_an_mtls_bridge(make_bridge, certs):
    bridge = make_bridge(
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.client_ca_file,
    )
    key, chain = certs.client_pair(certs.client_ca)
    key_file, cert_file = certs.dir / "client.key", certs.dir / "client.pem"
    key_file.write_bytes(key)
    cert_file.write_bytes(chain)
    tls = ("--ca-file", str(certs.server_ca_file))
    mtls = (*tls, "--cert-file", str(cert_file), "--key-file", str(key_file))

    result = _chat(bridge.target, *mtls, "with", "a", "certificate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: with a certificate\n"
    models = _client("models", "--target", bridge.target, *mtls)
    assert models.returncode == 0, models.stderr
    assert "myrouter/echo" in models.stdout

    without = _chat(bridge.target, *tls, "hi")  # TLS, but no certificate: the hint says which
    assert without.returncode == 1
    assert without.stderr.splitlines()[1:] == [
        "hint: does the bridge require client certificates (mTLS)? "
        "add --cert-file FILE --key-file FILE"
    ]
    half = _chat(bridge.target, *tls, "--cert-file", str(cert_file), "hi")
    assert half.returncode == 2
    assert half.stderr == "error: --cert-file and --key-file go together (the client certificate)\n"


def test_a_plaintext_call_to_a_tls_bridge_hints_at_tls(make_bridge, certs):
    bridge = make_bridge(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    for result in (_chat(bridge.target, "hi"), _client("models", "--target", bridge.target)):
        assert result.returncode == 1
        first, hint = result.stderr.splitlines()
        assert first.startswith("error: UNAVAILABLE: ")
        assert hint == "hint: does the bridge listen with TLS? add --tls or --ca-file FILE"


def test_a_refused_call_without_a_token_hints_at_myrouter_token(make_bridge):
    bridge = make_bridge(api_key=None)  # no service key: the caller's token is needed
    env = {k: v for k, v in ENV.items() if k != "MYROUTER_TOKEN"}
    result = _client("models", "--target", bridge.target, env=env)
    assert result.returncode == 1
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: UNAUTHENTICATED: ")
    assert "MYROUTER_API_KEY" in first  # what the operator of the bridge could do instead
    assert hint == (
        "hint: set MYROUTER_TOKEN to your token; it is sent as the authorization metadata"
    )


def test_a_validation_error_is_printed_once(bridge):
    result = _chat(bridge.target, "--temperature", "5", "hi")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.count("must be between 0 and 2") == 1, line
    assert line.startswith("error: INVALID_ARGUMENT: invalid request: temperature: must be")
