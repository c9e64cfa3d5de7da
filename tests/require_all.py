"""REQUIRE_ALL=1 (CI): a skipped test is a failed test.

A test whose toolchain is missing (Node, Ruby, Go, podman, root) skips and says why,
so `make test` passes on a machine with nothing but Python. CI installs every
toolchain and sets REQUIRE_ALL=1, so nothing the suite covers can stop running there
unnoticed: every kind of skip (a `skip`/`skipif` mark, `pytest.skip()` in a test or a
fixture, `pytest.importorskip`, a module skipped while it is collected) is reported
as a failure carrying the skip's own reason. An expected failure (xfail) is not a
skip: it ran.

Loaded by the repository's root conftest.py; `--require-all` does the same as the
environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ENV = "REQUIRE_ALL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-all",
        action="store_true",
        default=os.environ.get(ENV, "") not in ("", "0"),
        help=f"fail every test that would skip (default: on when {ENV} is set and not 0)",
    )


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = f"skipped, but --require-all / {ENV} is set: {_reason(report)}"
    report.outcome = "failed"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and item.config.option.require_all:
        _fail(report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped and collector.config.option.require_all:
        _fail(report)
    return report
