"""bridge.callers: the identity sources' setting, the TLS / XFCC / header rules, and the XFCC
parser as a property suite (valid headers from a model, garbage, unlisted sources)."""

from __future__ import annotations

import string

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.callers import (
    ANONYMOUS,
    DEFAULT_SOURCES,
    MAX_IDENTITY_CHARS,
    IdentitySource,
    caller_identity,
    parse_identity_sources,
    parse_xfcc,
    tls_identity,
    xfcc_identity,
)
from bridge.errors import ERROR_DOMAIN, InvalidCallerIdentity, to_status

pytestmark = pytest.mark.timeout(120)

XFCC = "x-forwarded-client-cert"
RANKER = "spiffe://cluster.local/ns/search/sa/ranker"
ISTIO_XFCC = (
    f'By=spiffe://cluster.local/ns/llm/sa/myrouter-bridge;Hash=4f2a;Subject="";URI={RANKER}'
)


def sources(text: str) -> tuple[IdentitySource, ...]:
    return parse_identity_sources(text)


# --------------------------------------------------------------------------- #
# The setting
# --------------------------------------------------------------------------- #


def test_sources_parse_in_order_with_names_lowered():
    assert sources(" tls, XFCC ,header:L5d-Client-Id") == (
        IdentitySource("tls"),
        IdentitySource("xfcc", XFCC),
        IdentitySource("header", "l5d-client-id"),
    )
    assert [str(s) for s in sources("header:x-caller,tls")] == ["header:x-caller", "tls"]
    assert sources("tls") == DEFAULT_SOURCES


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tsl", "unknown identity source 'tsl'"),
        ("", "empty identity source"),
        ("tls,,xfcc", "empty identity source"),
        ("tls:x", "unknown identity source"),
        ("header", "unknown identity source"),
        ("header:", "needs the header's name"),
        ("tls,xfcc,tls", "listed twice"),
        ("header:authorization", "credential"),
        ("header:cookie", "credential"),
        ("header:traceparent", "trace header"),
        ("header:x-forwarded-client-cert", "list the source xfcc"),
        ("header:id-bin", "binary"),
        ("header:grpc-id", "set by the bridge"),
        ("header:a b", "not a lower-case HTTP header name"),
    ],
)
def test_bad_sources_are_refused_with_the_reason(text, why):
    with pytest.raises(ValueError, match=why):
        parse_identity_sources(text)


# --------------------------------------------------------------------------- #
# tls: the auth context's shapes, as grpc reports them (tests/integration/test_callers.py
# checks these shapes against real certificates)
# --------------------------------------------------------------------------- #


def context(**values: list[bytes]) -> dict[str, list[bytes]]:
    return {"transport_security_type": [b"ssl"], **values}


def test_tls_prefers_the_uri_san_then_the_first_dns_san_then_the_cn():
    assert (
        tls_identity(context(peer_uri=[RANKER.encode()], peer_dns=[b"a"], x509_common_name=[b"c"]))
        == RANKER
    )
    assert tls_identity(context(peer_dns=[b"first.example", b"second.example"])) == "first.example"
    assert tls_identity(context(x509_common_name=[b"bridge client"])) == "bridge client"
    assert tls_identity(context()) is None  # TLS without a client certificate
    assert tls_identity({}) is None and tls_identity(None) is None


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"peer_uri": [b"spiffe://a/x", b"spiffe://a/y"]}, "2 URI SANs"),
        ({"x509_common_name": [b"a", b"b"]}, "2 subject CNs"),
        ({"peer_uri": ["spiffe://ä/x".encode()]}, "non-ASCII"),
        ({"x509_common_name": [b"bad\x01name"]}, "control"),
        ({"peer_dns": [b"x" * (MAX_IDENTITY_CHARS + 1)]}, "characters"),
        ({"x509_common_name": [b"anonymous"]}, "without an identity"),
    ],
)
def test_tls_conflicts_and_bad_identities_are_refused(values, why):
    with pytest.raises(InvalidCallerIdentity, match=why) as caught:
        tls_identity(context(**values))
    assert caught.value.source == "tls"


# --------------------------------------------------------------------------- #
# xfcc and header:NAME
# --------------------------------------------------------------------------- #


def test_xfcc_takes_the_uri_of_the_last_element():
    header = f"By=spiffe://x/gw;URI=spiffe://x/edge,{ISTIO_XFCC}"
    assert xfcc_identity([header]) == RANKER
    assert xfcc_identity([f"{ISTIO_XFCC},By=spiffe://x/b;Hash=1"]) is None  # last has no URI
    assert xfcc_identity([]) is None


