"""Suite-wide test policy (fixtures live in tests/conftest.py): under REQUIRE_ALL=1, as in
CI, a test that would skip fails instead (tests/require_all.py)."""

from __future__ import annotations

pytest_plugins = ["tests.require_all", "pytester"]
