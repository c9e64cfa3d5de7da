"""TLS and mTLS on the gRPC listener and a private CA for the upstream, with test-made certs."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import threading
from collections.abc import Iterator

import grpc
import pytest
from aiohttp import web

from myrouter.chat.v1 import chat_pb2_grpc
from myrouter_upstream import UpstreamConfig
from myrouter_upstream.app import build_app
from myrouter_upstream.state import UpstreamState
from support import (
    CALLER_METADATA,
    CALLER_TOKEN,
    SERVICE_KEY,
    BridgeProcess,
    Certs,
    bridge_serve_argv,
    chat_request,
)

pytestmark = pytest.mark.timeout(60)


def _secure_stub(target: str, certs: Certs, client: tuple[bytes, bytes] | None = None):
    key, chain = client if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.server_ca_pem, private_key=key, certificate_chain=chain
    )
    channel = grpc.secure_channel(target, credentials)
    return channel, chat_pb2_grpc.ChatServiceStub(channel)


def _call(stub):
    return stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)


def test_tls_client_connects_and_plaintext_is_refused(make_bridge, certs):
    bridge = make_bridge(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    channel, stub = _secure_stub(bridge.target, certs)
    with channel:
        assert _call(stub).choices
    with grpc.insecure_channel(bridge.target) as plain:
        with pytest.raises(grpc.RpcError) as caught:
            _call(chat_pb2_grpc.ChatServiceStub(plain))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_with_certificate_connects_others_are_refused(make_bridge, certs):
    bridge = make_bridge(
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.client_ca_file,
    )
    channel, stub = _secure_stub(bridge.target, certs, certs.client_pair(certs.client_ca))
    with channel:
        assert _call(stub).choices
    for client in (None, certs.client_pair(certs.other_ca)):  # no certificate, a stranger's
        channel, stub = _secure_stub(bridge.target, certs, client)
        with channel, pytest.raises(grpc.RpcError) as caught:
            _call(stub)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serve_with_an_unreadable_key_exits_with_a_clear_error(certs, tmp_path):
    result = subprocess.run(
        bridge_serve_argv(
            "--workers",
            "1",
            "--tls-cert-file",
            str(certs.server_cert),
            "--tls-key-file",
            str(tmp_path / "nope.key"),
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        "--tls-key-file (BRIDGE_TLS_KEY_FILE): cannot read" in result.stderr
        and "nope.key" in result.stderr
    )


# --------------------------------------------------------------------------- #
# The upstream over TLS, signed by a private CA
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def tls_upstream(certs: Certs) -> Iterator[str]:
    """The embedded MyRouter API behind TLS with the test CA's certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs.server_leaf.configure_cert(context)
    state = UpstreamState(
        UpstreamConfig(host="127.0.0.1", port=0, api_keys=frozenset({CALLER_TOKEN, SERVICE_KEY}))
    )
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        # the untrusting bridge's refused handshake is expected: no log noise for it
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        holder["port"] = runner.addresses[0][1]
        stop = asyncio.Event()
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(15)
    yield f"https://127.0.0.1:{holder['port']}/api/v1"
    loop, stop = holder["loop"], holder["stop"]
    loop.call_soon_threadsafe(stop.set)  # type: ignore[attr-defined]
    thread.join(10)


def _stop(proc: BridgeProcess) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()


def test_upstream_with_a_private_ca(certs, tls_upstream, start_bridge_process):
    # Bridge processes: TLS towards the upstream is kept out of the test process's threads.
    trusted = start_bridge_process(
        "--upstream-ca-file", str(certs.server_ca_file), upstream_url=tls_upstream
    )
    try:
        with grpc.insecure_channel(trusted.target) as channel:
            assert _call(chat_pb2_grpc.ChatServiceStub(channel)).choices
    finally:
        _stop(trusted)
    untrusted = start_bridge_process(upstream_url=tls_upstream)  # the system store only
    try:
        with grpc.insecure_channel(untrusted.target) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                _call(chat_pb2_grpc.ChatServiceStub(channel))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        _stop(untrusted)


def test_the_start_up_line_says_plaintext_tls_or_mtls(start_bridge_process, certs):
    tls = ("--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key))
    mtls = (*tls, "--tls-client-ca-file", str(certs.client_ca_file))
    for flags, said in (
        ((), "(plaintext, no TLS; upstream "),
        (tls, "(TLS; upstream "),
        (mtls, "(mTLS, client certificates required; upstream "),
    ):
        process = start_bridge_process(*flags)
        listening = next(line for line in process.lines if "listening on" in line)
        assert said in listening, listening
        process.kill()
