"""``python -m myrouter_upstream``: the upstream as a standalone process.

For demos and for tests written in other languages: start it, read the one
line it prints to learn where it listens, drive it over HTTP (including
``/_control/...``), and stop it with SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import orjson

from .config import DEFAULT_MAX_RECORDS, UpstreamConfig
from .runner import serve
from .scenario import Scenario, ScenarioError, parse_scenario

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        scenario = (
            Scenario() if args.scenario is None else parse_scenario(orjson.loads(args.scenario))
        )
        config = UpstreamConfig(
            host=args.host,
            port=args.port,
            api_keys=frozenset(args.api_key) if args.api_key else None,
            default_scenario=scenario,
            chunk_delay=args.chunk_delay,
            max_records=args.max_records,
        )
    except (orjson.JSONDecodeError, ScenarioError, ValueError) as exc:
        print(f"embedded upstream: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        asyncio.run(_serve_until_signalled(config))
    except OSError as exc:
        print(f"embedded upstream: cannot listen: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m myrouter_upstream",
        description="A deterministic local MyRouter API with switchable faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind; 0 = any (8080)")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between stream events (0)"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="accepted bearer token (repeatable); any token when absent",
    )
    parser.add_argument("--scenario", default=None, help="default scenario, as a JSON object")
    parser.add_argument(
        "--max-records",
        type=int,
        default=DEFAULT_MAX_RECORDS,
        help=f"latest requests kept for /_control/requests ({DEFAULT_MAX_RECORDS}); "
        "older ones are dropped",
    )
    return parser


async def _serve_until_signalled(config: UpstreamConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(port: int) -> None:
        host = f"[{config.host}]" if ":" in config.host else config.host
        print(f"embedded upstream listening on http://{host}:{port}{config.base_path}", flush=True)

    await serve(config, stop=stop, on_listening=announce)
