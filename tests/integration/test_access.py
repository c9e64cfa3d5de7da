"""bridge.access end to end: real bridges, the embedded upstream, generated stubs.

Callers named by client certificates (SPIFFE URI SANs) over mTLS, by the
sidecar's x-forwarded-client-cert and by a trusted header get what the policy
file gives them; two bridge processes share one caller's limits through a real
Redis, which is killed and brought back; the policy file changes under running
calls. Every refusal keeps the status contract: its reason in ErrorInfo, the
request id in the trailers, one log line with the status and the caller, and
``bridge_caller_rpcs_total`` counting it under the caller's label.

The building blocks are tested alone in tests/integration/test_callers.py (identity
over TLS) and tests/integration/test_quotas.py (two engines on one Redis).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from cryptography import x509

from bridge.callers import ANONYMOUS, parse_identity_sources
from bridge.policy import OTHER_LABEL
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import (
    CA,
    CALLER_METADATA,
    CALLER_TOKEN,
    SERVICE_KEY,
    BridgeProcess,
    RedisServer,
    chat_request,
    details_of,
    dns,
    free_port,
    metadata_dict,
    read_stream,
    stub_for,
    uri,
    with_scenario,
)

pytestmark = pytest.mark.timeout(120)

Lines = Callable[[], list[dict[str, Any]]]

RANKER = "spiffe://cluster.local/ns/search/sa/ranker"
SEARCH = "spiffe://cluster.local/ns/search/*"
NIGHTLY = "spiffe://cluster.local/ns/batch/sa/nightly"
TOY = "spiffe://cluster.local/ns/sandbox/sa/toy"
SANDBOX = "spiffe://cluster.local/ns/sandbox/*"
UNARY = "CreateChatCompletion"
STREAM = "StreamChatCompletion"

POLICY = f"""\
callers:
  - id: "{SEARCH}"
    models: ["myrouter/*"]
    service_key: true
  - id: "{NIGHTLY}"
    service_key: false
  - id: "{SANDBOX}"
    allow: false
    service_key: false
default:
  service_key: false
"""


def caller_rpcs(bridge: Any, caller: str, method: str, code: str) -> float:
    value = bridge.server.metrics.registry.get_sample_value(
        "bridge_caller_rpcs_total", {"caller": caller, "method": method, "code": code}
    )
    return value or 0.0


def log_line(lines: Callable[[], list[dict[str, Any]]], request_id: str) -> dict[str, Any]:
    """The one per-RPC log line of `request_id` (it may follow the status by a moment)."""
    for _ in range(500):
        found = [line for line in lines() if line.get("request_id") == request_id]
        if found:
            [line] = found
            return line
        threading.Event().wait(0.01)
    raise AssertionError(f"no log line for {request_id}")


def reason_of(error: grpc.RpcError) -> str:
    return str(details_of(error)["ErrorInfo"].reason)


class Contract:
    """One call through a bridge thread, and the status contract of its outcome."""

    def __init__(self, bridge: Any, stub: Any, rpc_lines: Lines) -> None:
        self.bridge = bridge
        self.stub = stub
        self.rpc_lines = rpc_lines

    def call(
        self,
        request: Any,
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        method: str = UNARY,
        label: str,
        identity: str | None,
    ) -> grpc.RpcError | None:
        """Call `method`; whatever the outcome: the request id in the trailers, one log line
        with the status and (when known) the caller, and `label`'s count up by one."""
        request_id = f"access-{next(_REQUEST_IDS)}"
        metadata = (*metadata, ("x-request-id", request_id))
        before = {code: caller_rpcs(self.bridge, label, method, code) for code in CODES}
        error: grpc.RpcError | None = None
        if method == UNARY:
            try:
                _, call = self.stub.CreateChatCompletion.with_call(
                    request, metadata=metadata, timeout=15
                )
            except grpc.RpcError as exc:
                error = call = exc
        else:
            _, error, call = read_stream(self.stub, request, metadata, timeout=15)
        code = grpc.StatusCode.OK if error is None else error.code()
        sent = metadata_dict(call.trailing_metadata())
        if error is None:  # an answer carries it from the start
            sent.update(metadata_dict(call.initial_metadata()))
        assert sent["x-request-id"] == request_id
        line = log_line(self.rpc_lines, request_id)
        assert line["status"] == code.name
        assert line.get("caller") == identity
        for name in CODES:
            wanted = before[name] + (1 if name == code.name else 0)
            assert caller_rpcs(self.bridge, label, method, name) == wanted, name
        return error


_REQUEST_IDS = itertools.count(1)
"""Unique request ids for the whole run: each call's log line is found by its own."""
CODES = ("OK", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "UNAVAILABLE")


