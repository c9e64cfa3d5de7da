"""Who is calling: the caller's identity, decided once per call from the sources the operator lists.

``--caller-identity`` (``BRIDGE_CALLER_IDENTITY``) is a comma list of sources, in
order; the default is ``tls``:

* ``tls``: the client certificate of a TLS connection the bridge terminates
  (grpc's auth context): its URI SAN (``spiffe://cluster.local/ns/search/sa/ranker``),
  else its first DNS SAN, else its subject CN.
* ``xfcc``: the ``x-forwarded-client-cert`` header an Envoy or Istio sidecar
  adds: the ``URI=`` of its last element, the one the nearest proxy added.
* ``header:NAME``: a header a trusted component sets (Linkerd's ``l5d-client-id``,
  an ext_authz filter's header): its value.

The trust rule: a source is believed only when listed, because listing it is
the operator saying that nothing reaches the bridge except through what sets
it. A source that is not listed is never read. Every listed source is read and
checked on every call, and any malformed one refuses the call
(`InvalidCallerIdentity`, UNAUTHENTICATED) before anything else happens, even
when an earlier source already gave an identity: a broken mesh header is never
guessed at nor passed over. Of the sources that give an identity, the first
listed wins; a listed source whose header is absent (or, for ``tls``, a
connection without a client certificate) gives none. A call with no identity
is the caller `ANONYMOUS`.

An identity is 1 to `MAX_IDENTITY_CHARS` printable ASCII characters, without
spaces at either end, and never ``anonymous`` itself (that name is the caller
without an identity). Several candidates where one is expected (two URI SANs,
two ``URI=`` in the chosen XFCC element, an identity header sent twice) are a
conflict, refused like malformed input.

Pure: no I/O; the service hands over the auth context and the metadata.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import InvalidCallerIdentity
from .propagation import RESERVED_HEADERS, TRACE_HEADERS, XFCC_HEADER, check_header_name

__all__ = [
    "ANONYMOUS",
    "DEFAULT_SOURCES",
    "MAX_IDENTITY_CHARS",
    "IdentitySource",
    "caller_identity",
    "parse_identity_sources",
    "parse_xfcc",
    "tls_identity",
    "xfcc_identity",
]

ANONYMOUS = "anonymous"
"""The caller of a call that no listed source names."""

MAX_IDENTITY_CHARS = 2048
"""The longest identity accepted: SPIFFE's limit on an ID (a DNS name or CN is shorter)."""

_KINDS = ("tls", "xfcc", "header")


@dataclasses.dataclass(frozen=True, slots=True)
class IdentitySource:
    """One source of the caller's identity, as listed in ``--caller-identity``."""

    kind: str
    """``tls``, ``xfcc`` or ``header``."""
    header: str | None = None
    """The metadata key read: ``x-forwarded-client-cert`` for xfcc, NAME for header:NAME."""

    def __str__(self) -> str:
        return f"header:{self.header}" if self.kind == "header" else self.kind


DEFAULT_SOURCES: tuple[IdentitySource, ...] = (IdentitySource("tls"),)


def parse_identity_sources(text: str) -> tuple[IdentitySource, ...]:
    """The sources of a ``--caller-identity`` text, in order (ValueError saying why if bad)."""
    sources: list[IdentitySource] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError("an empty identity source (a stray comma?)")
        kind, colon, name = item.partition(":")
        kind = kind.strip().lower()
        if kind not in _KINDS or bool(colon) != (kind == "header"):
            raise ValueError(
                f"unknown identity source {item!r} (expected tls, xfcc or header:NAME)"
            )
        if kind == "header":
            name = name.strip().lower()
            _check_identity_header(name)
            source = IdentitySource("header", name)
        else:
            source = IdentitySource(kind, XFCC_HEADER if kind == "xfcc" else None)
        if source in sources:
            raise ValueError(f"identity source {str(source)!r} is listed twice")
        sources.append(source)
    return tuple(sources)


def _check_identity_header(name: str) -> None:
    if not name:
        raise ValueError("header:NAME needs the header's name")
    if name == XFCC_HEADER:
        raise ValueError(f"header:{name}: list the source xfcc, which parses that header")
    if name in RESERVED_HEADERS:
        raise ValueError(
            f"header:{name}: a credential or a header of the HTTP exchange never names the caller"
        )
    if name in TRACE_HEADERS:
        raise ValueError(
            f"header:{name}: a trace header, forwarded upstream, cannot name the caller"
        )
    problem = check_header_name(name)
    if problem is not None:
        raise ValueError(f"header:{name}: {problem}")


