"""Helpers shared by the test groups (imported as `support`: pytest's pythonpath has tests/)."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc


def stub_for(target: str) -> tuple[grpc.Channel, chat_pb2_grpc.ChatServiceStub]:
    channel = grpc.insecure_channel(target)
    return channel, chat_pb2_grpc.ChatServiceStub(channel)


def chat_request(
    prompt: str = "hello there", *, model: str = "myrouter/echo", **fields: Any
) -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        model=model,
        messages=[chat_pb2.ChatMessage(role="user", content=prompt)],
        **fields,
    )


def with_scenario(
    request: chat_pb2.ChatCompletionRequest, **scenario: Any
) -> chat_pb2.ChatCompletionRequest:
    """Select an embedded-upstream fault scenario through the request's `extra` passthrough."""
    request.extra.update({"scenario": scenario})
    return request


def details_of(error: grpc.RpcError) -> dict[str, Any]:
    """The rich status details of a failed call, unpacked by type name."""
    status = rpc_status.from_call(error)
    found: dict[str, Any] = {}
    if status is None:
        return found
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.QuotaFailure,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found[cls.__name__] = message
    return found


def read_stream(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: chat_pb2.ChatCompletionRequest,
    metadata: Any = None,
    *,
    timeout: float | None = None,
) -> tuple[list[chat_pb2.ChatCompletionChunk], grpc.RpcError | None, Any]:
    """Read a StreamChatCompletion to its end: (chunks received, the error or None, the call).

    The caller's token is sent unless `metadata` says otherwise.
    """
    call = stub.StreamChatCompletion(
        request, metadata=CALLER_METADATA if metadata is None else metadata, timeout=timeout
    )
    return _read_to_end(call)


def batches_request(
    request: chat_pb2.ChatCompletionRequest, max_delay: float | None = None
) -> chat_pb2.StreamChatCompletionBatchesRequest:
    """`request` for StreamChatCompletionBatches, with `max_delay` seconds when given."""
    batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
    if max_delay is not None:
        batches.max_delay.FromMilliseconds(round(max_delay * 1000))
    return batches


def read_batches(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: chat_pb2.ChatCompletionRequest,
    max_delay: float | None = None,
    metadata: Any = None,
) -> tuple[list[chat_pb2.StreamChatCompletionBatchesResponse], grpc.RpcError | None, Any]:
    """Read a StreamChatCompletionBatches to its end: (messages, the error or None, the call)."""
    call = stub.StreamChatCompletionBatches(
        batches_request(request, max_delay),
        metadata=CALLER_METADATA if metadata is None else metadata,
    )
    return _read_to_end(call)


def _read_to_end(call: Any) -> tuple[list[Any], grpc.RpcError | None, Any]:
    messages: list[Any] = []
    try:
        for message in call:
            messages.append(message)
    except grpc.RpcError as exc:
        return messages, exc, call
    return messages, None, call


def cancel_closes_the_upstream(call: Any, upstream: Any) -> None:
    """Cancel `call` once its upstream request arrived; the upstream must see the caller
    leave within 2 s (its request closed) and the call must end CANCELLED."""
    upstream.wait_for(lambda r: True, timeout=5)
    cancelled_at = time.monotonic()
    call.cancel()
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"
    assert record.ended_at - cancelled_at < 2
    assert call.code() is grpc.StatusCode.CANCELLED


def log_line_for(rpc_lines: Callable[[], list[dict[str, Any]]], request_id: str) -> dict[str, Any]:
    """The one log line (from the `rpc_lines` fixture) of the call with `request_id`; it may
    follow the status by a moment."""
    for _ in range(200):
        lines = [entry for entry in rpc_lines() if entry.get("request_id") == request_id]
        if lines:
            [line] = lines
            return line
        threading.Event().wait(0.01)
    raise AssertionError(f"no log line for {request_id}")


def free_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bridge_serve_argv(*flags: str) -> list[str]:
    """`myrouter-bridge serve` on a free loopback port, as a child process's argv."""
    return [sys.executable, "-m", "bridge", "serve", "--listen", "127.0.0.1:0", *flags]


def upstream_error_info(lines: list[str], http_status: int) -> str:
    """The `  ErrorInfo:` line an example client printed for an upstream HTTP error,
    once it is checked to carry the bridge's reason, domain and that HTTP status."""
    error_info = next(line for line in lines if line.startswith("  ErrorInfo:"))
    assert "reason=UPSTREAM_HTTP_ERROR" in error_info
    assert "domain=bridge.myrouter.example" in error_info
    assert f"http_status={http_status}" in error_info
    return error_info


