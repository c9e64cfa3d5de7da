"""Keeps tests/unit pure: no socket, no child process, no gRPC server or channel.

While a unit test sets up and runs, the calls that reach outside the process
are replaced by one that raises `ImpureCallError`; and because code under test
may catch and swallow that error (the bridge turns unexpected exceptions into
a status), every refused call is also recorded and fails the test afterwards.
A test that needs any of them belongs in tests/integration. Creating a socket
object stays allowed (asyncio's event loop makes a socketpair for itself);
binding, connecting, sending to an address and name lookups do not. uvloop's
own sockets (libuv, not Python's socket module) are outside what this sees.

Session fixtures from tests/conftest.py (the embedded upstream, bridges) start
servers, so a unit test that asks for one fails too.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

# (owner, attribute, what the refusal says)
_REFUSED: tuple[tuple[object, str, str], ...] = (
    (socket.socket, "bind", "socket.bind"),
    (socket.socket, "connect", "socket.connect"),
    (socket.socket, "connect_ex", "socket.connect_ex"),
    (socket.socket, "sendto", "socket.sendto"),
    (socket, "getaddrinfo", "socket.getaddrinfo"),
    (subprocess.Popen, "__init__", "a subprocess"),
    (os, "fork", "os.fork"),
    (os, "posix_spawn", "os.posix_spawn"),
    (os, "posix_spawnp", "os.posix_spawnp"),
    (os, "system", "os.system"),
    (multiprocessing.process.BaseProcess, "start", "a multiprocessing process"),
    (grpc, "server", "a gRPC server"),
    (grpc.aio, "server", "a gRPC server"),
    (grpc, "insecure_channel", "a gRPC channel"),
    (grpc, "secure_channel", "a gRPC channel"),
    (grpc.aio, "insecure_channel", "a gRPC channel"),
    (grpc.aio, "secure_channel", "a gRPC channel"),
)


class ImpureCallError(Exception):
    """A unit test reached for a socket, a process or a gRPC server/channel."""


def _refusal(what: str, refused: list[str]) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        refused.append(what)
        raise ImpureCallError(
            f"unit tests are pure: {what} is refused here; move the test to tests/integration"
        )

    return refuse


@contextlib.contextmanager
def _pure() -> Iterator[None]:
    refused: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, what in _REFUSED:
            if hasattr(owner, name):
                patch.setattr(owner, name, _refusal(what, refused))
        yield
    if refused:  # refused, and the error swallowed by the code under test
        raise ImpureCallError(f"this unit test reached for {', '.join(sorted(set(refused)))}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    with _pure():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with _pure():
        return (yield)
