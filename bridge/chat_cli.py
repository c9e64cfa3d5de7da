"""The small human client: `chat` streams an answer to the terminal, `models` lists models.

It is also the plainest example of calling the bridge from Python with the
generated stubs, which is why it uses nothing but them and grpc.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import grpc
import orjson
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from myrouter_client import call_metadata, chat_request

from . import mapping

__all__ = [
    "chat",
    "describe_error",
    "describe_usage",
    "hint",
    "list_models",
    "open_channel",
    "read_prompt",
    "tls_credentials",
]


def open_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A TLS channel when given credentials (see `tls_credentials`), else plaintext."""
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def tls_credentials(
    ca_pem: bytes | None = None, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """TLS trusting `ca_pem` (a private CA), or the system's roots when it is None; with
    `cert_pem` and `key_pem`, the client certificate an mTLS bridge asks for."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def hint(exc: grpc.RpcError, *, tls: bool, client_cert: bool, token: str | None) -> str | None:
    """A line on what to try, for the failures a newcomer meets first; None for the rest.

    A plaintext call to a TLS listener, and a TLS call without a certificate to
    an mTLS one, both end as UNAVAILABLE "Socket closed" (the handshake fails
    before any RPC); a call without a token to a bridge without a service key
    is UNAUTHENTICATED.
    """
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = str(exc.details()) if isinstance(exc, grpc.Call) else ""
    if code is grpc.StatusCode.UNAVAILABLE and "Socket closed" in details:
        if not tls:
            return "hint: does the bridge listen with TLS? add --tls or --ca-file FILE"
        if not client_cert:
            return (
                "hint: does the bridge require client certificates (mTLS)? "
                "add --cert-file FILE --key-file FILE"
            )
    if code is grpc.StatusCode.UNAUTHENTICATED and token is None:
        return "hint: set MYROUTER_TOKEN to your token; it is sent as the authorization metadata"
    return None


def chat(
    target: str,
    *,
    model: str,
    prompt: str,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    token: str | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    client_cert: bool = False,
    as_json: bool = False,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Stream one answer; print text as it arrives (or each chunk as JSON). Returns an exit code.

    Text goes to `out` and everything about the call (usage, errors) to `err`,
    so `chat ... > answer.txt` captures the answer alone. Ctrl-C cancels the
    call, which makes the bridge stop the upstream request at once.
    """
    request = chat_request(
        model, prompt, system=system, max_tokens=max_tokens, temperature=temperature, extra=extra
    )
    usage: chat_pb2.Usage | None = None
    wrote_text = False  # so the answer ends with one newline, and an error starts a line
    with open_channel(target, credentials) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.StreamChatCompletion(
            request, metadata=call_metadata(token, request_id), timeout=timeout
        )
        try:
            for chunk in call:
                if as_json:
                    out.write(orjson.dumps(mapping.encode(chunk)).decode() + "\n")
                else:
                    wrote_text = _write_text(chunk, out) or wrote_text
                out.flush()
                if chunk.HasField("usage"):
                    usage = chunk.usage
        except grpc.RpcError as exc:
            _end_line(out, wrote_text)
            _report(exc, err, tls=credentials is not None, client_cert=client_cert, token=token)
            return 1
        except KeyboardInterrupt:
            call.cancel()
            _end_line(out, wrote_text)
            err.write("interrupted\n")
            return 130
    _end_line(out, wrote_text)
    if usage is not None:
        err.write(describe_usage(usage) + "\n")
    return 0


def _write_text(chunk: chat_pb2.ChatCompletionChunk, out: TextIO) -> bool:
    """Print what the chunk adds to the answer (text, tool calls); say whether anything was."""
    pieces: list[str] = []
    for choice in chunk.choices:
        if choice.delta.HasField("content"):
            pieces.append(choice.delta.content)
        for tool_call in choice.delta.tool_calls:
            if tool_call.function.name:
                pieces.append(f"[tool call {tool_call.function.name}] ")
            pieces.append(tool_call.function.arguments)
    text = "".join(pieces)
    out.write(text)
    return bool(text)


def _end_line(out: TextIO, wrote_text: bool) -> None:
    if wrote_text:
        out.write("\n")
        out.flush()


def describe_usage(usage: chat_pb2.Usage) -> str:
    """The usage summary printed after an answer; the rarer counts only when present."""
    text = (
        f"[usage] input {usage.input_tokens}, output {usage.output_tokens}, "
        f"total {usage.total_tokens} tokens"
    )
    rarer = [
        f"{name} {count}"
        for name, count in (
            ("cached", usage.cache_read_tokens),
            ("cache writes", usage.cache_write_tokens),
            ("reasoning", usage.reasoning_tokens),
        )
        if count
    ]
    return text + (f" ({', '.join(rarer)})" if rarer else "")


def list_models(
    target: str,
    *,
    token: str | None = None,
    timeout: float | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    client_cert: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print one model id per line. Returns an exit code."""
    with open_channel(target, credentials) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        try:
            models = stub.ListModels(
                chat_pb2.ListModelsRequest(), metadata=call_metadata(token), timeout=timeout
            )
        except grpc.RpcError as exc:
            _report(exc, err, tls=credentials is not None, client_cert=client_cert, token=token)
            return 1
    for model in models.data:
        out.write(f"{model.id}\t{model.name}\n" if model.name else f"{model.id}\n")
    return 0


def _report(
    exc: grpc.RpcError, err: TextIO, *, tls: bool, client_cert: bool, token: str | None
) -> None:
    err.write(describe_error(exc) + "\n")
    line = hint(exc, tls=tls, client_cert=client_cert, token=token)
    if line is not None:
        err.write(line + "\n")


def describe_error(exc: grpc.RpcError) -> str:
    """One line: the status code, the message, and the details worth a human's eye."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    text = f"error: {code.name}: {' '.join(str(message).split())}"  # one line, always
    status = rpc_status.from_call(exc) if isinstance(exc, grpc.Call) else None
    extras: list[str] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            # the status message usually says these already: each is printed once
            violations = (f"{v.field}: {v.description}" for v in bad.field_violations)
            extras += [text for text in violations if text not in str(message)]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            extras.append(f"retry after {retry.retry_delay.ToTimedelta().total_seconds():g} s")
    if isinstance(exc, grpc.Call):
        metadata = [*(exc.trailing_metadata() or ()), *(exc.initial_metadata() or ())]
        request_id = next((value for key, value in metadata if key == "x-request-id"), None)
        if request_id:
            extras.append(f"request id {request_id}")
    return text + (f" ({'; '.join(extras)})" if extras else "")


def read_prompt(words: Sequence[str], stdin: TextIO = sys.stdin) -> str:
    """The prompt from the command line, or from standard input when none is given or it is '-'."""
    if words and list(words) != ["-"]:
        return " ".join(words)
    return stdin.read().strip()
