"""A gRPC caller at the HTTP/2 frame level, for what grpc's own client refuses to send.

grpc's Python client checks metadata before sending it (no CR/LF, no control
characters, no non-ASCII bytes in a text value) and always serializes a real
message. A hostile caller speaking HTTP/2 itself is bound by neither, so the
bridge has to hold up against both; this client (h2, one connection per call)
sends the exact header bytes and request bytes a test gives it and returns
what came back: the status, the headers, the trailers and the messages.

Imported as `raw_grpc` (pytest's pythonpath has tests/).
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import struct
import urllib.parse
from collections.abc import Iterable, Sequence

import h2.config
import h2.connection
import h2.events
from google.rpc import status_pb2

CHAT_SERVICE = "/myrouter.chat.v1.ChatService/"


@dataclasses.dataclass
class RawReply:
    """One call's answer as it arrived: `headers` and `trailers` by lower-case name."""

    headers: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    trailers: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    messages: list[bytes] = dataclasses.field(default_factory=list)
    reset: int | None = None
    """The RST_STREAM error code, when the server reset the stream instead of ending it."""

    @property
    def grpc_status(self) -> int | None:
        """grpc-status, from the trailers or (Trailers-Only) the headers."""
        value = self.trailers.get(b"grpc-status", self.headers.get(b"grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        value = self.trailers.get(b"grpc-message", self.headers.get(b"grpc-message", b""))
        return urllib.parse.unquote(value.decode("ascii"))

    @property
    def status(self) -> status_pb2.Status | None:
        """The google.rpc.Status of grpc-status-details-bin, or None."""
        value = self.trailers.get(
            b"grpc-status-details-bin", self.headers.get(b"grpc-status-details-bin")
        )
        if value is None:
            return None
        return status_pb2.Status.FromString(base64.b64decode(value + b"=" * (-len(value) % 4)))

    def metadata(self, key: bytes) -> bytes | None:
        """A response metadata value, from the headers or the trailers."""
        return self.headers.get(key, self.trailers.get(key))


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message, uncompressed."""
    return struct.pack(">BI", 0, len(message)) + message


def call(
    target: str,
    method: str,
    request: bytes,
    metadata: Sequence[tuple[bytes, bytes]] = (),
    *,
    timeout: float = 10.0,
) -> RawReply:
    """Call `method` of ChatService on `target` ("host:port") with raw request bytes.

    `metadata` is sent exactly as given, after the request headers gRPC requires;
    the call ends when the stream does (or the server resets it or the connection).
    """
    host, port = target.rsplit(":", 1)
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    connection = h2.connection.H2Connection(config=config)
    reply = RawReply()
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        connection.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", (CHAT_SERVICE + method).encode()),
                (b":authority", target.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"grpc-timeout", f"{max(1, int(timeout * 1000))}m".encode()),
                *metadata,
            ],
        )
        connection.send_data(stream_id, frame(request), end_stream=True)
        sock.sendall(connection.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            if not data:
                break
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    reply.headers.update(_lowered(event.headers))
                elif isinstance(event, h2.events.TrailersReceived):
                    reply.trailers.update(_lowered(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    received += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    reply.reset = int(event.error_code)
                    ended = True
                elif isinstance(event, (h2.events.StreamEnded, h2.events.ConnectionTerminated)):
                    ended = True
            pending = connection.data_to_send()
            if pending:
                sock.sendall(pending)
    while len(received) >= 5:
        _flag, length = struct.unpack(">BI", received[:5])
        reply.messages.append(received[5 : 5 + length])
        received = received[5 + length :]
    return reply


def _lowered(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        key = name if isinstance(name, bytes) else name.encode()
        out[key.lower()] = value if isinstance(value, bytes) else value.encode()
    return out
