"""Request bytes that are no valid message, or too many of them: the decoder and the
logging of grpc's own complaint."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import RequestTooLarge, UndecodableRequest, to_status
from bridge.logs import GrpcMetadataDecoding
from bridge.service import TooLarge, Undecodable, request_decoder
from myrouter.chat.v1 import chat_pb2

LIMIT = 1024


def test_valid_bytes_decode_to_the_message():
    request = chat_pb2.ChatCompletionRequest(model="m")
    decoded = request_decoder(chat_pb2.ChatCompletionRequest, max_bytes=LIMIT)(
        request.SerializeToString()
    )
    assert decoded == request


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x03\x0a\x01"])
def test_undecodable_bytes_give_the_stand_in_not_an_exception(data):
    decoded = request_decoder(chat_pb2.ChatCompletionRequest, max_bytes=LIMIT)(data)
    assert isinstance(decoded, Undecodable)
    assert decoded.message_type == "myrouter.chat.v1.ChatCompletionRequest"


def test_the_refusal_is_invalid_argument_at_warning_without_the_bytes():
    error = UndecodableRequest("myrouter.chat.v1.ChatCompletionRequest")
    status = to_status(error, request_id="r1")
    assert status.code.name == "INVALID_ARGUMENT"
    assert error.reason == "UNDECODABLE_REQUEST"
    assert error.log_level == logging.WARNING


def _request_of_size(size: int) -> bytes:
    request = chat_pb2.ChatCompletionRequest(model="m")
    request.model = "m" * (size - request.ByteSize() + 1)
    while request.ByteSize() > size:
        request.model = request.model[:-1]
    data = request.SerializeToString()
    assert len(data) == size
    return data


def test_a_request_at_the_limit_decodes():
    decoded = request_decoder(chat_pb2.ChatCompletionRequest, max_bytes=LIMIT)(
        _request_of_size(LIMIT)
    )
    assert isinstance(decoded, chat_pb2.ChatCompletionRequest)


@pytest.mark.parametrize("data", [_request_of_size(LIMIT + 1), b"\xff" * (LIMIT + 1)])
def test_a_request_over_the_limit_is_too_large_whether_or_not_it_would_decode(data):
    decoded = request_decoder(chat_pb2.ChatCompletionRequest, max_bytes=LIMIT)(data)
    assert isinstance(decoded, TooLarge)
    assert (decoded.size, decoded.limit) == (LIMIT + 1, LIMIT)
    assert decoded.message_type == "myrouter.chat.v1.ChatCompletionRequest"
    assert isinstance(decoded.refusal(), RequestTooLarge)


def test_an_undecodable_request_is_refused_as_undecodable():
    assert isinstance(Undecodable("t").refusal(), UndecodableRequest)


def test_the_too_large_refusal_is_resource_exhausted_naming_the_setting_at_warning():
    error = RequestTooLarge(2000, 1024)
    status = to_status(error, request_id="r1")
    assert status.code.name == "RESOURCE_EXHAUSTED"
    assert error.reason == "REQUEST_TOO_LARGE"
    assert error.log_level == logging.WARNING
    assert "2000 bytes" in error.message and "1024" in error.message
    assert "--max-request-bytes" in error.message and "BRIDGE_MAX_REQUEST_BYTES" in error.message
    assert error.metadata == {"size_bytes": "2000", "limit_bytes": "1024"}


def test_grpcs_undecodable_metadata_error_becomes_one_warning_without_the_value():
    failure = UnicodeDecodeError("utf8", b"\xff", 0, 1, "invalid start byte")
    record = logging.LogRecord(
        "grpc._cython.cygrpc",
        logging.ERROR,
        "x",
        1,
        "Invalid encoding on %s",
        (b"Bearer \xff",),
        (UnicodeDecodeError, failure, None),
    )
    assert GrpcMetadataDecoding().filter(record)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "\\xff" not in record.getMessage() and "Bearer" not in record.getMessage()


def test_other_grpc_records_pass_untouched():
    record = logging.LogRecord(
        "grpc._cython.cygrpc", logging.ERROR, "x", 1, "other %s", ("a",), None
    )
    assert GrpcMetadataDecoding().filter(record)
    assert record.levelno == logging.ERROR and record.getMessage() == "other a"
