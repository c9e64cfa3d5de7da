"""tests/unit/conftest.py keeps the unit group pure: shown on a throwaway suite, in a child."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

UNIT_CONFTEST = Path(__file__).resolve().parents[1] / "unit" / "conftest.py"


def test_a_unit_test_that_reaches_outside_the_process_fails(pytester: pytest.Pytester):
    pytester.makeconftest(UNIT_CONFTEST.read_text())
    pytester.makepyfile(
        test_throwaway="""
        import asyncio, multiprocessing, os, socket, subprocess, sys

        import grpc
        import grpc.aio
        import pytest

        def test_bind():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))

        def test_connect_swallowed_by_the_code_under_test():
            with socket.socket() as sock:
                try:
                    sock.connect(("127.0.0.1", 9))
                except Exception:
                    pass

        def test_process():
            subprocess.run([sys.executable, "-c", "pass"])

        def test_grpc_server():
            grpc.aio.server()

        def test_grpc_channel():
            grpc.insecure_channel("127.0.0.1:1")

        @pytest.fixture
        def listening():
            socket.socket().bind(("127.0.0.1", 0))

        def test_fixture_that_listens(listening):
            pass

        def test_pure():
            assert sorted([2, 1]) == [1, 2]

        def test_an_event_loop_is_pure():
            assert asyncio.run(asyncio.sleep(0, "done")) == "done"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=5, errors=1)
    result.stdout.fnmatch_lines(["*unit tests are pure: socket.bind is refused here*"])
    result.stdout.fnmatch_lines(["*this unit test reached for socket.connect*"])
