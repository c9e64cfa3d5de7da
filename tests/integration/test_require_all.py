"""REQUIRE_ALL: a test suite run in a pytester sandbox with the plugin loaded, once as a
newcomer runs it (skips are skips, with their reasons) and once as CI does (each kind of
skip is a failure that keeps its reason; xfail and passing tests are untouched)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SUITE = """
import pytest

def test_runs():
    pass

@pytest.mark.skip(reason="marked: no frobnicator on PATH")
def test_marked():
    pass

@pytest.mark.skipif(True, reason="skipif: no go on PATH")
def test_skipif():
    pass

def test_in_body():
    pytest.skip("in body: node not on PATH")

@pytest.fixture
def ruby():
    pytest.skip("in fixture: ruby not on PATH")

def test_in_fixture(ruby):
    pass

def test_importorskip():
    pytest.importorskip("no_such_module_for_require_all")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""

MODULE_SKIPPED = """
import pytest

pytest.importorskip("another_missing_module_for_require_all")

def test_never_collected():
    pass
"""

REASONS = (
    "marked: no frobnicator on PATH",
    "skipif: no go on PATH",
    "in body: node not on PATH",
    "in fixture: ruby not on PATH",
    "could not import 'no_such_module_for_require_all'",
)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The sandbox suite, run in a process of its own (`runpytest_subprocess`): run in this
    one, whose bridge and upstream threads live on, CPython 3.11.7's AST constructor once
    reported a false "recursion depth mismatch" rewriting the sandbox's test files in CI
    (python/cpython#106905, a depth counter left wrong). The plugin is found through
    PYTHONPATH."""
    monkeypatch.delenv("REQUIRE_ALL", raising=False)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(REPO) if not path else f"{REPO}{os.pathsep}{path}")
    pytester.makepyfile(test_suite=SUITE, test_module_skipped=MODULE_SKIPPED)
    return pytester


def test_without_it_skips_stay_skips_and_say_why(suite):
    result = suite.runpytest_subprocess("-p", "tests.require_all", "-ra")
    result.assert_outcomes(passed=1, skipped=6, xfailed=1)
    for reason in (*REASONS, "another_missing_module_for_require_all"):
        assert reason in result.stdout.str()


@pytest.mark.parametrize("how", ["env", "REQUIRE_ALL=0 then flag", "flag"])
def test_with_it_every_kind_of_skip_fails_with_its_reason(suite, monkeypatch, how):
    # (a collection error stops a real run at once; here the other tests run too)
    args = ["-p", "tests.require_all", "-ra", "--continue-on-collection-errors"]
    if how == "env":
        monkeypatch.setenv("REQUIRE_ALL", "1")
    else:
        if how != "flag":
            monkeypatch.setenv("REQUIRE_ALL", "0")
        args.append("--require-all")

    result = suite.runpytest_subprocess(*args)

    # A skip in the setup phase (marks, fixtures) is an error, in the call a failure.
    result.assert_outcomes(passed=1, failed=2, xfailed=1, errors=4)
    output = result.stdout.str()
    for reason in REASONS:
        assert f"skipped, but --require-all / REQUIRE_ALL is set: {reason}" in output
    assert "another_missing_module_for_require_all" in output
    assert result.ret != 0


def test_require_all_0_means_off(suite, monkeypatch):
    monkeypatch.setenv("REQUIRE_ALL", "0")
    result = suite.runpytest_subprocess("-p", "tests.require_all")
    result.assert_outcomes(passed=1, skipped=6, xfailed=1)
