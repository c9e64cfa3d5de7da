"""deploy/grafana and deploy/prometheus: the dashboard and the alert rules, against a real
Prometheus that scrapes a real bridge.

promtool checks the rules and runs their unit tests (bridge-alerts.test.yaml: each
alert fires, then resolves). Then a Prometheus of our own (its config, storage and
port, in a temporary directory; never a system service) scrapes a bridge under a
little load, and every dashboard query and every alert expression is evaluated
through its HTTP API: each must return series, so no panel or alert reads a metric
the bridge does not publish. That bridge runs with retries, a breaker, a policy file
(with a fallback and a caller limit) that is broken once and mended while it serves,
and a limits Redis that is down, so the resilience and caller series exist too.
Without the `prometheus` package (which brings promtool) these tests skip; CI
installs it (.ci/run), and REQUIRE_ALL turns a skip into a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from bridge.config import ListenAddress, Secret
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import CALLER_METADATA, chat_request, with_scenario

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "bridge-alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "bridge-alerts.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "bridge-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
JOB = "myrouter-bridge"
"""The scrape job the rules name, and the test's Prometheus uses."""

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus; .ci/run does)"
)

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": JOB}
"""What Grafana would put in place of the dashboard's variables here: the job the test's
Prometheus scrapes, and a rate window that spans many of its 1 s scrapes."""

THRESHOLD = re.compile(
    r"^(?P<query>.+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[-+0-9.e]+)\s*$", re.S
)


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> dict[str, str]:
    """Every PromQL query of the dashboard, by "panel title / refId", variables substituted.

    A `label_values(metric, label)` variable is Grafana's own function: its query is
    the metric's selector.
    """
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {}
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, variable["definition"]
            queries[f"variable ${variable['name']}"] = found.group(1)
    for name, query in queries.items():
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"{name}: a variable the test cannot substitute: {query}"
        queries[name] = query
    return queries


def test_the_dashboard_has_the_panels_the_operators_asked_for():
    titles = {panel["title"] for panel in _panels(json.loads(DASHBOARD.read_text())["panels"])}
    assert {
        "Calls by status",
        "Duration p50 / p99 by RPC",
        "Time to first chunk p50 / p99",
        "Streams open and the admission cap",
        "Tokens by model",
        "Upstream errors by reason",
        "Retries and circuit breaker",
        "Upstream retries by reason",
        "Fallbacks by reason",
        "Breaker state by model",
        "Calls by caller and status",
        "Tokens by caller",
    } <= titles
    assert len(dashboard_queries()) >= 10


def test_every_alert_is_a_query_against_a_threshold_with_a_runbook():
    """The shape the live test relies on, and a runbook entry in docs/operations.md."""
    operations = OPERATIONS.read_text()
    alerts = _alerts()
    assert {a["alert"] for a in alerts} == {
        "MyRouterBridgeErrorRatio",
        "MyRouterBridgeSlowFirstChunk",
        "MyRouterBridgeNearAdmissionCap",
        "MyRouterBridgeUpstreamRateLimited",
        "MyRouterBridgeDown",
        "MyRouterBridgePolicyReloadFailing",
        "MyRouterBridgeUpstreamCircuitOpen",
        "MyRouterBridgeLimitsStoreFailing",
    }
    for alert in alerts:
        assert THRESHOLD.match(alert["expr"].strip()), alert["alert"]
        assert f'job="{JOB}"' in alert["expr"], alert["alert"]
        anchor = alert["annotations"]["runbook_url"].split("#")[1]
        assert anchor == alert["alert"].lower()
        assert f"### {alert['alert']}\n" in operations, f"no runbook for {alert['alert']}"


