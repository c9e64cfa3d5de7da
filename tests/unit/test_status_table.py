"""The README's status table covers every code and reason the bridge can answer with.

The table is the promise a caller (and a mesh's retry policy) reads; this test
reads it and checks it against what bridge/errors.py can produce, so a code or
a reason added to the bridge without its row fails here, and `UNKNOWN` can
never be one of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from bridge import errors
from bridge.errors import (
    ERROR_CODE_NAMES_TO_GRPC,
    HTTP_STATUS_TO_GRPC,
    BridgeError,
    grpc_code_for_error_code,
    grpc_code_for_http_status,
)
from support import status_table_tokens

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "bridge").glob("*.py")}
RAISED_WITH_A_REASON = ("UpstreamProtocolError", "UpstreamTooLarge", "CallerNotAllowed")
"""Classes always built with an explicit reason= (their class default is never sent)."""
NEVER_RAISED = ("UpstreamError",)
"""Bases only: the services catch them, nothing raises one itself."""


def table_tokens() -> set[str]:
    return status_table_tokens()


def subclasses(cls: type[BridgeError]) -> list[type[BridgeError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(subclasses(sub))
    return found


def producible_codes() -> set[grpc.StatusCode]:
    codes = set(HTTP_STATUS_TO_GRPC.values()) | set(ERROR_CODE_NAMES_TO_GRPC.values())
    codes |= {grpc_code_for_http_status(status) for status in range(-1, 1000)}
    for code in (None, "", "no-such-name", 0, 200, 302, 10**30, -1, 1.5, True, [1]):
        codes.add(grpc_code_for_error_code(code))
    codes |= {cls.code for cls in subclasses(BridgeError)}
    return codes


def raised(name: str) -> bool:
    """Built in errors.py, or named anywhere else (a rule table names classes)."""
    if name in NEVER_RAISED:
        return False
    own = SOURCES["errors.py"].replace(f"class {name}(", "")
    return bool(re.search(rf"(?<![\w.]){name}\(", own)) or any(
        re.search(rf"(?<![\w.]){name}\b", text)
        for file, text in SOURCES.items()
        if file != "errors.py"
    )


def producible_reasons() -> set[str]:
    reasons = {
        cls.reason
        for cls in subclasses(BridgeError)
        if raised(cls.__name__) and cls.__name__ not in RAISED_WITH_A_REASON
    }
    for text in SOURCES.values():
        reasons |= set(re.findall(r'reason="([A-Z_]+)"', text))
    return reasons


def test_every_code_the_bridge_can_answer_is_in_the_table() -> None:
    tokens = table_tokens()
    missing = {code.name for code in producible_codes()} - tokens
    assert not missing, f"codes without a row in README.md's status table: {sorted(missing)}"


def test_unknown_is_neither_in_the_table_nor_producible() -> None:
    assert "UNKNOWN" not in table_tokens()
    assert grpc.StatusCode.UNKNOWN not in producible_codes()


def test_every_reason_the_bridge_can_send_is_in_the_table() -> None:
    missing = producible_reasons() - table_tokens()
    assert not missing, f"ErrorInfo reasons without a row in README.md's table: {sorted(missing)}"


def test_the_table_names_only_real_codes_and_reasons() -> None:
    known = {code.name for code in grpc.StatusCode} | producible_reasons()
    assert table_tokens() - known == set()


def test_the_classes_built_with_a_reason_always_pass_one() -> None:
    for name in RAISED_WITH_A_REASON:
        for text in SOURCES.values():
            for call in re.finditer(rf"(?<!class ){name}\((?:[^()]|\([^()]*\))*\)", text):
                assert "reason=" in call.group(0), call.group(0)


def test_the_bugs_reason_is_the_generic_one() -> None:
    status = errors.to_status(RuntimeError("a bug"))
    assert status.code is grpc.StatusCode.INTERNAL
    assert "INTERNAL" in table_tokens()
