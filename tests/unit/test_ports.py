"""Bind errors: one line that names the address and the reason, in words an operator reads."""

from __future__ import annotations

import errno

import pytest

from bridge.config import ListenAddress
from bridge.ports import BindError


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EADDRINUSE, "address already in use (another process holds the port)"),
        (errno.EADDRNOTAVAIL, "no such address on this machine"),
        (errno.EACCES, "permission denied (ports below 1024 need privileges)"),
    ],
)
def test_a_bind_error_names_the_address_and_why(code, reason):
    error = BindError.of(ListenAddress.parse("0.0.0.0:443"), OSError(code, "kernel words"))
    assert str(error) == f"cannot listen on 0.0.0.0:443: {reason}"
    assert error.errno == code
    assert isinstance(error, OSError)


def test_an_unlisted_error_keeps_the_systems_words():
    error = BindError.of(ListenAddress("::1", 1), OSError(errno.EINVAL, "Invalid argument"))
    assert str(error) == "cannot listen on [::1]:1: invalid argument"
