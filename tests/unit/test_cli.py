"""`myrouter-bridge upstream` and `demo`: thin delegations to the myrouter_upstream package.

The commands as a user runs them (real processes) are in tests/integration/test_cli.py.
"""

from __future__ import annotations

import importlib.abc
import sys

import pytest

from bridge.cli import HEALTH_TIMEOUT, build_parser, main

pytestmark = pytest.mark.timeout(30)


class _Absent(importlib.abc.MetaPathFinder):
    """Finds `name` nowhere, as when it is not installed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == self.name:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make `module` unimportable for this test (what is imported already comes back after)."""
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Absent(module), *sys.meta_path])


def test_upstream_passes_its_arguments_to_myrouter_upstream(capsys):
    assert main(["upstream", "--port", "0", "--scenario", "{"]) == 2  # refused before serving
    assert capsys.readouterr().err.startswith("embedded upstream: ")


@pytest.mark.parametrize("argv", [["upstream", "--port", "0"], ["demo"]])
def test_without_myrouter_upstream_one_line_and_exit_2(monkeypatch, capsys, argv):
    _without(monkeypatch, "myrouter_upstream")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "myrouter_upstream package" in err


def test_a_broken_myrouter_upstream_is_not_mistaken_for_a_missing_one(monkeypatch):
    _without(monkeypatch, "myrouter_upstream.cli")
    with pytest.raises(ModuleNotFoundError):
        main(["upstream"])


def test_chat_models_and_health_share_the_tls_options():
    parser = build_parser()
    for command in ("chat", "models", "health"):
        args = parser.parse_args(
            [command, "--ca-file", "ca.pem", "--cert-file", "c.pem", "--key-file", "c.key"]
        )
        assert (str(args.ca_file), str(args.cert_file), str(args.key_file)) == (
            "ca.pem",
            "c.pem",
            "c.key",
        )
    assert parser.parse_args(["health"]).timeout == HEALTH_TIMEOUT  # a probe never hangs
    assert parser.parse_args(["health"]).service == ""


def test_a_client_certificate_without_its_key_is_a_usage_error(capsys):
    assert main(["health", "--cert-file", "c.pem"]) == 2
    assert capsys.readouterr().err == (
        "error: --cert-file and --key-file go together (the client certificate)\n"
    )