def test_repeated_xfcc_lines_are_one_list():
    assert xfcc_identity(["URI=spiffe://x/first", "URI=spiffe://x/nearest"]) == "spiffe://x/nearest"


def test_xfcc_quoted_values_and_escapes():
    header = r'Subject="/CN=a \"b\", c;d=e";URI="spiffe://x/q\\r" , DNS=a;DNS=b'
    assert parse_xfcc(header) == [
        [("Subject", '/CN=a "b", c;d=e'), ("URI", r"spiffe://x/q\r")],
        [("DNS", "a"), ("DNS", "b")],
    ]


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("", "a key is expected at character 0"),
        ('URI="spiffe://x', "not terminated"),
        ("URI", "'=' is expected"),
        ("URI=a b", "unexpected 'b'"),
        ("URI=a;", "a key is expected"),
        ("URI=a,,URI=b", "a key is expected"),
        ('URI=a"b', "unexpected '\"'"),
        ("=a", "a key is expected"),
        ("URI=a=b", "unexpected '='"),
        ("URI=spiffe://x/a;uri=spiffe://x/b", "2 URI= pairs"),
        ("URI=", "empty identity"),
        ('URI="spiffe://x/ä"', "non-ASCII"),
        ('URI=" spiffe://x/a"', "spaces at an end"),
        (f"URI={'a' * (MAX_IDENTITY_CHARS + 1)}", "characters"),
        ("URI=anonymous", "without an identity"),
    ],
)
def test_malformed_xfcc_is_refused(header, why):
    with pytest.raises(InvalidCallerIdentity, match=why) as caught:
        caller_identity(sources("xfcc"), None, [(XFCC, header)])
    assert caught.value.source == "xfcc"


def test_an_earlier_element_may_hold_two_uris():
    assert xfcc_identity(["URI=spiffe://x/a;URI=spiffe://x/b,URI=spiffe://x/c"]) == "spiffe://x/c"


def test_header_source():
    src = sources("header:l5d-client-id")
    assert caller_identity(src, None, [("l5d-client-id", "ranker.search.serviceaccount")]) == (
        "ranker.search.serviceaccount"
    )
    assert caller_identity(src, None, [("other", "x")]) == ANONYMOUS
    with pytest.raises(InvalidCallerIdentity, match="sent 2 times"):
        caller_identity(src, None, [("l5d-client-id", "a"), ("l5d-client-id", "a")])
    with pytest.raises(InvalidCallerIdentity, match="empty"):
        caller_identity(src, None, [("l5d-client-id", "")])
    with pytest.raises(InvalidCallerIdentity, match="binary"):
        caller_identity(src, None, [("l5d-client-id", b"x")])


# --------------------------------------------------------------------------- #
# The order, and the trust rule
# --------------------------------------------------------------------------- #


def test_the_first_listed_source_with_an_identity_wins():
    tls = context(peer_uri=[b"spiffe://x/tls"])
    metadata = [(XFCC, "URI=spiffe://x/xfcc"), ("x-caller", "header-caller")]
    assert caller_identity(sources("tls,xfcc"), tls, metadata) == "spiffe://x/tls"
    assert caller_identity(sources("xfcc,tls"), tls, metadata) == "spiffe://x/xfcc"
    assert caller_identity(sources("header:x-caller,xfcc"), tls, metadata) == "header-caller"
    # a source with nothing to say passes the turn on
    assert caller_identity(sources("tls,xfcc"), context(), metadata) == "spiffe://x/xfcc"
    assert caller_identity(sources("tls,xfcc"), None, []) == ANONYMOUS


def test_a_malformed_listed_source_refuses_even_after_an_identity():
    tls = context(peer_uri=[b"spiffe://x/tls"])
    with pytest.raises(InvalidCallerIdentity, match="xfcc"):
        caller_identity(sources("tls,xfcc"), tls, [(XFCC, 'URI="broken')])


def test_unlisted_sources_are_never_read():
    metadata = [(XFCC, 'URI="broken'), ("x-caller", "\x00"), ("l5d-client-id", "spiffe://x/h")]
    broken_tls = context(peer_uri=[b"a", b"b"])
    assert caller_identity(sources("header:l5d-client-id"), broken_tls, metadata) == (
        "spiffe://x/h"
    )
    assert caller_identity(sources("tls"), context(), metadata) == ANONYMOUS
    assert caller_identity((), broken_tls, metadata) == ANONYMOUS