def build_example(example: Path, needs: str, missing: list[str], into: Path, **env: str) -> Path:
    """The client a compiled example's build.sh builds into `into`, once it succeeded; a skip
    that names what is `missing` of what it `needs` (which .ci/run installs), if anything."""
    if missing:
        pytest.skip(
            f"the {example.name.capitalize()} example needs {needs} (.ci/run installs them; "
            f"see examples/{example.name}/README.md); missing: {', '.join(missing)}"
        )
    result = subprocess.run(
        ["bash", str(example / "build.sh"), str(into)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return into / "bin" / "client"


def run_built_example(client: Path, target: str) -> subprocess.CompletedProcess[str]:
    """Run a built example client against `target` with the caller's token, and without
    this process's MYROUTER_/BRIDGE_ settings."""
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


def assert_example_output(
    result: subprocess.CompletedProcess[str], upstream: Any, language: str
) -> None:
    """What a compiled example client (examples/go, examples/java) prints against the session
    bridge, and what its calls carried upstream."""
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    assert f"unary: You said: hello from {language}" in lines
    assert f"stream: You said: stream to {language}" in lines
    chunks = next(line for line in lines if line.startswith("stream chunks: "))
    assert int(chunks.split(": ")[1]) > 1  # token by token, not one message
    # Over StreamChatCompletionBatches: the 8 chunks came in 1 to 8 messages.
    assert chunks == "stream chunks: 8"
    messages = next(line for line in lines if line.startswith("stream messages: "))
    assert 1 <= int(messages.split(": ")[1]) <= 8
    assert "usage: input 3, output 5, total 8" in lines
    assert "models: myrouter/echo, myrouter/echo-large" in lines

    # The upstream's 429 with Retry-After: 7, as the status and its google.rpc details
    # (google.rpc.Status from the grpc-status-details-bin trailer).
    assert "error: RESOURCE_EXHAUSTED (8): Rate limit exceeded" in lines
    error_info = upstream_error_info(lines, 429)
    assert "  RetryInfo: retry after 7 s" in lines
    request_id = next(line for line in lines if line.startswith("  x-request-id: "))
    assert f"request_id={request_id.split(': ')[1]}" in error_info  # trailer and ErrorInfo agree

    # The stream's metadata reached the API: the caller's token and its own request id,
    # which the bridge also returned in the response metadata.
    pattern = rf"^stream x-request-id: ({language}-[0-9a-f]{{16}})$"
    match = re.search(pattern, result.stdout, re.MULTILINE)
    assert match, result.stdout
    requests = upstream.requests()
    streamed = [r for r in requests if r.body and r.body.get("stream") is True]
    assert len(streamed) == 1
    assert streamed[0].headers["x-request-id"] == match.group(1)
    assert [r.body["scenario"] for r in requests if r.body and "scenario" in r.body] == [
        {"kind": "status", "status": 429, "retry_after": "7"}
    ]
    assert all(r.headers["authorization"] == f"Bearer {CALLER_TOKEN}" for r in requests)


def status_table_tokens() -> set[str]:
    """The backquoted words (codes and ErrorInfo reasons) in the right-hand column of
    docs/status-codes.md's table: what the bridge promises its callers."""
    section = (REPO_ROOT / "docs" / "status-codes.md").read_text(encoding="utf-8")
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 10, "the status table is missing"
    tokens: set[str] = set()
    for row in rows[2:]:  # the header and the separator
        right = row.rstrip("|").rsplit("|", 1)[1]
        tokens.update(re.findall(r"`([A-Z_]+)`", right))
    return tokens


def metadata_dict(metadata: Any) -> dict[str, str]:
    return {item[0]: item[1] for item in metadata or ()}


REPO_ROOT = Path(__file__).resolve().parent.parent


def require_tool(name: str, why: str) -> str:
    """The path of a program another toolchain provides, or a skip that says what is
    missing and what it is for (under REQUIRE_ALL, as in CI, the skip is a failure)."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not on PATH: {why}")
    return found


def require_setup(path: Path, make_target: str) -> Path:
    """A file a `make` target leaves behind, or a skip naming the target that makes it."""
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} missing: run `make {make_target}`")
    return path


class RedisServer:
    """A real redis-server of our own on a loopback port, without persistence, in `directory`.

    `kill` and `start` again reuse the port (a replica's URL does not change when
    its Redis comes back); `pause` and `resume` stop and continue the process
    (SIGSTOP/SIGCONT), a Redis that accepts connections but never answers.
    """

    def __init__(self, executable: str, directory: Path, *options: str) -> None:
        self.executable = executable
        self.directory = directory
        self.options = options
        """More redis-server options (``--requirepass``, ...)."""
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.options]
        self.process = subprocess.Popen(
            argv, cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)


CALLER_TOKEN = "caller-token-0123456789"
SERVICE_KEY = "service-key-9876543210"
CALLER_METADATA = (("authorization", f"Bearer {CALLER_TOKEN}"),)


class BridgeProcess:
    """`myrouter-bridge serve` as a real child process, for signals, logs and memory.

    Its stderr is collected by a thread (so the pipe never fills) and searched
    for the "listening on" line that carries the bound port.
    """

    def __init__(
        self, *flags: str, env: dict[str, str] | None = None, log_level: str = "INFO"
    ) -> None:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MYROUTER_", "BRIDGE_"))
        }
        environ.update(env or {})
        self.lines: list[str] = []
        self._port: int | None = None
        self._listening = threading.Event()
        self.proc = subprocess.Popen(
            bridge_serve_argv("--workers", "1", "--log-level", log_level, *flags),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=REPO_ROOT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(30):
            self.kill()
            raise RuntimeError("bridge process did not start:\n" + self.output())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self._port is None:
                found = re.search(r"listening on [^\s:]+:(\d+)", line)
                if found:
                    self._port = int(found.group(1))
                    self._listening.set()
        self._listening.set()  # the process ended (start-up failure shows in output())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._port}"

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def rss_kib(self) -> int:
        """Resident set size of the process now, in KiB (Linux)."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Certs:
    """A server CA with a certificate for 127.0.0.1, and a separate client CA."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.other_ca = trustme.CA()
        server = self.server_ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert = self._write("server.pem", server.cert_chain_pems)
        self.server_key = self._write("server.key", [server.private_key_pem])
        self.server_ca_file = self._write("server-ca.pem", [self.server_ca.cert_pem])
        self.client_ca_file = self._write("client-ca.pem", [self.client_ca.cert_pem])
        self.server_ca_pem = self.server_ca.cert_pem.bytes()
        self.server_leaf = server

    def _write(self, name: str, blobs: list[trustme.Blob]) -> Path:
        path = self.dir / name
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
        return path

    def client_pair(self, ca: trustme.CA) -> tuple[bytes, bytes]:
        leaf = ca.issue_cert("bridge-client@example.test")
        return leaf.private_key_pem.bytes(), b"".join(b.bytes() for b in leaf.cert_chain_pems)


@dataclass
class Leaf:
    key_pem: bytes
    chain_pem: bytes


class CA:
    """A test CA that signs leaves with any SANs (URI ones included: trustme makes none)
    and any subject."""

    def __init__(self, name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = self._sign(
            subject,
            self._key.public_key(),
            [x509.BasicConstraints(ca=True, path_length=None)],
            subject,
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def _sign(self, subject, public_key, extensions, issuer) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=2))
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=True)
        return builder.sign(self._key, hashes.SHA256())

    def leaf(self, sans: Sequence[x509.GeneralName], common_name: str | None = None) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        names = (
            [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        extensions: list[x509.ExtensionType] = [x509.BasicConstraints(ca=False, path_length=None)]
        if sans:
            extensions.append(x509.SubjectAlternativeName(sans))
        cert = self._sign(x509.Name(names), key.public_key(), extensions, self.cert.subject)
        return Leaf(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            cert.public_bytes(serialization.Encoding.PEM),
        )


def uri(value: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(value)


def dns(value: str) -> x509.GeneralName:
    return x509.DNSName(value)


class RawUpstream:
    """An HTTP server that answers every request with the exact bytes a test sets.

    For answers no real API (nor the embedded one) would give: any status line,
    any headers, broken framing. Each connection reads one request (head and a
    Content-Length body), writes `answer`, then closes, so a broken answer can
    never spoil the next one. Runs its own event loop in a daemon thread.
    """

    def __init__(self) -> None:
        self.answer = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
        self.stall = 0.0
        """Seconds to wait before the last `stall_bytes` of the answer (0: no wait)."""
        self.stall_bytes = 0
        self.requests = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-upstream", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> RawUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        asyncio.get_running_loop().stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            self.requests += 1
            answer, stall = self.answer, self.stall
            split = len(answer) - self.stall_bytes if stall else len(answer)
            writer.write(answer[:split])
            await writer.drain()
            if stall:
                await asyncio.sleep(stall)
                writer.write(answer[split:])
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # whatever the client did, close
        except asyncio.CancelledError:
            pass  # stopping: end quietly (a cancelled stream task is logged by asyncio)
        finally:
            writer.close()
