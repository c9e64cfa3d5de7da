"""A real local HTTP server that speaks the MyRouter chat API deterministically.

It is the upstream of the bridge's demo, integration tests, fault-injection
suite and benchmarks, and of anyone's tests of a MyRouter caller: every answer
is a pure function of the request, and a `Scenario` (per request, or
server-wide) switches it to a precise fault (error status, mid-stream error,
truncation, malformed event, hang, stall, ...). A package of its own that never
imports the bridge: ``python -m myrouter_upstream`` (``myrouter-upstream``)
runs it as a process, ``python -m myrouter_upstream.demo`` is ``make demo``.

Typical use::

    with EmbeddedUpstream(UpstreamConfig(api_keys=frozenset({"k"}))) as upstream:
        ...  # point the bridge at upstream.base_url
        record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
"""

from __future__ import annotations

from .answers import Answer, build_answer, tokenize
from .app import build_app
from .chat_request import ChatRequest, parse_chat_request
from .cli import main
from .config import UpstreamConfig
from .errors import UpstreamError
from .models import MODEL_IDS, MODELS, ModelInfo
from .recording import Outcome, RecordedRequest, Recorder
from .runner import EmbeddedUpstream, serve
from .scenario import Dialect, Kind, Scenario, ScenarioError, parse_scenario
from .state import UpstreamState

__all__ = [
    "MODELS",
    "MODEL_IDS",
    "Answer",
    "ChatRequest",
    "Dialect",
    "EmbeddedUpstream",
    "Kind",
    "ModelInfo",
    "Outcome",
    "RecordedRequest",
    "Recorder",
    "Scenario",
    "ScenarioError",
    "UpstreamConfig",
    "UpstreamError",
    "UpstreamState",
    "build_answer",
    "build_app",
    "main",
    "parse_chat_request",
    "parse_scenario",
    "serve",
    "tokenize",
]
