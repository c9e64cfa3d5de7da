"""myrouter_client's pure parts: the request builder, the error classes, the retry rule."""

from __future__ import annotations

import json
import re
import time

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from myrouter.chat.v1 import chat_pb2
from myrouter_client import (
    MAX_RECEIVE_BYTES,
    MAX_SEND_BYTES,
    AuthenticationError,
    BadRequestError,
    ChatCallError,
    DeadlineError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    Retries,
    UpstreamError,
    build_request,
    channel_options,
    chat_request,
)
from myrouter_client._policy import CallDefaults, Deadline, lacks_the_method, retry_delay

pytestmark = pytest.mark.timeout(30)


def test_chat_request_builds_system_then_user_with_options():
    request = chat_request(
        "m", "hi", system="be brief", max_tokens=5, temperature=0, extra={"seed": 7}
    )
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    assert request.max_tokens == 5
    assert request.HasField("temperature") and request.temperature == 0
    assert request.extra["seed"] == 7


def test_build_request_takes_pairs_dicts_and_messages_in_the_apis_json_shape():
    tool_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    request = build_request(
        "m",
        [
            ("system", "be brief"),
            {"role": "user", "content": [{"type": "text", "text": "hi"}], "cache": True},
            {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            chat_pb2.ChatMessage(role="user", content="and?"),
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        response_format={"type": "json_object"},
        top_p=0.5,
        user="u1",
    )
    system, user, assistant, tool, last = request.messages
    assert (system.role, system.content) == ("system", "be brief")
    assert user.content_parts[0].text == "hi" and not user.HasField("content")
    assert user.extra["cache"] is True  # not modelled: sent as it is
    assert assistant.tool_calls[0].function.name == "f" and not assistant.HasField("content")
    assert (tool.tool_call_id, tool.content) == ("c1", "42")
    assert last.content == "and?"
    assert request.tools[0].function.parameters["type"] == "object"
    assert request.tool_choice.tool.function.name == "f"
    assert request.response_format.type == "json_object"
    assert request.top_p == 0.5 and request.user == "u1"
    assert not request.HasField("max_tokens") and not request.HasField("temperature")
    assert build_request("m", [], tool_choice="auto").tool_choice.mode == "auto"


@pytest.mark.parametrize(
    ("messages", "names"),
    [
        ([("user",)], "messages[0]"),
        ([("user", "a"), ("user", 3)], "messages[1]"),
        ([{"role": "user", "tool_calls": [{"function": {"nope": 1}}]}], "messages[0]"),
        (["hi"], "messages[0]"),
    ],
)
def test_build_request_names_what_does_not_fit(messages, names):
    with pytest.raises(ValueError, match="^" + re.escape(names)):
        build_request("m", messages)


def _trailer(*details: Message, code: int = 8) -> tuple[tuple[str, bytes | str], ...]:
    packed = []
    for detail in details:
        packed.append(any_pb2.Any())
        packed[-1].Pack(detail)
    status = status_pb2.Status(code=code, message="m", details=packed)
    return (("grpc-status-details-bin", status.SerializeToString()), ("x-request-id", "rq-t"))


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, BadRequestError),
        (grpc.StatusCode.OUT_OF_RANGE, BadRequestError),
        (grpc.StatusCode.UNAUTHENTICATED, AuthenticationError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, PreconditionFailedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineError),
        (grpc.StatusCode.UNAVAILABLE, UpstreamError),
        (grpc.StatusCode.INTERNAL, UpstreamError),
        (grpc.StatusCode.UNKNOWN, UpstreamError),
        (grpc.StatusCode.DATA_LOSS, UpstreamError),
        (grpc.StatusCode.CANCELLED, ChatCallError),
        (grpc.StatusCode.ABORTED, ChatCallError),
        (grpc.StatusCode.UNIMPLEMENTED, ChatCallError),
    ],
)
def test_each_code_has_its_class_under_the_one_base(code, kind):
    error = ChatCallError.from_parts(code, "m", ())
    assert type(error) is kind
    assert isinstance(error, ChatCallError) and error.code is code


