"""`python -m bridge.config --markdown`, the command behind `make docs`, run as a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridge.config import configuration_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_command_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge.config", "--markdown"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout == configuration_reference()
