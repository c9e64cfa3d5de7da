"""Every way an upstream exchange fails, as the bridge's exception: decided here, once.

* A transport failure (httpx's exception, which every transport raises: the
  aiohttp one translates its own in `bridge.transport`) becomes a bridge error
  by one table, `TRANSPORT_FAILURES`, whose columns are the exchange's phases:
  the same ``ReadTimeout`` means "no answer in time" while sending and "silent
  for N s" mid-stream. The most specific class wins, whatever the order, as in
  httpx's own ``map_httpcore_exceptions``.
* The call's time budget running out is `budget_exhausted`.
* An answer that is an error (a status other than 200, or an ``error`` object
  in a 200 answer) becomes `UpstreamHTTPError`, `ServiceKeyRejected` or
  `UpstreamReportedError` by `http_error` and `reported_error`, from the error
  object normalised once (`error_object`).

Every text that quotes the upstream or a transport failure is redacted of the
call's credentials here. The status each exception gets is `errors.to_status`'s.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from .config import BridgeConfig
from .errors import (
    BridgeError,
    ServiceKeyRejected,
    UpstreamHTTPError,
    UpstreamReportedError,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
    parse_retry_after,
)
from .redaction import redact
from .upstream_call import UpstreamCall

__all__ = [
    "READING_BODY",
    "READING_STREAM",
    "SENDING",
    "TRANSPORT_FAILURES",
    "Phase",
    "TransportFailures",
    "body_error",
    "budget_exhausted",
    "error_object",
    "http_error",
    "reported_error",
    "transport_failure",
]

log = logging.getLogger("bridge.failures")


class Phase(enum.Enum):
    """Where in the exchange a transport failure happened, which decides what it means."""

    SENDING = "sending the request and waiting for the response's head"
    READING_BODY = "reading a whole body (a unary answer, a model list, an error body)"
    READING_STREAM = "reading a stream's events (the read timeout is the idle timeout)"


Rule = tuple[type[BridgeError], str]
"""(bridge exception class, message template). Templates may name ``{kind}`` (the httpx
class's name), ``{detail}`` (its text, credentials redacted) and ``{config}``."""

TRANSPORT_FAILURES: Mapping[type[httpx.TransportError], Mapping[Phase, Rule]] = {
    httpx.ConnectTimeout: {
        Phase.SENDING: (
            UpstreamUnreachable,
            "could not connect to the upstream within {config.connect_timeout:g} s",
        ),
    },
    httpx.ConnectError: {
        Phase.SENDING: (UpstreamUnreachable, "could not reach the upstream ({kind}: {detail})"),
    },
    httpx.TimeoutException: {
        Phase.SENDING: (UpstreamTimeout, "the upstream did not answer in time"),
        Phase.READING_BODY: (UpstreamTimeout, "the upstream did not finish its answer in time"),
        Phase.READING_STREAM: (
            UpstreamTimeout,
            "the upstream stream was silent for {config.stream_idle_timeout:g} s",
        ),
    },
    httpx.TransportError: {
        Phase.SENDING: (UpstreamUnavailable, "could not reach the upstream ({kind}: {detail})"),
        Phase.READING_BODY: (
            UpstreamUnavailable,
            "the upstream connection broke while reading its answer ({kind})",
        ),
        Phase.READING_STREAM: (
            UpstreamUnavailable,
            "the upstream connection broke mid-stream ({kind})",
        ),
    },
}
"""httpx exception class -> its rule in each phase. ``httpx.TransportError`` has a rule in
every phase, so every failure finds one."""

FailureRules = Mapping[type[httpx.TransportError], Rule]
"""One phase's column of `TRANSPORT_FAILURES`."""


def _column(phase: Phase) -> FailureRules:
    return {cls: rules[phase] for cls, rules in TRANSPORT_FAILURES.items() if phase in rules}


SENDING: FailureRules = _column(Phase.SENDING)
READING_BODY: FailureRules = _column(Phase.READING_BODY)
READING_STREAM: FailureRules = _column(Phase.READING_STREAM)


def transport_failure(
    exc: httpx.TransportError,
    rules: FailureRules,
    config: BridgeConfig,
    call: UpstreamCall | None = None,
) -> BridgeError:
    """The bridge's exception for an httpx transport failure, by one phase's rules.

    The exception's MRO is walked up to the first class `rules` names, so the
    most specific class wins whatever the order. `call`, when given, is whose
    credentials to redact from the exception's text.
    """
    for cls in type(exc).__mro__:
        rule = rules.get(cls)
        if rule is not None:
            error, template = rule
            detail = str(exc) if call is None else redact(str(exc), call.secrets())
            return error(template.format(kind=type(exc).__name__, detail=detail, config=config))
    raise AssertionError(f"no rule for httpx.TransportError in {rules}")  # pragma: no cover


class TransportFailures:
    """Turns the httpx transport exception raised inside into the bridge's (`transport_failure`).

    Anything else passes untouched. Slotted, as `upstream.CallDeadline` says why.
    """

    __slots__ = ("_call", "_config", "_rules")

    def __init__(
        self, rules: FailureRules, config: BridgeConfig, call: UpstreamCall | None = None
    ) -> None:
        self._rules = rules
        self._config = config
        self._call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, httpx.TransportError):
            raise transport_failure(exc, self._rules, self._config, self._call) from None