@needs_promtool
def test_rules_pass_promtool_check():
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", RULES], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_fire_and_resolve_every_alert():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for alert in _alerts():
        checks = [
            check
            for test in tests
            for check in test["alert_rule_test"]
            if check["alertname"] == alert["alert"]
        ]
        fired = [_minutes(c["eval_time"]) for c in checks if c["exp_alerts"]]
        quiet = [_minutes(c["eval_time"]) for c in checks if not c["exp_alerts"]]
        assert fired, f"{alert['alert']} never fires in {RULE_TESTS.name}"
        assert any(t > min(fired) for t in quiet), f"{alert['alert']} never resolves"
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _minutes(duration: str) -> int:
    assert duration.endswith("m"), duration
    return int(duration[:-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A Prometheus server of the test's own, on loopback, and its HTTP API."""

    def __init__(self, directory: Path, targets: list[str]) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._log = (directory / "prometheus.log").open("w")
        assert PROMETHEUS is not None
        self._process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._logfile = directory / "prometheus.log"

    def wait(self, condition: Any, what: str, seconds: float = 45) -> Any:
        """Poll `condition()` until it returns something true; fail naming `what`."""
        pause = threading.Event()
        deadline = time.monotonic() + seconds  # the queries' own time counts too
        while time.monotonic() < deadline:
            assert self._process.poll() is None, self._logfile.read_text()[-3000:]
            try:
                result = condition()
            except httpx.HTTPError:
                result = None
            if result:
                return result
            pause.wait(0.25)
        pytest.fail(f"Prometheus: no {what} within {seconds} s")

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._log.close()


POLICY = """\
default:
  service_key: true
  limits: {requests_per_minute: 100000}
fallbacks:
  myrouter/echo: [myrouter/echo-large]
"""
"""The test bridge's caller policy: a limit, so each call asks the (down) limits store;
a fallback, so a failing myrouter/echo is counted moving on."""

RESILIENCE: dict[str, Any] = {
    "retry_attempts": 3,
    "retry_backoff": 0.01,
    "retry_budget_floor": 1000,
    "breaker_failures": 1000,
    "breaker_failure_rate": 0.0,
}
"""Retries on (the shared bridges have them off), never short of budget; breakers on,
so a model's gauge exists from its first failure, but never opened by the load (an
open one would fail the next pass's answers: its alert is promtool's to fire)."""


def _load(stub: chat_pb2_grpc.ChatServiceStub) -> None:
    """A few calls of each kind: unary, streams, ListModels, and failing ones; one
    answered after a retried 503, one by the fallback of a primary that is down."""
    for n in (2, 4):
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)
        list(
            stub.StreamChatCompletion(
                with_scenario(chat_request(), chunks=n), metadata=CALLER_METADATA, timeout=10
            )
        )
    stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA, timeout=10)
    for scenario in (
        {"kind": "status", "status": 503, "times": 1},  # the bridge's request id: one per call
        {"kind": "status", "status": 503, "models": ["myrouter/echo"]},
    ):
        answer = stub.CreateChatCompletion(
            with_scenario(chat_request(), **scenario), metadata=CALLER_METADATA, timeout=10
        )
        assert answer.choices[0].message.content
    failing: list[tuple[str, dict[str, Any]]] = [
        ("CreateChatCompletion", {"kind": "status", "status": 503}),
        ("CreateChatCompletion", {"kind": "status", "status": 429}),
        ("StreamChatCompletion", {"kind": "status", "status": 429}),
        ("StreamChatCompletion", {"kind": "midstream_error"}),
    ]
    for method, scenario in failing:
        request = with_scenario(chat_request(), **scenario)
        with pytest.raises(grpc.RpcError):
            call = getattr(stub, method)(request, metadata=CALLER_METADATA, timeout=10)
            if method.startswith("Stream"):
                list(call)


def _reload(bridge: Any, policy: Path, text: str, result: str) -> None:
    """Write the policy file and wait until the bridge counted its reload as `result`."""

    def reloads() -> float:
        sample = bridge.server.metrics.registry.get_sample_value
        return float(sample("bridge_policy_reloads_total", {"result": result}) or 0)

    before = reloads()
    policy.write_text(text)
    for _ in range(200):
        if reloads() > before:
            return
        threading.Event().wait(0.05)
    pytest.fail(f"no {result} policy reload counted within 10 s")


