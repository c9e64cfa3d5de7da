"""Graceful shutdown of a real bridge process on a real signal.

SIGTERM: stop accepting, let in-flight streams finish within the grace period,
abort the rest with UNAVAILABLE (closing their upstream requests), close the
HTTP client, leave no task pending, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from bridge.server import EXIT_FORCED
from support import (
    CALLER_METADATA,
    BridgeProcess,
    chat_request,
    details_of,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

FOREVER = 3600


def _assert_clean_exit(process: BridgeProcess, timeout: float = 15) -> str:
    code = process.wait(timeout)
    output = process.output()
    assert code == 0, output
    assert "shutdown complete" in output, output
    assert "Traceback" not in output, output
    assert "pending" not in output.replace("no call, upstream request or task left", ""), output
    return output


def _refuses_new_calls(target: str) -> None:
    """A new connection after the signal gets no service (the listener is closed)."""
    channel, stub = stub_for(target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=2)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def _stalled_stream(stub):
    """A stream whose upstream sends its first chunk and then nothing, for an hour."""
    request = with_scenario(chat_request("a b c"), stall_after=1, stall=FOREVER)
    return stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=30)


def test_stream_in_flight_finishes_within_the_grace_period(start_bridge_process, upstream):
    process = start_bridge_process("--shutdown-grace", "20")
    channel, stub = stub_for(process.target)
    with channel:
        request = with_scenario(chat_request("one two three four five"), chunk_delay=0.15)
        call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=30)
        received = [next(call)]
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        _refuses_new_calls(process.target)
        received += list(call)  # the stream in flight goes on to its end
        assert call.code() is grpc.StatusCode.OK
    text = "".join(c.choices[0].delta.content for c in received if c.choices)
    assert text == "You said: one two three four five"
    _assert_clean_exit(process)
    assert time.monotonic() - signalled < 15  # exited when the stream ended, not after 20 s
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "completed"


def test_stream_still_running_after_the_grace_period_is_aborted_unavailable(
    start_bridge_process, upstream
):
    process = start_bridge_process("--shutdown-grace", "0.5")
    channel, stub = stub_for(process.target)
    with channel:
        call = _stalled_stream(stub)
        received = [next(call), next(call)]  # role chunk, first content chunk
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as caught:
            received += list(call)
    aborted_after = time.monotonic() - signalled
    error = caught.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "shut down" in error.details()
    assert details_of(error)["ErrorInfo"].reason == "BRIDGE_SHUTTING_DOWN"
    assert len(received) == 2
    assert 0.4 < aborted_after < 10  # after the grace, not before it and not much later
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"  # the upstream request was closed
    output = _assert_clean_exit(process)
    assert "aborting 1 call(s)" in output


def test_stream_blocked_on_a_caller_that_stopped_reading_is_aborted_too(
    start_bridge_process, upstream
):
    process = start_bridge_process("--shutdown-grace", "0.5")
    channel, stub = stub_for(process.target)
    with channel:
        request = with_scenario(chat_request(), chunks=2000, pad=16 * 1024)
        call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=30)
        next(call)
        time.sleep(0.5)  # the bridge is now blocked writing to us (see test_faults backpressure)
        process.send_signal(signal.SIGTERM)
        time.sleep(2)
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    upstream_record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert upstream_record.outcome == "disconnected"
    _assert_clean_exit(process)


def test_unary_call_still_running_after_the_grace_period_is_aborted(start_bridge_process, upstream):
    process = start_bridge_process("--shutdown-grace", "0.3")
    channel, stub = stub_for(process.target)
    with channel:
        future = stub.CreateChatCompletion.future(
            with_scenario(chat_request(), kind="hang"), metadata=CALLER_METADATA, timeout=30
        )
        upstream.wait_for(lambda r: True, timeout=5)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as caught:
            future.result(timeout=15)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "BRIDGE_SHUTTING_DOWN"
    assert upstream.wait_for(lambda r: r.ended_at is not None).outcome == "disconnected"
    _assert_clean_exit(process)


def test_idle_bridge_exits_zero_on_sigterm_and_sigint(start_bridge_process):
    for sig in (signal.SIGTERM, signal.SIGINT):
        process = start_bridge_process()
        process.send_signal(sig)
        _assert_clean_exit(process)


def test_second_signal_forces_exit_at_once(start_bridge_process, upstream):
    process = start_bridge_process("--shutdown-grace", "60")
    channel, stub = stub_for(process.target)
    with channel:
        call = _stalled_stream(stub)
        next(call)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert process.proc.poll() is None  # draining: waiting for the stream
        forced = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(10)
        assert time.monotonic() - forced < 5
        call.cancel()
    assert code == EXIT_FORCED
    assert "exiting now" in process.output()