# --------------------------------------------------------------------------- #
# The errors' statuses
# --------------------------------------------------------------------------- #


def _status_details(status: grpc.Status) -> tuple[status_pb2.Status, error_details_pb2.ErrorInfo]:
    [raw] = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    rich = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    rich.details[0].Unpack(info)
    return rich, info


def test_invalid_identity_is_unauthenticated_naming_the_source_not_the_value():
    try:
        caller_identity(sources("xfcc"), None, [(XFCC, 'URI="secret-looking-value')])
    except InvalidCallerIdentity as exc:
        status = to_status(exc)
    assert status.code == grpc.StatusCode.UNAUTHENTICATED
    rich, info = _status_details(status)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "CALLER_IDENTITY_MALFORMED",
        ERROR_DOMAIN,
        {"source": "xfcc"},
    )
    assert "secret-looking-value" not in rich.message and "xfcc" in rich.message


# --------------------------------------------------------------------------- #
# Properties: XFCC headers rendered from a model, garbage, unlisted sources
# --------------------------------------------------------------------------- #

KEYS = ("By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS", "uri")
SAFE = string.ascii_letters + string.digits + ":/.-_%@+~"
values = st.one_of(
    st.text(alphabet=SAFE, min_size=1, max_size=30),
    st.text(alphabet=SAFE + ' ",;=\\\t', max_size=30),
    st.text(max_size=12),  # any character at all
    st.sampled_from(["anonymous", " spiffe://x/a", "", "spiffe://cluster.local/ns/a/sa/b"]),
)
pairs = st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=5)
models = st.lists(pairs, min_size=1, max_size=4)


def _render_value(value: str, quote: bool) -> str:
    if value and not quote and all(c in SAFE for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def rendered(draw: st.DrawFn) -> tuple[list[list[tuple[str, str]]], str]:
    model = draw(models)
    space = st.sampled_from(["", "", " ", "\t "])
    elements = []
    for element in model:
        parts = [f"{key}={_render_value(value, draw(st.booleans()))}" for key, value in element]
        elements.append(";".join(draw(space) + part + draw(space) for part in parts))
    return model, ",".join(elements)


def _expected(model: list[list[tuple[str, str]]]) -> str | type[InvalidCallerIdentity] | None:
    """The rule, restated from docs/callers.md without the parser."""
    uris = [value for key, value in model[-1] if key.upper() == "URI"]
    if not uris:
        return None
    if len(uris) > 1:
        return InvalidCallerIdentity
    uri = uris[0]
    printable = all(" " <= c <= "~" for c in uri)
    if not uri or len(uri) > MAX_IDENTITY_CHARS or not printable or uri != uri.strip(" "):
        return InvalidCallerIdentity
    return InvalidCallerIdentity if uri == ANONYMOUS else uri


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(rendered())
def test_a_valid_header_parses_to_its_model_and_the_last_uri(case):
    model, header = case
    assert parse_xfcc(header) == model
    expected = _expected(model)
    if expected is InvalidCallerIdentity:
        with pytest.raises(InvalidCallerIdentity):
            xfcc_identity([header])
    else:
        assert xfcc_identity([header]) == expected
        identity = caller_identity(sources("xfcc"), None, [(XFCC, header)])
        assert identity == (ANONYMOUS if expected is None else expected)


GARBAGE_ALPHABET = 'URIBy=;,"\\ \t:/ab\x00é'


@settings(max_examples=250)
@given(st.one_of(st.text(alphabet=GARBAGE_ALPHABET, max_size=40), st.text(max_size=40)))
def test_garbage_never_crashes_and_never_invents_an_identity(header):
    try:
        identity = xfcc_identity([header])
    except InvalidCallerIdentity:
        return
    if identity is not None:
        # whatever came out stood after the header's last URI= (quoted or not)
        assert "URI=" in header.upper() and identity.isascii() and identity.isprintable()
        assert identity.replace("\\", "").replace('"', "") in header.replace("\\", "").replace(
            '"', ""
        )


@settings(max_examples=100)
@given(
    st.text(alphabet=GARBAGE_ALPHABET, max_size=40),
    st.sampled_from(["tls", "header:x-caller", "tls,header:x-caller"]),
)
def test_xfcc_is_never_believed_when_not_listed(header, listed):
    metadata = [(XFCC, header), (XFCC, "URI=spiffe://x/forged")]
    assert caller_identity(sources(listed), context(), metadata) == ANONYMOUS