# mTLS: client certificates with SPIFFE URI SANs


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("access test CA")


@pytest.fixture(scope="module")
def mtls_bridge(make_bridge, ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("mtls")
    server = ca.leaf([dns("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    files = {
        "server.pem": server.chain_pem,
        "server.key": server.key_pem,
        "ca.pem": ca.pem,
        "policy.yaml": POLICY.encode(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return make_bridge(
        tls_cert_file=directory / "server.pem",
        tls_key_file=directory / "server.key",
        tls_client_ca_file=directory / "ca.pem",
        policy_file=directory / "policy.yaml",
    )


@pytest.fixture(scope="module")
def mtls_stubs(mtls_bridge: Any, ca: CA) -> Iterator[dict[str, Any]]:
    """A stub per caller, each on a channel with that caller's certificate."""
    leaves = {
        "ranker": ca.leaf([uri(RANKER), dns("ranker.search.svc")], common_name="ranker"),
        "nightly": ca.leaf([uri(NIGHTLY)]),
        "toy": ca.leaf([uri(TOY)]),
        "stranger": ca.leaf([uri("spiffe://cluster.local/ns/web/sa/frontend")]),
    }
    channels = []
    stubs = {}
    for name, leaf in leaves.items():
        credentials = grpc.ssl_channel_credentials(ca.pem, leaf.key_pem, leaf.chain_pem)
        channel = grpc.secure_channel(mtls_bridge.target, credentials)
        channels.append(channel)
        stubs[name] = chat_pb2_grpc.ChatServiceStub(channel)
    yield stubs
    for channel in channels:
        channel.close()


def test_mtls_callers_get_their_policy_through_the_bridge(
    mtls_bridge, mtls_stubs, upstream, rpc_lines
):
    def contract(name: str) -> Contract:
        return Contract(mtls_bridge, mtls_stubs[name], rpc_lines)

    # an allowed caller on the bridge's key, matched by a glob entry
    tokens = {"caller": SEARCH, "model": "myrouter/echo", "kind": "output"}
    registry = mtls_bridge.server.metrics.registry
    before = registry.get_sample_value("bridge_caller_tokens_total", tokens) or 0.0
    assert contract("ranker").call(chat_request(), label=SEARCH, identity=RANKER) is None
    [sent] = upstream.requests()
    assert sent.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert registry.get_sample_value("bridge_caller_tokens_total", tokens) > before
    upstream.clear()

    # a model its entry does not list: refused before anything goes upstream
    error = contract("ranker").call(
        chat_request(model="openai/gpt-4o"), method=STREAM, label=SEARCH, identity=RANKER
    )
    assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "MODEL_NOT_ALLOWED"
    assert dict(details_of(error)["ErrorInfo"].metadata)["model"] == "openai/gpt-4o"

    # no service key for this caller, unless it sends its own token
    error = contract("nightly").call(chat_request(), label=NIGHTLY, identity=NIGHTLY)
    assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "SERVICE_KEY_NOT_ALLOWED"
    assert upstream.requests() == []
    own = contract("nightly").call(
        chat_request(), CALLER_METADATA, method=STREAM, label=NIGHTLY, identity=NIGHTLY
    )
    assert own is None
    [sent] = upstream.requests()
    assert sent.headers["authorization"] == f"Bearer {CALLER_TOKEN}"
    upstream.clear()

    # `allow: false`: refused whatever it sends, its own token included
    for method in (UNARY, STREAM):
        error = contract("toy").call(
            chat_request(), CALLER_METADATA, method=method, label=SANDBOX, identity=TOY
        )
        assert error is not None and error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(error) == "CALLER_NOT_ALLOWED"

    # identified, but only the default matches: `other`, no service key
    error = contract("stranger").call(
        chat_request(), label=OTHER_LABEL, identity="spiffe://cluster.local/ns/web/sa/frontend"
    )
    assert error is not None and reason_of(error) == "SERVICE_KEY_NOT_ALLOWED"
    assert upstream.requests() == []


# XFCC, a trusted header, and what goes upstream

XFCC = "x-forwarded-client-cert"
SIDECAR = f'By=spiffe://cluster.local/ns/ai/sa/bridge;Hash=abc;URI="{RANKER}"'


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_xfcc_names_the_caller_and_never_goes_upstream(
    make_bridge, policy_path, upstream, rpc_lines
):
    bridge = make_bridge(
        caller_identity=parse_identity_sources("xfcc"),
        policy_file=policy_path,
        forward_caller_header="x-caller",
    )
    channel, stub = stub_for(bridge.target)
    with channel:
        contract = Contract(bridge, stub, rpc_lines)
        assert (
            contract.call(chat_request(), ((XFCC, SIDECAR),), label=SEARCH, identity=RANKER) is None
        )
        [sent] = upstream.requests()
        assert XFCC not in sent.headers
        assert sent.headers["x-caller"] == RANKER  # --forward-caller-header
        upstream.clear()

        for broken in (f'URI="{RANKER}', "URI", f"By=a;URI={RANKER};URI={NIGHTLY}"):
            for method in (UNARY, STREAM):
                error = contract.call(
                    chat_request(), ((XFCC, broken),), method=method, label="", identity=None
                )
                assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED
                assert reason_of(error) == "CALLER_IDENTITY_MALFORMED"
                assert dict(details_of(error)["ErrorInfo"].metadata)["source"] == "xfcc"
                assert RANKER not in error.details()
        assert upstream.requests() == []

        # no header: the anonymous caller, which only `default` (no service key) matches
        error = contract.call(chat_request(), label=ANONYMOUS, identity=ANONYMOUS)
        assert error is not None and reason_of(error) == "SERVICE_KEY_NOT_ALLOWED"
        assert (
            contract.call(chat_request(), CALLER_METADATA, label=ANONYMOUS, identity=ANONYMOUS)
            is None
        )
        [sent] = upstream.requests()
        assert sent.headers["x-caller"] == ANONYMOUS


def test_xfcc_is_never_believed_unless_listed(make_bridge, policy_path, upstream, rpc_lines):
    bridge = make_bridge(policy_file=policy_path, forward_caller_header="x-caller")  # `tls`
    channel, stub = stub_for(bridge.target)
    with channel:
        contract = Contract(bridge, stub, rpc_lines)
        forged = ((XFCC, SIDECAR),)
        error = contract.call(chat_request(), forged, label=ANONYMOUS, identity=ANONYMOUS)
        assert error is not None and reason_of(error) == "SERVICE_KEY_NOT_ALLOWED"
        broken = ((XFCC, 'URI="'), *CALLER_METADATA)  # not read, so not refused either
        assert contract.call(chat_request(), broken, label=ANONYMOUS, identity=ANONYMOUS) is None
        [sent] = upstream.requests()
        assert XFCC not in sent.headers
        assert sent.headers["x-caller"] == ANONYMOUS


# Reloading the policy under running calls


def test_policy_reload_under_a_running_stream(make_bridge, tmp_path, upstream, rpc_lines):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    bridge = make_bridge(
        caller_identity=parse_identity_sources("header:x-caller-id"),
        policy_file=path,
        policy_reload_interval=0.1,
    )
    registry = bridge.server.metrics.registry

    def reloads(result: str) -> float:
        return registry.get_sample_value("bridge_policy_reloads_total", {"result": result}) or 0.0

    def wait_reloads(result: str, count: float) -> None:
        deadline = time.monotonic() + 30
        while reloads(result) < count:
            assert time.monotonic() < deadline, f"no policy reload ({result})"
            time.sleep(0.05)

    ranker = (("x-caller-id", RANKER),)
    channel, stub = stub_for(bridge.target)
    with channel:
        contract = Contract(bridge, stub, rpc_lines)
        slow = with_scenario(chat_request("one two three four five six"), chunk_delay=0.3)
        stream = stub.StreamChatCompletion(slow, metadata=ranker, timeout=30)
        first = next(stream)
        ok_before = reloads("ok")
        path.write_text(POLICY.replace(f'id: "{SEARCH}"', f'id: "{SEARCH}"\n    allow: false'))
        wait_reloads("ok", ok_before + 1)
        rest = list(stream)  # started under the old policy: it finishes
        assert stream.code() is grpc.StatusCode.OK
        text = "".join(c.choices[0].delta.content for c in [first, *rest] if c.choices)
        assert "one two three four five six" in text

        error = contract.call(chat_request(), ranker, label=SEARCH, identity=RANKER)
        assert error is not None and reason_of(error) == "CALLER_NOT_ALLOWED"

        errors_before = reloads("error")
        path.write_text("callers: [oops\n")
        wait_reloads("error", errors_before + 1)
        error = contract.call(chat_request(), ranker, label=SEARCH, identity=RANKER)
        assert error is not None and reason_of(error) == "CALLER_NOT_ALLOWED"  # the last good

        path.write_text(POLICY)
        wait_reloads("ok", ok_before + 2)
        assert contract.call(chat_request(), ranker, label=SEARCH, identity=RANKER) is None


# Two bridge processes sharing one Redis

TEAMS = """\
callers:
  - id: "team-*"
    service_key: true
    limits:
      requests_per_minute: 4
      tokens_per_minute: 1500
default:
  service_key: true
"""
RESERVE = 1000
"""Each call's max_tokens: two reservations are over the tokens_per_minute limit, so a
call after another passes only once the first settled from its (small) usage."""


class Replica:
    """A bridge process, its JSON log lines and its /metrics."""

    def __init__(self, start: Callable[..., BridgeProcess], *flags: str) -> None:
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.process = start(
            "--log-format", "json", "--metrics-listen", f"127.0.0.1:{metrics_port}", *flags
        )
        self.channel, self.stub = stub_for(self.process.target)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.process.lines if line.startswith("{")]

    def rpc_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "bridge.rpc"]

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            exposition = response.read().decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} "
        for line in exposition.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return 0.0

    def stream(self, team: str, request_id: str) -> tuple[list[Any], grpc.RpcError | None, Any]:
        metadata = (("x-caller-id", team), ("x-request-id", request_id))
        return read_stream(self.stub, chat_request(max_tokens=RESERVE), metadata, timeout=15)


def refused(
    replica: Replica, team: str, request_id: str, code: grpc.StatusCode, label: str
) -> grpc.RpcError:
    """A stream `replica` refuses with `code`, and its status contract: the request id in
    the trailers, one log line with the status and the caller, counted under `label`."""
    labels = {"caller": label, "code": code.name, "method": STREAM}
    before = replica.metric("bridge_caller_rpcs_total", **labels)
    _, error, call = replica.stream(team, request_id)
    assert error is not None and error.code() is code
    assert metadata_dict(call.trailing_metadata())["x-request-id"] == request_id
    line = log_line(replica.rpc_lines, request_id)
    assert line["status"] == code.name
    assert line["caller"] == team
    assert replica.metric("bridge_caller_rpcs_total", **labels) == before + 1
    return error


def _tokens_counted(client: redis.Redis, team: str) -> int:
    keys = client.keys(f"bridge:quota:{{{team}}}:tokens_per_minute:*")
    return sum(int(float(client.get(key) or 0)) for key in keys)


def _shared_limits_flags(policy: Path, redis_server: RedisServer) -> tuple[str, ...]:
    """A replica's flags: the policy, callers named by a header, limits in the shared Redis."""
    return (
        "--policy-file", str(policy),
        "--caller-identity", "header:x-caller-id",
        "--limits-redis-url", redis_server.url,
        "--limits-redis-timeout", "2",
    )  # fmt: skip


def test_two_replicas_share_a_callers_limits_and_settle_streamed_usage(
    start_bridge_process, redis_server: RedisServer, tmp_path, upstream
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEAMS)
    flags = _shared_limits_flags(policy, redis_server)
    replicas = [Replica(start_bridge_process, *flags) for _ in range(2)]
    client = redis.Redis(port=redis_server.port)
    try:
        for n in range(4):  # alternating; each passes only once the previous one settled
            replica = replicas[n % 2]
            chunks, error, _ = replica.stream("team-a", f"share-{n}")
            assert error is None, error
            assert chunks[-1].HasField("usage") and not chunks[-1].choices  # the usage chunk
            used = chunks[-1].usage.total_tokens
            assert 0 < used < RESERVE
            deadline = time.monotonic() + 30
            while _tokens_counted(client, "team-a") > (n + 1) * used:  # settled
                assert time.monotonic() < deadline, "the stream's usage was never settled"
                time.sleep(0.05)
        bodies = [r.body for r in upstream.requests()]
        assert len(bodies) == 4
        assert all(b["stream_options"] == {"include_usage": True} for b in bodies)

        for n, replica in enumerate(replicas):  # the fifth and sixth: over, on either replica
            exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
            error = refused(replica, "team-a", f"share-over-{n}", exhausted, "team-*")
            details = details_of(error)
            assert details["ErrorInfo"].reason == "CALLER_QUOTA_EXCEEDED"
            [violation] = details["QuotaFailure"].violations
            assert violation.quota_id == "requests_per_minute"
            retry = details["RetryInfo"].retry_delay  # a sliding window frees within two
            assert 0 < retry.seconds + retry.nanos / 1e9 <= 120
        assert len(upstream.requests()) == 4

        # a glob entry's limits hold per identity: another team has its own
        _, error, _ = replicas[1].stream("team-b", "share-b")
        assert error is None
    finally:
        client.close()
        for replica in replicas:
            replica.channel.close()


REQUESTS = """\
callers:
  - id: "team-*"
    service_key: true
    limits: {requests_per_minute: 3}
default:
  service_key: true
"""


def test_redis_killed_and_back_with_real_replicas(
    start_bridge_process, redis_server: RedisServer, tmp_path, upstream
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(REQUESTS)
    flags = _shared_limits_flags(policy, redis_server)
    open_ = Replica(start_bridge_process, *flags, "--limits-failure-mode", "open")
    closed = Replica(start_bridge_process, *flags, "--limits-failure-mode", "closed")
    try:
        for replica in (open_, closed):
            assert replica.stream("team-a", f"up-{id(replica)}")[1] is None

        redis_server.kill()
        upstream.clear()
        for n in range(4):  # more than the limit: nothing counts them
            assert open_.stream("team-a", f"open-{n}")[1] is None
        warnings = [
            line
            for line in open_.lines()
            if line["level"] == "WARNING" and line["logger"] == "bridge.quotas"
        ]
        assert warnings, open_.process.output()
        assert open_.metric("bridge_limits_store_failures_total", mode="open") >= 1
        error = refused(closed, "team-a", "closed-down", grpc.StatusCode.UNAVAILABLE, "team-*")
        assert reason_of(error) == "LIMITS_STORE_UNAVAILABLE"
        assert closed.metric("bridge_limits_store_failures_total", mode="closed") >= 1
        assert len(upstream.requests()) == 4  # the open replica's only

        redis_server.start()  # the same port: the replicas' URL is unchanged
        deadline = time.monotonic() + 30
        while closed.stream("team-probe", f"probe-{time.monotonic()}")[1] is not None:
            assert time.monotonic() < deadline, "enforcement never resumed (closed)"
            time.sleep(0.2)
        while True:  # open admits either way: resumed once a call no longer counts a failure
            failures = open_.metric("bridge_limits_store_failures_total", mode="open")
            assert open_.stream("team-probe", f"probe-{time.monotonic()}")[1] is None
            if open_.metric("bridge_limits_store_failures_total", mode="open") == failures:
                break
            assert time.monotonic() < deadline, "enforcement never resumed (open)"
            time.sleep(0.2)
        for n, replica in enumerate((open_, closed, open_)):  # a fresh Redis: counted afresh
            assert replica.stream("team-a", f"back-{n}")[1] is None
        for n, replica in enumerate((closed, open_)):
            exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
            error = refused(replica, "team-a", f"back-over-{n}", exhausted, "team-*")
            assert reason_of(error) == "CALLER_QUOTA_EXCEEDED"
    finally:
        open_.channel.close()
        closed.channel.close()


# ListModels: requests and concurrency, never tokens

MODELS_POLICY = """\
callers:
  - id: "spender"
    service_key: true
    limits: {tokens_per_minute: 50}
  - id: "lister"
    service_key: true
    limits: {requests_per_minute: 2}
default:
  service_key: true
"""


def _unary_error(stub: Any, request: Any, metadata: Any) -> grpc.RpcError | None:
    try:
        stub.CreateChatCompletion(request, metadata=metadata, timeout=15)
    except grpc.RpcError as exc:
        return exc
    return None


def test_list_models_counts_requests_but_no_tokens(make_bridge, tmp_path, rpc_lines):
    path = tmp_path / "policy.yaml"
    path.write_text(MODELS_POLICY)
    bridge = make_bridge(
        caller_identity=parse_identity_sources("header:x-caller-id"), policy_file=path
    )
    channel, stub = stub_for(bridge.target)
    with channel:
        spender = (("x-caller-id", "spender"),)
        long_prompt = " ".join(["word"] * 80)  # its usage settles the window past 50
        deadline = time.monotonic() + 30
        while True:  # until the settled usage has put the window over its limit
            error = _unary_error(stub, chat_request(long_prompt, max_tokens=5), spender)
            if error is not None:
                break
            assert time.monotonic() < deadline, "the usage never settled"
            time.sleep(0.05)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(error) == "CALLER_QUOTA_EXCEEDED"
        stub.ListModels(chat_pb2.ListModelsRequest(), metadata=spender, timeout=15)

        contract = Contract(bridge, stub, rpc_lines)
        lister = (("x-caller-id", "lister"),)
        for _ in range(2):
            stub.ListModels(chat_pb2.ListModelsRequest(), metadata=lister, timeout=15)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListModels(chat_pb2.ListModelsRequest(), metadata=lister, timeout=15)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details_of(caught.value)["QuotaFailure"].violations[0].quota_id == (
            "requests_per_minute"
        )
        error = contract.call(chat_request(), lister, label="lister", identity="lister")
        assert error is not None and reason_of(error) == "CALLER_QUOTA_EXCEEDED"
