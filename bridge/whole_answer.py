"""An answer read whole: a chat completion, the model list, or an error answer's body.

Apart from the stream (`bridge.event_stream`), as httpx-sse keeps its event
source apart from everything else: a whole answer is one bounded body that
must be one JSON object; a completion may also be an ``error`` object; an
answer whose status is not 200 is read here, bounded, for its error object
(`error_answer`), whichever kind of request it answered.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from .config import BridgeConfig
from .errors import BridgeError, UpstreamProtocolError, UpstreamTooLarge
from .failures import READING_BODY, TransportFailures, error_object, http_error, reported_error
from .upstream_call import UpstreamCall

__all__ = ["MAX_ERROR_BODY_BYTES", "completion", "error_answer", "error_body", "json_object"]

MAX_ERROR_BODY_BYTES = 64 * 1024


async def completion(
    response: httpx.Response, call: UpstreamCall, config: BridgeConfig
) -> dict[str, Any]:
    """A chat completion: `json_object`, and an ``error`` object without choices raises."""
    answer = await json_object(response, config)
    error = answer.get("error")
    if error is not None and not answer.get("choices"):
        raise reported_error(error_object(error), answer, call)
    return answer


async def json_object(response: httpx.Response, config: BridgeConfig) -> dict[str, Any]:
    """A 200 answer's whole body, which must be one JSON object within max_response_bytes;
    the response is closed on every path."""
    try:
        body = await _read_body(response, config.max_response_bytes, config)
    finally:
        await response.aclose()
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(
            "the upstream answered 200 with a body that is not JSON",
            reason="UPSTREAM_MALFORMED_BODY",
        ) from None
    if type(parsed) is not dict:
        raise UpstreamProtocolError(
            "the upstream answered 200 with JSON that is not an object",
            reason="UPSTREAM_MALFORMED_BODY",
        )
    return parsed


async def error_answer(
    response: httpx.Response, call: UpstreamCall, config: BridgeConfig
) -> BridgeError:
    """The exception for an answer whose status is not 200 (`failures.http_error`)."""
    try:
        return http_error(response, await error_body(response, config), call)
    finally:
        await response.aclose()


async def error_body(response: httpx.Response, config: BridgeConfig) -> bytes:
    """A failed answer's body; empty when it is too big (or too broken) to be an error object."""
    try:
        return await _read_body(response, MAX_ERROR_BODY_BYTES, config)
    except UpstreamProtocolError:
        return b""


async def _read_body(response: httpx.Response, limit: int, config: BridgeConfig) -> bytes:
    parts: list[bytes] = []
    size = 0
    with TransportFailures(READING_BODY, config):
        try:
            async for part in response.aiter_bytes():
                size += len(part)
                if size > limit:
                    raise UpstreamTooLarge(
                        f"the upstream's answer exceeds the {limit}-byte limit",
                        reason="UPSTREAM_RESPONSE_TOO_LARGE",
                    )
                parts.append(part)
        except httpx.DecodingError:  # not a TransportError: the bytes came, but not as said
            raise UpstreamProtocolError(
                "the upstream's answer does not decode as its Content-Encoding says",
                reason="UPSTREAM_MALFORMED_BODY",
            ) from None
    return b"".join(parts)
