"""The embedded upstream's pure parts: tokens and scenarios; and that it never needs the bridge.

Everything it does over sockets (the API, faults, timing, recording, the CLI)
is in tests/integration/test_myrouter_upstream.py.
"""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import orjson
import pytest

import myrouter_upstream
from myrouter_upstream import Scenario, ScenarioError, cli, parse_scenario, tokenize
from myrouter_upstream.answers import STAMP_MEMBER, stamped
from myrouter_upstream.config import UpstreamConfig
from myrouter_upstream.recording import Recorder

pytestmark = pytest.mark.timeout(30)


def test_tokenize() -> None:
    assert tokenize("You said: hello") == ["You ", "said: ", "hello"]
    assert "".join(tokenize("You said: a  b\nc ")) == "You said: a  b\nc "


def test_parse_scenario() -> None:
    assert parse_scenario({}) == Scenario()
    parsed = parse_scenario(
        {
            "kind": "midstream_error",
            "after": 3.0,
            "error_code": 500.0,
            "chunk_delay": 1,
            "stall": 0,
        }
    )
    assert parsed.after == 3 and parsed.error_code == 500 and parsed.chunk_delay == 1.0
    assert parse_scenario({"retry_after": 1.5}).retry_after == "1.5"
    assert parse_scenario(parsed.to_json()) == parsed
    assert parse_scenario({"kind": None}) == Scenario()
    bad: object
    for bad in (
        {"nope": 1},
        {"after": True},
        {"after": -1},
        {"abort": 1},
        {"status": 200},
        {"batch": 0},
        {"keepalive": 0},
        {"dialect": "anthropic"},
        {"chunk_delay": -1},
        {"rate": 0},
        {"rate": -5},
        {"rate": float("inf")},
        {"rate": True},
        {"rate": 20, "chunk_delay": 0.05},
        {"stamp": 1},
        {"metadata": []},
        [],
    ):
        with pytest.raises(ScenarioError):
            parse_scenario(bad)
    assert Scenario(kind="truncate").effective_after == 2
    assert Scenario(kind="malformed").effective_after == 1
    assert Scenario(stall=1).effective_stall_after == 0


def test_rate_and_stamp_members() -> None:
    paced = parse_scenario({"chunks": 10, "rate": 20.0, "stamp": True})
    assert paced.rate == 20.0 and paced.stamp is True and paced.chunk_delay is None
    assert parse_scenario({"rate": 7}).rate == 7.0  # Struct doubles and JSON ints alike
    assert parse_scenario(paced.to_json()) == paced
    assert Scenario().rate is None and Scenario().stamp is False
    with pytest.raises(ScenarioError, match="'rate' excludes 'chunk_delay'"):
        Scenario(rate=10, chunk_delay=0.1)
    with pytest.raises(ScenarioError, match="'rate' must be a finite number > 0"):
        Scenario(rate=float("nan"))


def test_stamped_appends_the_send_time_to_json_events_only() -> None:
    event = b'data: {"id":"gen-1","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    out = stamped(event, 1_700_000_000_123_456_789)
    assert out.startswith(b"data: ") and out.endswith(b"\n\n")
    decoded = orjson.loads(out[len(b"data: ") : -2])
    assert decoded == {**orjson.loads(event[6:-2]), STAMP_MEMBER: "1700000000123456789"}
    assert list(decoded)[-1] == STAMP_MEMBER  # appended: the rest is byte-identical
    assert out.startswith(event[:-3])
    assert orjson.loads(stamped(b"data: {}\n\n", 5)[6:-2]) == {STAMP_MEMBER: "5"}
    for untouched in (
        b"data: [DONE]\n\n",
        b": MYROUTER PROCESSING\n\n",
        b'data: {"id": "broken", not json\n\n',
    ):
        assert stamped(untouched, 1) is untouched


def test_the_upstream_never_imports_the_bridge() -> None:
    """The dependency is one way: the bridge may delegate to it (`upstream`, `demo`), never back.

    So a user's tests can run it with only its own dependencies, and the bridge
    package holds only the server.
    """
    package = Path(myrouter_upstream.__file__).parent
    sources = sorted(package.glob("*.py"))
    imported: list[tuple[str, str]] = []  # (top-level module, file)
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                imported += [(alias.name.split(".")[0], source.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.append((node.module.split(".")[0], source.name))
    assert len(sources) >= 14 and ("aiohttp", "app.py") in imported  # the walk sees imports
    assert [found for found in imported if found[0] == "bridge"] == []


def test_the_console_scripts_name_the_upstreams_cli() -> None:
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["myrouter-upstream"] == "myrouter_upstream.cli:main"
    assert scripts["myrouter-bridge"] == "bridge.cli:main"  # whose `upstream` delegates to it


def test_the_recorder_keeps_the_latest_requests_only() -> None:
    # A long-lived upstream (a demo, a benchmark) must not grow without bound.
    recorder = Recorder(max_records=3)
    for n in range(5):
        recorder.start("POST", f"/r{n}", {}, None, b"")
    kept = recorder.snapshot()
    assert [record.path for record in kept] == ["/r2", "/r3", "/r4"]
    assert [record.seq for record in kept] == [3, 4, 5]  # seq still counts every request
    assert recorder.wait_for(lambda record: record.path == "/r4", timeout=0).seq == 5


def test_max_records_is_a_setting_of_the_config_and_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert UpstreamConfig().max_records == 10_000
    with pytest.raises(ValueError, match="max_records"):
        UpstreamConfig(max_records=0)
    # The flag reaches the config: an invalid value is refused before anything listens.
    assert cli.main(["--max-records", "0"]) == 2
    assert "max_records must be at least 1" in capsys.readouterr().err
