"""Caller identity over real sockets: a grpc.aio server terminating mTLS reads its auth
context, as the service will, and client certificates carrying SPIFFE URI SANs (and DNS
SANs, and a CN alone) give their identities and, through a policy file, their rules.

trustme makes no URI SANs, so the certificates here are minted with `cryptography`
(`support.CA`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from bridge.callers import ANONYMOUS, caller_identity, parse_identity_sources
from bridge.errors import InvalidCallerIdentity
from bridge.policy import OTHER_LABEL, PolicyFile, model_allowed
from support import CA, Leaf, dns, uri

pytestmark = pytest.mark.timeout(60)

RANKER = "spiffe://cluster.local/ns/search/sa/ranker"
NIGHTLY = "spiffe://cluster.local/ns/batch/sa/nightly"
METHOD = "/test.Callers/Who"

POLICY = f"""\
callers:
  - id: "spiffe://cluster.local/ns/search/*"
    models: ["myrouter/*"]
    service_key: true
    limits: {{concurrent: 20}}
  - id: "{NIGHTLY}"
    service_key: false
    limits: {{tokens_per_day: 1000}}
default:
  service_key: false
"""


class Who:
    """What the service will do: the identity once per call, then the caller's rule."""

    def __init__(self, sources: str, policy: PolicyFile | None = None) -> None:
        self.sources = parse_identity_sources(sources)
        self.policy = policy
        self.seen: list[dict[str, list[bytes]]] = []

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        auth = context.auth_context()
        self.seen.append(auth)
        try:
            identity = caller_identity(self.sources, auth, context.invocation_metadata())
        except InvalidCallerIdentity as exc:
            await context.abort(exc.code, exc.message)
        if self.policy is None:
            return identity.encode()
        rule = self.policy.policy.rule_for(identity)
        allowed = model_allowed(rule, request.decode())
        return f"{identity}|{rule.label}|{rule.service_key}|{allowed}".encode()


async def _serve(
    who: Who, credentials: grpc.ServerCredentials | None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(who.handle)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Callers", {"Who": handler})]
    )
    address = "127.0.0.1:0"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    return server, port


async def _ask(
    channel: grpc.aio.Channel,
    model: str = "myrouter/echo",
    metadata: Sequence[tuple[str, str]] = (),
) -> str:
    call = channel.unary_unary(METHOD)
    answer: bytes = await call(model.encode(), metadata=tuple(metadata), timeout=10)
    return answer.decode()


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("callers test CA")


@pytest.fixture(scope="module")
def server_leaf(ca: CA) -> Leaf:
    return ca.leaf([dns("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])


def _mtls(ca: CA, server_leaf: Leaf) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(server_leaf.key_pem, server_leaf.chain_pem)],
        root_certificates=ca.pem,
        require_client_auth=True,
    )


def _channel(port: int, ca: CA, client: Leaf | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.pem,
        private_key=None if client is None else client.key_pem,
        certificate_chain=None if client is None else client.chain_pem,
    )
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


def test_two_spiffe_callers_get_their_identities_and_their_rules(ca, server_leaf, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    clients = {
        "ranker": ca.leaf([uri(RANKER), dns("ranker.search.svc")], common_name="ranker"),
        "nightly": ca.leaf([dns("nightly.batch.svc"), uri(NIGHTLY)]),
        "stranger": ca.leaf([uri("spiffe://cluster.local/ns/web/sa/frontend")]),
        "dns": ca.leaf([dns("first.example"), dns("second.example")], common_name="cn"),
        "cn": ca.leaf([], common_name="bridge client"),
    }

    async def scenario() -> tuple[dict[str, str], Who]:
        who = Who("tls", PolicyFile(path))
        server, port = await _serve(who, _mtls(ca, server_leaf))
        answers = {}
        try:
            for name, leaf in clients.items():
                async with _channel(port, ca, leaf) as channel:
                    answers[name] = await _ask(channel)
            async with _channel(port, ca, clients["ranker"]) as channel:
                answers["ranker, another model"] = await _ask(channel, "openai/gpt-4o")
        finally:
            await server.stop(None)
        return answers, who

    answers, who = asyncio.run(scenario())
    search = "spiffe://cluster.local/ns/search/*"
    assert answers == {
        "ranker": f"{RANKER}|{search}|True|True",
        "nightly": f"{NIGHTLY}|{NIGHTLY}|False|True",
        "stranger": f"spiffe://cluster.local/ns/web/sa/frontend|{OTHER_LABEL}|False|True",
        "dns": f"first.example|{OTHER_LABEL}|False|True",
        "cn": f"bridge client|{OTHER_LABEL}|False|True",
        "ranker, another model": f"{RANKER}|{search}|True|False",
    }
    # the shape the pure tests assume: typed SAN keys, in the certificate's order
    ranker = who.seen[0]
    assert ranker["peer_uri"] == [RANKER.encode()] and ranker["peer_dns"] == [b"ranker.search.svc"]
    assert who.seen[3]["peer_dns"] == [b"first.example", b"second.example"]


def test_two_uri_sans_are_refused_not_guessed(ca, server_leaf):
    leaf = ca.leaf(
        [uri("spiffe://cluster.local/ns/a/sa/x"), uri("spiffe://cluster.local/ns/a/sa/y")]
    )

    async def scenario() -> grpc.StatusCode:
        server, port = await _serve(Who("tls"), _mtls(ca, server_leaf))
        try:
            async with _channel(port, ca, leaf) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _ask(channel)
                return caught.value.code()
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == grpc.StatusCode.UNAUTHENTICATED


def test_tls_without_a_client_certificate_is_anonymous_and_xfcc_is_read_only_if_listed(
    ca, server_leaf
):
    credentials = grpc.ssl_server_credentials([(server_leaf.key_pem, server_leaf.chain_pem)])
    forged = [("x-forwarded-client-cert", f"URI={RANKER}")]

    async def scenario() -> list[str]:
        answers = []
        for sources in ("tls", "tls,xfcc"):
            server, port = await _serve(Who(sources), credentials)
            try:
                async with _channel(port, ca, None) as channel:
                    answers.append(await _ask(channel, metadata=forged))
            finally:
                await server.stop(None)
        return answers

    assert asyncio.run(scenario()) == [ANONYMOUS, RANKER]


def test_a_policy_file_changed_while_serving(ca, server_leaf, tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    ranker = ca.leaf([uri(RANKER)])

    async def scenario() -> list[str]:
        results: asyncio.Queue[str] = asyncio.Queue()
        policy = PolicyFile(path, interval=0.05, on_result=results.put_nowait)
        server, port = await _serve(Who("tls", policy), _mtls(ca, server_leaf))
        answers = []
        try:
            async with policy.watching(), _channel(port, ca, ranker) as channel:
                answers.append(await _ask(channel))
                path.write_text(POLICY.replace("service_key: true", "service_key: false"))
                answers.append(await asyncio.wait_for(results.get(), 10))
                answers.append(await _ask(channel))
                path.write_text("callers: [oops\n")  # broken: the last good policy stays
                answers.append(await asyncio.wait_for(results.get(), 10))
                answers.append(await _ask(channel))
        finally:
            await server.stop(None)
        return answers

    search = "spiffe://cluster.local/ns/search/*"
    assert asyncio.run(scenario()) == [
        f"{RANKER}|{search}|True|True",
        "ok",
        f"{RANKER}|{search}|False|True",
        "error",
        f"{RANKER}|{search}|False|True",
    ]
