"""Request bytes that are no valid message: the decoder and the logging of grpc's own complaint."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import UndecodableRequest, to_status
from bridge.logs import GrpcMetadataDecoding
from bridge.service import Undecodable, request_decoder
from myrouter.chat.v1 import chat_pb2


def test_valid_bytes_decode_to_the_message():
    request = chat_pb2.ChatCompletionRequest(model="m")
    decoded = request_decoder(chat_pb2.ChatCompletionRequest)(request.SerializeToString())
    assert decoded == request


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x03\x0a\x01"])
def test_undecodable_bytes_give_the_stand_in_not_an_exception(data):
    decoded = request_decoder(chat_pb2.ChatCompletionRequest)(data)
    assert isinstance(decoded, Undecodable)
    assert decoded.message_type == "myrouter.chat.v1.ChatCompletionRequest"


def test_the_refusal_is_invalid_argument_at_warning_without_the_bytes():
    error = UndecodableRequest("myrouter.chat.v1.ChatCompletionRequest")
    status = to_status(error, request_id="r1")
    assert status.code.name == "INVALID_ARGUMENT"
    assert error.reason == "UNDECODABLE_REQUEST"
    assert error.log_level == logging.WARNING


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