def test_the_details_trailer_decodes_with_google_rpc_alone():
    info = error_details_pb2.ErrorInfo(reason="R", domain="d", metadata={"http_status": "429"})
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)
    )
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="f", description="d")]
    )
    trailer = _trailer(info, retry, bad)
    error = ChatCallError.from_parts(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", trailer)
    assert isinstance(error, RateLimitError)
    assert (error.reason, error.metadata, error.retry_delay) == ("R", {"http_status": "429"}, 2.5)
    assert error.field_violations == [("f", "d")]
    assert error.request_id == "rq-t"
    assert str(error) == "RESOURCE_EXHAUSTED: slow down"


def test_the_request_id_falls_back_to_the_initial_metadata_and_bad_details_are_dropped():
    trailer = (("grpc-status-details-bin", b"\xff\xff not a status"),)
    initial = (("x-request-id", "rq-i"),)
    error = ChatCallError.from_parts(grpc.StatusCode.UNAVAILABLE, "m", trailer, initial)
    assert (error.status, error.reason, error.request_id) == (None, None, "rq-i")


@pytest.mark.parametrize(
    "bad",
    [
        {"attempts": 1},
        {"attempts": 6},  # gRPC would clamp it to 5 without a word
        {"initial_backoff": 0},
        {"max_backoff": float("inf")},
        {"max_retry_delay": -1},
        {"backoff_multiplier": 0.5},
    ],
)
def test_a_retry_policy_that_cannot_hold_is_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Retries(**bad)


def test_the_retry_policy_becomes_grpcs_service_config_for_unavailable_only():
    config = json.loads(Retries(attempts=4, initial_backoff=0.25).service_config())
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "myrouter.chat.v1.ChatService"}]
    assert method["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.25s",
        "maxBackoff": "10.0s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_channel_options_match_the_bridges_limits_and_carry_retries_only_when_asked():
    plain = dict(channel_options())
    assert plain == {
        "grpc.max_send_message_length": MAX_SEND_BYTES,
        "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
    }
    assert MAX_SEND_BYTES == 8 * 1024 * 1024  # the bridge's default --max-request-bytes
    with_retries = dict(channel_options(retries=Retries()))
    assert with_retries["grpc.service_config"] == Retries().service_config()
    overridden = channel_options(overrides=[("grpc.max_receive_message_length", 1), ("x", 2)])
    assert overridden == [
        ("grpc.max_receive_message_length", 1),
        ("x", 2),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
    ]


def _rate_limited(seconds: float | None) -> ChatCallError:
    details = () if seconds is None else (error_details_pb2.RetryInfo(retry_delay={"seconds": 1}),)
    error = ChatCallError.from_parts(grpc.StatusCode.RESOURCE_EXHAUSTED, "m", _trailer(*details))
    assert error.retry_delay == (None if seconds is None else 1.0)
    return error


def test_retry_delay_is_the_apis_ask_within_the_policy_and_the_deadline():
    limited, policy, forever = _rate_limited(1), Retries(attempts=3), Deadline(None)
    assert retry_delay(policy, limited, 1, forever) == 1.0
    assert retry_delay(policy, limited, 2, forever) == 1.0
    assert retry_delay(policy, limited, 3, forever) is None  # attempts spent
    assert retry_delay(None, limited, 1, forever) is None  # retries are off by default
    assert retry_delay(Retries(max_retry_delay=0.5), limited, 1, forever) is None
    assert retry_delay(policy, limited, 1, Deadline.after(0.5)) is None  # would end too late
    assert retry_delay(policy, _rate_limited(None), 1, forever) is None  # no RetryInfo
    unavailable = ChatCallError.from_parts(grpc.StatusCode.UNAVAILABLE, "m", ())
    assert retry_delay(policy, unavailable, 1, forever) is None  # gRPC's policy retries it


def test_a_call_takes_the_clients_defaults_unless_told_otherwise_and_never_shows_the_token():
    defaults = CallDefaults("s3cret-token", 30.0, Retries(attempts=2))
    assert "s3cret-token" not in repr(defaults)
    before = time.monotonic()
    call = defaults.call("req-1")
    ends_at = call.deadline.ends_at
    assert ends_at is not None and before + 30 <= ends_at <= time.monotonic() + 30
    assert call.metadata == (("authorization", "Bearer s3cret-token"), ("x-request-id", "req-1"))
    assert call.retries == Retries(attempts=2)
    assert defaults.call(deadline=0.0).deadline.left() == 0.0
    assert CallDefaults(None).call().deadline == Deadline(None)
    assert CallDefaults(None).call().metadata == ()
    assert call.retry_delay(_rate_limited(1), 1) == 1.0


def test_only_grpcs_own_unimplemented_means_the_method_is_missing():
    assert lacks_the_method(ChatCallError.from_parts(grpc.StatusCode.UNIMPLEMENTED, "m", ()))
    info = error_details_pb2.ErrorInfo(reason="UPSTREAM_HTTP_ERROR")
    answered = ChatCallError.from_parts(grpc.StatusCode.UNIMPLEMENTED, "m", _trailer(info))
    assert not lacks_the_method(answered)
