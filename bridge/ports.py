"""Who may listen on the bridge's port: one bridge, and its own workers only.

`--workers N` makes N processes bind one address with SO_REUSEPORT, and Linux
lets any socket of the same user with that option join the group: a second
bridge on a busy port would start, and the kernel would split connections
between two unrelated bridges (calls alternating between answers and errors
from the wrong upstream). Hence, before any worker binds:

1. the supervisor takes a lock named after the port in the abstract Unix socket
   namespace (``@myrouter-bridge:port:N``), which lives in the network namespace,
   exactly the scope of the port, and vanishes with the process that holds it,
   even after SIGKILL: two bridges starting at once cannot both pass step 2;
2. it binds the address once WITHOUT SO_REUSEPORT, which fails while any socket
   holds the port, with the option or without: the port is free;
3. it keeps a SO_REUSEPORT socket bound (not listening) on the port, so the port
   stays its own while its workers bind beside it.

A single process (`--workers 1`) binds without SO_REUSEPORT (`grpc.so_reuseport`
0), so the kernel alone refuses any second listener, bridge or not; it checks
the address as in step 2 first, for the same one-line error. What no lock can
stop is another program of the same user that binds with SO_REUSEPORT once the
bridge runs: run the bridge under its own user (or in its own network
namespace, as in a pod). See docs/operations.md, "One bridge per port".

Every failure is a `BindError` naming the address, which the command line
prints as one line with exit status 2.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import Iterator

from .config import ListenAddress

__all__ = ["BindError", "check_free", "claim_for_workers"]

LOCK_PREFIX = "myrouter-bridge:port:"


class BindError(OSError):
    """The bridge cannot listen on an address (or serve its metrics on one)."""

    @classmethod
    def of(cls, address: ListenAddress, exc: OSError) -> BindError:
        reason = _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        return cls(exc.errno, f"cannot listen on {address}: {reason}")

    def __str__(self) -> str:
        return str(self.strerror)


_REASONS = {
    errno.EADDRINUSE: "address already in use (another process holds the port)",
    errno.EADDRNOTAVAIL: "no such address on this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def _socket_for(listen: ListenAddress) -> tuple[socket.socket, tuple[object, ...]]:
    family, kind, proto, _, address = socket.getaddrinfo(
        listen.host or None, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.socket(family, kind, proto), address


def _bind(listen: ListenAddress, *, reuse_port: bool) -> socket.socket:
    """A socket bound to the address; BindError if it cannot be."""
    try:
        sock, address = _socket_for(listen)
    except socket.gaierror as exc:
        raise BindError(errno.EADDRNOTAVAIL, f"cannot listen on {listen}: {exc.strerror}") from None
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        else:  # as grpc's listener: a port whose old connections linger in TIME_WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise BindError.of(listen, exc) from None
    return sock


def check_free(listen: ListenAddress) -> None:
    """Raise BindError unless the address can be bound now by a socket of its own."""
    _bind(listen, reuse_port=False).close()


@contextlib.contextmanager
def claim_for_workers(listen: ListenAddress) -> Iterator[ListenAddress]:
    """Hold the address for this process's workers (steps 1-3 above); yield it with its port.

    Port 0 becomes a fixed free port, which the workers are then told to bind.
    """
    with contextlib.ExitStack() as held:
        if listen.port:
            held.enter_context(_port_lock(listen))
        probe = _bind(listen, reuse_port=False)
        bound = listen.with_port(int(probe.getsockname()[1]))
        if not listen.port:
            held.enter_context(_port_lock(bound))
        probe.close()
        held.enter_context(_bind(bound, reuse_port=True))
        yield bound


@contextlib.contextmanager
def _port_lock(address: ListenAddress) -> Iterator[None]:
    """Hold ``@myrouter-bridge:port:N``; BindError naming the holder if another process does."""
    name = f"\0{LOCK_PREFIX}{address.port}"
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(name)
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise BindError.of(address, exc) from None
        holder = _holder_pid(name)
        who = f"another bridge (pid {holder})" if holder else "another bridge"
        raise BindError(exc.errno, f"cannot listen on {address}: {who} serves this port") from None
    with lock:
        lock.listen(1)  # only so that a refused bridge can ask who holds it (SO_PEERCRED)
        yield


def _holder_pid(name: str) -> int:
    """The pid of the process holding the lock `name`, or 0 when it cannot be told."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(name)
            credentials = probe.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
        except OSError:
            return 0
    pid, _, _ = struct.unpack("3i", credentials)
    return int(pid)
