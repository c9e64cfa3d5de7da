"""The contract's own checks (buf, as `make lint` runs them), proven able to fail:
a rename or renumber against the released image is caught, an added field is not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support import require_setup, require_tool

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
RELEASED = ROOT / "protos" / "released-image.json"
CHAT_PROTO = Path("myrouter/chat/v1/chat.proto")


def _buf(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    require_tool("npm", "buf, which checks the contract, is installed with npm")
    require_setup(BUF, "tools")
    return subprocess.run(
        [str(BUF), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=90
    )


@pytest.fixture
def protos_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy)
    return copy


def _edit(protos: Path, old: str, new: str) -> None:
    path = protos / CHAT_PROTO
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_contract_passes_lint_format_and_breaking():
    for args in (
        ("lint", "protos"),
        ("format", "--exit-code", "--diff", "protos"),
        ("breaking", "protos", "--against", RELEASED),
    ):
        result = _buf(*args)
        assert result.returncode == 0, (
            f"buf {' '.join(map(str, args))}: {result.stdout}{result.stderr}"
        )


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("  string user = 9;", "  string end_user = 9;", 'changed name from "user" to "end_user"'),
        ("  string user = 9;", "  string user = 10;", "deleted"),
        ("  optional int32 max_tokens = 3;", "  optional int64 max_tokens = 3;", "type"),
    ],
)
def test_breaking_check_catches_a_changed_field(protos_copy, old, new, complaint):
    _edit(protos_copy, old, new)
    result = _buf("breaking", protos_copy, "--against", RELEASED)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_an_added_field_is_not_breaking(protos_copy):
    _edit(
        protos_copy,
        "  string user = 9;\n",
        "  string user = 9;\n  // A later addition.\n  string added_later = 10;\n",
    )
    result = _buf("breaking", protos_copy, "--against", RELEASED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_still_applies_every_other_standard_rule(protos_copy):
    _edit(
        protos_copy,
        "  string user = 9;\n",
        "  string user = 9;\n  // Added.\n  string endUser = 10;\n",
    )
    result = _buf("lint", protos_copy)
    assert result.returncode != 0
    assert "lower_snake_case" in result.stdout + result.stderr