def budget_exhausted(call: UpstreamCall) -> UpstreamTimeout:
    """The exception for an exchange that outlived the call's time budget."""
    return UpstreamTimeout(
        f"the upstream did not finish within the call's time budget ({call.timeout:.3g} s)"
    )


def error_object(error: object) -> dict[str, Any]:
    """An answer's ``error`` member as an object: a string, or any other value, is its message."""
    return error if type(error) is dict else {"message": str(error)}


def body_error(body: bytes) -> dict[str, Any]:
    """The normalised ``error`` object of an error answer's body; {} when it has none."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if type(parsed) is dict else None
    return {} if error is None else error_object(error)


def http_error(response: httpx.Response, body: bytes, call: UpstreamCall) -> BridgeError:
    """The exception for an answer whose status is not 200, from its (bounded) body."""
    status = response.status_code
    error = body_error(body)
    message = _message_of(error, body) or f"the upstream answered HTTP {status}"
    if status == 404 and not error:
        message = _wrong_path_message(response.request)
    message = redact(message, call.secrets())
    if status in (401, 403) and call.using_service_key:
        return ServiceKeyRejected(
            f"the upstream refused the bridge's service key (HTTP {status}); "
            "the operator must check MYROUTER_API_KEY or --api-key-file",
            metadata={"http_status": str(status)},
        )
    return UpstreamHTTPError(
        status,
        message,
        upstream_code=error.get("code"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        metadata=_error_metadata(error, call),
    )


def _wrong_path_message(request: httpx.Request) -> str:
    """A 404 that is no error object of the API: the URL is wrong, not the model. Logged too,
    since only the operator (its --upstream-url, base path included) can put it right."""
    message = (
        f"the upstream answered HTTP 404, not an API error, to {request.method} {request.url}: "
        "a wrong base path? check --upstream-url (MYROUTER_BASE_URL)"
    )
    log.warning("%s", message)
    return message


def reported_error(
    error: Mapping[str, Any], event: Mapping[str, Any] | None, call: UpstreamCall
) -> UpstreamReportedError:
    """The exception for a normalised `error` object that the upstream put in a 200 answer;
    `event` is the answer or stream event that carried it, for the caller and the metrics."""
    message = _message_of(error, b"") or "the upstream reported an error"
    code = error.get("code")
    return UpstreamReportedError(
        code if isinstance(code, (int, str)) and not isinstance(code, bool) else None,
        redact(message, call.secrets()),
        metadata=_error_metadata(error, call),
        event=event,
    )


def _message_of(error: Mapping[str, Any], body: bytes) -> str:
    message = error.get("message")
    if isinstance(message, str) and message:
        return message
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300] if text else ""


def _error_metadata(error: Mapping[str, Any], call: UpstreamCall) -> dict[str, str]:
    """ErrorInfo metadata (strings only) from the upstream's error object."""
    out: dict[str, str] = {}
    metadata = error.get("metadata")
    if isinstance(metadata, dict) and metadata:
        text = orjson.dumps(metadata).decode()
        out["upstream_metadata"] = redact(text[:2000], call.secrets())
        provider = metadata.get("provider_name")
        if isinstance(provider, str):
            out["provider_name"] = provider
    error_type = error.get("type")
    if isinstance(error_type, str):
        out["type"] = error_type
    return out
