"""Tests for bridge.errors: the HTTP-status and error-code tables, the exception
hierarchy, `to_status` with its google.rpc details decoded from the trailing
metadata, and Retry-After parsing."""

from __future__ import annotations

import email.utils
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from bridge.errors import (
    ERROR_DOMAIN,
    MAX_MESSAGE_CHARS,
    MAX_RETRY_DELAY_SECONDS,
    BridgeError,
    CallerNotAllowed,
    InvalidCallerIdentity,
    InvalidRequest,
    MissingCredentials,
    ServiceKeyRejected,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReportedError,
    UpstreamTimeout,
    UpstreamUnavailable,
    grpc_code_for_error_code,
    grpc_code_for_http_status,
    numeric_error_code,
    parse_retry_after,
    to_status,
)

SC = grpc.StatusCode
DETAILS_KEY = "grpc-status-details-bin"
M = TypeVar("M", bound=Message)


def rich_status(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailing metadata of `status`."""
    values = [value for key, value in status.trailing_metadata if key == DETAILS_KEY]
    assert len(values) == 1
    return status_pb2.Status.FromString(values[0])


def details_of_type(status: grpc.Status, message_type: type[M]) -> list[M]:
    found: list[M] = []
    for detail in rich_status(status).details:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def error_info(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    [info] = details_of_type(status, error_details_pb2.ErrorInfo)
    return info


# --------------------------------------------------------------------------- #
# HTTP status -> gRPC code
# --------------------------------------------------------------------------- #

HTTP_TABLE = [
    (400, SC.INVALID_ARGUMENT),
    (401, SC.UNAUTHENTICATED),
    (402, SC.FAILED_PRECONDITION),
    (403, SC.PERMISSION_DENIED),
    (404, SC.NOT_FOUND),
    (408, SC.DEADLINE_EXCEEDED),
    (409, SC.ABORTED),
    (413, SC.INVALID_ARGUMENT),
    (422, SC.INVALID_ARGUMENT),
    (429, SC.RESOURCE_EXHAUSTED),
    (499, SC.CANCELLED),
    (500, SC.INTERNAL),
    (501, SC.UNIMPLEMENTED),
    (502, SC.UNAVAILABLE),
    (503, SC.UNAVAILABLE),
    (504, SC.DEADLINE_EXCEEDED),
    # Not in the table: other 4xx and 5xx fall back by class.
    (418, SC.FAILED_PRECONDITION),
    (451, SC.FAILED_PRECONDITION),
    (507, SC.UNAVAILABLE),
    (529, SC.UNAVAILABLE),
]


@pytest.mark.parametrize(("http_status", "code"), HTTP_TABLE)
def test_http_status_maps_to_grpc_code(http_status: int, code: grpc.StatusCode) -> None:
    assert grpc_code_for_http_status(http_status) is code


@pytest.mark.parametrize("http_status", [200, 204, 100, 301, 302, 304, 0, 600, 99999])
def test_non_error_http_status_maps_to_unavailable_never_unknown(http_status: int) -> None:
    # issue #12: UNKNOWN is in no row of the README's table; a 3xx or a 204 is no answer
    assert grpc_code_for_http_status(http_status) is SC.UNAVAILABLE


@pytest.mark.parametrize(("http_status", "code"), HTTP_TABLE)
def test_upstream_http_error_takes_its_code_from_the_table(
    http_status: int, code: grpc.StatusCode
) -> None:
    status = to_status(UpstreamHTTPError(http_status, "upstream said no"))

    assert status.code is code
    assert rich_status(status).code == code.value[0]


# --------------------------------------------------------------------------- #
# Upstream error codes (numbers or names) -> gRPC code
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("upstream_code", "code"),
    [
        ("server_error", SC.INTERNAL),
        ("rate_limit_exceeded", SC.RESOURCE_EXHAUSTED),
        ("invalid_request_error", SC.INVALID_ARGUMENT),
        ("context_length_exceeded", SC.INVALID_ARGUMENT),
        ("invalid_api_key", SC.UNAUTHENTICATED),
        ("insufficient_credits", SC.FAILED_PRECONDITION),
        ("content_filter", SC.PERMISSION_DENIED),
        ("model_not_found", SC.NOT_FOUND),
        ("gateway_timeout", SC.DEADLINE_EXCEEDED),
        ("overloaded_error", SC.UNAVAILABLE),
        ("not_implemented", SC.UNIMPLEMENTED),
        ("  Rate_Limit_Exceeded ", SC.RESOURCE_EXHAUSTED),  # case and spaces ignored
        ("something_new", SC.UNAVAILABLE),
        ("", SC.UNAVAILABLE),
        ("429", SC.RESOURCE_EXHAUSTED),
        (" 404 ", SC.NOT_FOUND),
        ("500", SC.INTERNAL),
        (429, SC.RESOURCE_EXHAUSTED),
        (429.0, SC.RESOURCE_EXHAUSTED),
        (401.0, SC.UNAUTHENTICATED),
        (503, SC.UNAVAILABLE),
        (418, SC.FAILED_PRECONDITION),
        (200, SC.UNAVAILABLE),  # a number that is no error status: UNKNOWN is never used
        (429.5, SC.UNAVAILABLE),
        (True, SC.UNAVAILABLE),
        (None, SC.UNAVAILABLE),
    ],
)
def test_error_code_maps_to_grpc_code(upstream_code: object, code: grpc.StatusCode) -> None:
    assert grpc_code_for_error_code(upstream_code) is code


@pytest.mark.parametrize(
    ("upstream_code", "number"),
    [
        (429, 429),
        (429.0, 429),
        ("429", 429),
        (" 502 ", 502),
        (429.5, None),
        ("4x9", None),
        ("-429", None),
        ("", None),
        (True, None),
        (False, None),
        (None, None),
        ([429], None),
    ],
)
def test_numeric_error_code(upstream_code: object, number: int | None) -> None:
    assert numeric_error_code(upstream_code) == number


def test_numeric_error_code_never_raises_on_exotic_digits() -> None:
    assert numeric_error_code("4²9") is None


@pytest.mark.parametrize(
    ("upstream_code", "code", "metadata"),
    [
        (429, SC.RESOURCE_EXHAUSTED, {"code": "429", "http_status": "429"}),
        (429.0, SC.RESOURCE_EXHAUSTED, {"code": "429", "http_status": "429"}),
        ("502", SC.UNAVAILABLE, {"code": "502", "http_status": "502"}),
        ("server_error", SC.INTERNAL, {"code": "server_error"}),
        (None, SC.UNAVAILABLE, {}),
    ],
)
def test_upstream_reported_error_code_and_metadata(
    upstream_code: int | str | None, code: grpc.StatusCode, metadata: dict[str, str]
) -> None:
    error = UpstreamReportedError(upstream_code, "Provider returned error")

    assert error.code is code
    assert error.metadata == metadata
    assert dict(error_info(to_status(error)).metadata) == metadata


# --------------------------------------------------------------------------- #
# The exception hierarchy
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (InvalidRequest([("model", "is required")]), SC.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (MissingCredentials("no key"), SC.UNAUTHENTICATED, "MISSING_CREDENTIALS"),
        (ServiceKeyRejected("key refused"), SC.INTERNAL, "SERVICE_KEY_REJECTED"),
        (UpstreamError("failed"), SC.UNAVAILABLE, "UPSTREAM_ERROR"),
        (UpstreamHTTPError(429, "slow down"), SC.RESOURCE_EXHAUSTED, "UPSTREAM_HTTP_ERROR"),
        (UpstreamReportedError("server_error", "m"), SC.INTERNAL, "UPSTREAM_REPORTED_ERROR"),
        (UpstreamUnavailable("refused"), SC.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (UpstreamTimeout("too slow"), SC.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT"),
        (UpstreamProtocolError("cut"), SC.UNAVAILABLE, "UPSTREAM_PROTOCOL_ERROR"),
        (
            UpstreamProtocolError("bad event", reason="UPSTREAM_MALFORMED_EVENT"),
            SC.UNAVAILABLE,
            "UPSTREAM_MALFORMED_EVENT",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BridgeError) else None,
)
def test_each_error_class_has_its_code_and_reason(
    error: BridgeError, code: grpc.StatusCode, reason: str
) -> None:
    status = to_status(error)

    assert status.code is code
    info = error_info(status)
    assert info.reason == reason
    assert info.domain == ERROR_DOMAIN


def test_protocol_error_reason_override_does_not_leak_to_the_class() -> None:
    UpstreamProtocolError("bad", reason="SOMETHING_ELSE")

    assert UpstreamProtocolError("cut").reason == "UPSTREAM_PROTOCOL_ERROR"


# --------------------------------------------------------------------------- #
# to_status: code, message, details
# --------------------------------------------------------------------------- #


def test_status_carries_code_message_and_matching_rich_status() -> None:
    status = to_status(MissingCredentials("send an authorization header"))

    assert status.code is SC.UNAUTHENTICATED
    assert status.details == "send an authorization header"
    rich = rich_status(status)
    assert rich.code == code_pb2.UNAUTHENTICATED
    assert rich.message == "send an authorization header"


def test_error_info_has_reason_domain_and_metadata_with_request_id_and_http_status() -> None:
    error = UpstreamHTTPError(
        402, "Insufficient credits", upstream_code="insufficient_credits", metadata={"p": "x"}
    )

    info = error_info(to_status(error, request_id="req-123"))

    assert info.reason == "UPSTREAM_HTTP_ERROR"
    assert info.domain == "bridge.myrouter.example"
    assert dict(info.metadata) == {
        "http_status": "402",
        "code": "insufficient_credits",
        "p": "x",
        "request_id": "req-123",
    }


def test_request_id_is_left_out_when_not_given() -> None:
    info = error_info(to_status(UpstreamHTTPError(500, "boom")))

    assert "request_id" not in info.metadata
    assert dict(info.metadata) == {"http_status": "500"}


def test_request_id_does_not_change_the_errors_own_metadata() -> None:
    error = UpstreamHTTPError(500, "boom")

    to_status(error, request_id="req-1")

    assert "request_id" not in error.metadata


@pytest.mark.parametrize(
    ("retry_after", "seconds", "nanos"),
    [(2.5, 2, 500_000_000), (30.0, 30, 0), (0.25, 0, 250_000_000), (0.0, 0, 0)],
)
def test_retry_info_carries_the_retry_after_delay(
    retry_after: float, seconds: int, nanos: int
) -> None:
    status = to_status(UpstreamHTTPError(429, "slow down", retry_after=retry_after))

    [retry] = details_of_type(status, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (seconds, nanos)


def test_no_retry_info_without_retry_after() -> None:
    status = to_status(UpstreamHTTPError(503, "down"))

    assert details_of_type(status, error_details_pb2.RetryInfo) == []
    assert len(rich_status(status).details) == 1


def test_invalid_request_carries_bad_request_field_violations() -> None:
    error = InvalidRequest([("model", "is required"), ("messages[0].role", "is required")])

    status = to_status(error, request_id="r-9")

    assert status.code is SC.INVALID_ARGUMENT
    [bad_request] = details_of_type(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("model", "is required"),
        ("messages[0].role", "is required"),
    ]
    assert error_info(status).metadata["request_id"] == "r-9"
    assert status.details == "invalid request: model: is required; messages[0].role: is required"


def test_error_info_comes_first_in_the_details() -> None:
    status = to_status(InvalidRequest([("model", "is required")]))

    first, second = rich_status(status).details
    assert first.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
    assert second.Is(error_details_pb2.BadRequest.DESCRIPTOR)
    assert isinstance(first, any_pb2.Any)


def test_unknown_exception_becomes_internal_without_its_text() -> None:
    secret_text = "password=hunter2 at /srv/secret/path.py line 12"

    status = to_status(KeyError(secret_text), request_id="req-7")

    assert status.code is SC.INTERNAL
    assert "hunter2" not in status.details
    assert "secret" not in status.details
    assert status.details == "internal error in the bridge; see its logs"
    raw = b"".join(value for _, value in status.trailing_metadata)
    assert b"hunter2" not in raw
    info = error_info(status)
    assert info.reason == "INTERNAL"
    assert dict(info.metadata) == {"request_id": "req-7"}


def test_base_exception_is_also_internal() -> None:
    status = to_status(KeyboardInterrupt("stop"))

    assert status.code is SC.INTERNAL
    assert "stop" not in status.details


def test_long_message_is_shortened_to_the_limit_with_an_ellipsis() -> None:
    message = "x" * 5000

    status = to_status(UpstreamUnavailable(message))

    assert len(status.details) == MAX_MESSAGE_CHARS
    assert status.details.endswith("…")
    assert status.details[:-1] == message[: MAX_MESSAGE_CHARS - 1]
    assert rich_status(status).message == status.details


@pytest.mark.parametrize("length", [0, 1, MAX_MESSAGE_CHARS])
def test_message_at_or_under_the_limit_is_kept_whole(length: int) -> None:
    message = "y" * length

    assert to_status(UpstreamUnavailable(message)).details == message


def test_message_one_over_the_limit_is_shortened() -> None:
    status = to_status(UpstreamUnavailable("z" * (MAX_MESSAGE_CHARS + 1)))

    assert status.details == "z" * (MAX_MESSAGE_CHARS - 1) + "…"


# --------------------------------------------------------------------------- #
# Retry-After
# --------------------------------------------------------------------------- #

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5), ("-3", 0.0)],
)
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    value = email.utils.formatdate(NOW + 90, usegmt=True)

    assert parse_retry_after(value, now=NOW) == 90.0


def test_retry_after_literal_http_date() -> None:
    # Tue, 14 Nov 2023 22:15:00 GMT is 100 s after NOW.
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:00 GMT", now=NOW) == 100.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    value = email.utils.formatdate(NOW - 3600, usegmt=True)

    assert parse_retry_after(value, now=NOW) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "soon", "Tomorrow at noon", "12 parsecs", "nan", "inf", "-inf"]
)
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    "value", ["1e300", str(2**63), "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_retry_after_beyond_the_cap_is_the_cap(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == MAX_RETRY_DELAY_SECONDS


@pytest.mark.parametrize("seconds", [1e300, float(2**63), 1e10, float("inf"), float("nan"), -5.0])
def test_retry_info_never_overflows_whatever_the_error_holds(seconds: float) -> None:
    status = to_status(UpstreamHTTPError(429, "slow down", retry_after=seconds))
    assert status.code is SC.RESOURCE_EXHAUSTED
    retry = details_of_type(status, error_details_pb2.RetryInfo)
    for info in retry:
        assert 0 <= info.retry_delay.seconds <= MAX_RETRY_DELAY_SECONDS


def test_to_status_never_raises_even_when_building_the_details_fails() -> None:
    class Broken(UpstreamHTTPError):
        def details(self) -> list[Any]:
            raise ValueError("a bug while building the details")

    status = to_status(Broken(429, "slow down"), request_id="r1")
    assert status.code is SC.INTERNAL
    assert error_info(status).reason == "INTERNAL"
    assert error_info(status).metadata["request_id"] == "r1"


# --------------------------------------------------------------------------- #
# Callers (bridge/callers.py, bridge/policy.py)
# --------------------------------------------------------------------------- #


def test_a_malformed_caller_identity_is_unauthenticated_naming_its_source():
    status = to_status(InvalidCallerIdentity("xfcc", "the quoted value is not terminated"))
    assert status.code == SC.UNAUTHENTICATED
    info = error_info(status)
    assert (info.reason, dict(info.metadata)) == ("CALLER_IDENTITY_MALFORMED", {"source": "xfcc"})
    assert "from xfcc is malformed: the quoted value" in rich_status(status).message


@pytest.mark.parametrize("reason", sorted(CallerNotAllowed.REASONS))
def test_caller_not_allowed_is_permission_denied_with_its_reason(reason):
    status = to_status(CallerNotAllowed("no", reason=reason, metadata={"model": "m"}))
    assert status.code == SC.PERMISSION_DENIED
    info = error_info(status)
    assert info.reason == reason and info.metadata["model"] == "m"


def test_caller_not_allowed_refuses_an_unknown_reason():
    with pytest.raises(ValueError, match="unknown reason"):
        CallerNotAllowed("no", reason="NOPE")