def caller_identity(
    sources: Sequence[IdentitySource],
    auth_context: Mapping[str, Sequence[bytes]] | None,
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> str:
    """The caller's identity from the listed `sources`, or `ANONYMOUS`.

    Raises InvalidCallerIdentity when a listed source is malformed (see the module).
    """
    wanted = {source.header for source in sources if source.header is not None}
    values: dict[str, list[str | bytes]] = {}
    if wanted:
        for key, value in metadata or ():
            if key in wanted:
                values.setdefault(key, []).append(value)
    found: str | None = None
    for source in sources:
        if source.kind == "tls":
            identity = tls_identity(auth_context)
        elif source.kind == "xfcc":
            identity = xfcc_identity(_texts(source, values.get(XFCC_HEADER, [])))
        else:
            identity = _header_identity(source, values.get(source.header or "", []))
        if found is None:
            found = identity
    return ANONYMOUS if found is None else found


def _texts(source: IdentitySource, values: Sequence[str | bytes]) -> list[str]:
    if any(not isinstance(value, str) for value in values):
        raise InvalidCallerIdentity(str(source), "binary metadata")
    return [value for value in values if isinstance(value, str)]


def _header_identity(source: IdentitySource, values: Sequence[str | bytes]) -> str | None:
    texts = _texts(source, values)
    if not texts:
        return None
    if len(texts) > 1:
        raise InvalidCallerIdentity(str(source), f"the header is sent {len(texts)} times")
    return _checked(str(source), texts[0])


def tls_identity(auth_context: Mapping[str, Sequence[bytes]] | None) -> str | None:
    """The identity in a client certificate (grpc's auth context), or None without one.

    grpc reports each SAN type under its own key (``peer_uri``, ``peer_dns``, in the
    certificate's order) and the subject's CN under ``x509_common_name``.
    """
    if not auth_context:
        return None
    for key in ("peer_uri", "peer_dns", "x509_common_name"):
        values = auth_context.get(key) or ()
        if not values:
            continue
        if key != "peer_dns" and len(values) > 1:
            what = "URI SANs" if key == "peer_uri" else "subject CNs"
            raise InvalidCallerIdentity("tls", f"the client certificate has {len(values)} {what}")
        try:
            text = bytes(values[0]).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidCallerIdentity("tls", "a non-ASCII identity") from None
        return _checked("tls", text)
    return None


def xfcc_identity(values: Sequence[str]) -> str | None:
    """The ``URI=`` of the last element of the XFCC header's `values`, or None without one.

    Repeated header lines are one list, joined with commas as HTTP joins them.
    """
    if not values:
        return None
    last = parse_xfcc(",".join(values))[-1]
    uris = [value for key, value in last if key.lower() == "uri"]
    if not uris:
        return None
    if len(uris) > 1:
        raise InvalidCallerIdentity("xfcc", f"the last element has {len(uris)} URI= pairs")
    return _checked("xfcc", uris[0])


_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_BARE = re.compile(r'[^",;=\\\s]*')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SPACE = re.compile(r"[ \t]*")


def parse_xfcc(header: str) -> list[list[tuple[str, str]]]:
    """Envoy's ``x-forwarded-client-cert``: elements, each a list of (key, value) pairs.

    Elements are separated by ``,``, pairs by ``;``, spaces and tabs around them
    are allowed; a value is bare (no ``" , ; = \\`` nor white space) or
    double-quoted, where a backslash escapes the next character (``\\"``).
    Anything else, an empty header or element included, raises
    InvalidCallerIdentity naming the position: the header is the mesh's, and a
    broken one means the mesh is not what the operator said it is.
    """
    elements: list[list[tuple[str, str]]] = []
    element: list[tuple[str, str]] = []
    pos, end = 0, len(header)
    while True:
        pos = _skip(header, pos)
        key = _KEY.match(header, pos)
        if key is None:
            raise _malformed(f"a key is expected at character {pos}")
        pos = key.end()
        if not header.startswith("=", pos):
            raise _malformed(f"'=' is expected after the key at character {key.start()}")
        pos += 1
        if header.startswith('"', pos):
            quoted = _QUOTED.match(header, pos)
            if quoted is None:
                raise _malformed(f"the quoted value at character {pos} is not terminated")
            value = quoted.group(1)
            if "\\" in value:
                value = _ESCAPE.sub(r"\1", value)
            pos = quoted.end()
        else:
            bare = _BARE.match(header, pos)
            assert bare is not None  # it matches the empty string
            value, pos = bare.group(), bare.end()
        element.append((key.group(), value))
        pos = _skip(header, pos)
        if pos == end:
            elements.append(element)
            return elements
        separator = header[pos]
        if separator == ",":
            elements.append(element)
            element = []
        elif separator != ";":
            raise _malformed(f"unexpected {_shown(separator)} at character {pos}")
        pos += 1


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # it matches the empty string
    return match.end()


def _shown(char: str) -> str:
    return repr(char) if " " < char <= "~" else f"character U+{ord(char):04X}"


def _malformed(why: str) -> InvalidCallerIdentity:
    return InvalidCallerIdentity("xfcc", why)


def _checked(source: str, identity: str) -> str:
    """`identity` if it is acceptable (see the module), else InvalidCallerIdentity."""
    if not identity:
        raise InvalidCallerIdentity(source, "an empty identity")
    if len(identity) > MAX_IDENTITY_CHARS:
        raise InvalidCallerIdentity(
            source, f"an identity of {len(identity)} characters (at most {MAX_IDENTITY_CHARS})"
        )
    if not (identity.isascii() and identity.isprintable()):
        raise InvalidCallerIdentity(source, "an identity with non-ASCII or control characters")
    if identity != identity.strip(" "):
        raise InvalidCallerIdentity(source, "an identity with spaces at an end")
    if identity == ANONYMOUS:
        raise InvalidCallerIdentity(source, f"{ANONYMOUS!r} names the caller without an identity")
    return identity