@pytest.fixture(scope="module")
def scraped(make_bridge, tmp_path_factory) -> Iterator[Prometheus]:
    """A Prometheus that has scraped a bridge (and a dead target) before and after load,
    and a policy reload that failed, then one that did not, between the two."""
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    bridge = make_bridge(
        metrics_listen=ListenAddress("127.0.0.1", 0),
        max_concurrent_rpcs=16,
        policy_file=policy,
        policy_reload_interval=0.1,
        limits_redis_url=Secret(f"redis://127.0.0.1:{_free_port()}"),  # nothing listens
        **RESILIENCE,
    )
    metrics_port = bridge.server.metrics_port
    dead = f"127.0.0.1:{_free_port()}"  # nothing listens: MyRouterBridgeDown's case
    prometheus = Prometheus(
        tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{metrics_port}", dead]
    )
    try:
        bridge_up = f'up{{job="{JOB}", instance="127.0.0.1:{metrics_port}"}} == 1'
        prometheus.wait(lambda: prometheus.query(bridge_up), "scrape of the bridge")
        with grpc.insecure_channel(bridge.target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            _load(stub)  # first seen by one scrape, then increased: rates above zero
            _reload(bridge, policy, "default: [broken\n", "error")
            _reload(bridge, policy, POLICY + "# mended\n", "ok")
            scrapes = (
                f'count_over_time(up{{job="{JOB}", instance="127.0.0.1:{metrics_port}"}}[10m])'
            )
            seen = float(prometheus.query(scrapes)[0]["value"][1])
            prometheus.wait(lambda: prometheus.query(f"{scrapes} > {seen + 2}"), "new scrapes")
            _load(stub)
        yield prometheus
    finally:
        prometheus.close()


def _evaluate(prometheus: Prometheus, queries: dict[str, str]) -> dict[str, int]:
    """Series count of each query, once every one returns some (or the wait runs out)."""

    def counts() -> dict[str, int] | None:
        found = {name: len(prometheus.query(q)) for name, q in queries.items()}
        return found if all(found.values()) else None

    try:
        found: dict[str, int] = prometheus.wait(counts, "series for every query", seconds=30)
        return found
    except pytest.fail.Exception:
        found = {name: len(prometheus.query(q)) for name, q in queries.items()}
        missing = {name: queries[name] for name, n in found.items() if not n}
        pytest.fail(f"queries without series: {json.dumps(missing, indent=2)}")


@needs_prometheus
def test_every_dashboard_query_returns_series(scraped):
    counts = _evaluate(scraped, dashboard_queries())
    print("\ndashboard query series:")
    for name, n in counts.items():
        print(f"  {n:3d}  {name}")


@needs_prometheus
def test_every_alert_expression_evaluates_and_its_query_returns_series(scraped):
    alerts = {a["alert"]: a["expr"].strip() for a in _alerts()}
    queries = {name: THRESHOLD.match(expr)["query"] for name, expr in alerts.items()}  # type: ignore[index]
    counts = _evaluate(scraped, queries)
    firing = {name: len(scraped.query(expr)) for name, expr in alerts.items()}
    print("\nalert query series / alert expression series (firing now):")
    for name in alerts:
        print(f"  {counts[name]:3d} / {firing[name]}  {name}")
    # the load makes these true: a dead target, 4 of 11 calls failing upstream, a
    # policy reload that failed, and a limits store that is down for every call
    assert firing["MyRouterBridgeDown"] == 1
    assert firing["MyRouterBridgeErrorRatio"] == 1
    assert firing["MyRouterBridgePolicyReloadFailing"] == 1
    assert firing["MyRouterBridgeLimitsStoreFailing"] == 1
    assert firing["MyRouterBridgeUpstreamCircuitOpen"] == 0  # its breakers stay closed
    # and Prometheus itself evaluates every rule without error
    rules = scraped.api("rules")["groups"][0]["rules"]
    assert {r["name"]: r["health"] for r in rules} == dict.fromkeys(alerts, "ok")
