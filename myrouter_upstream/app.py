"""The aiohttp application: routes, authentication, recording, and control endpoints.

Why recording is a middleware: every API request must be recorded the moment it
arrives (a ``hang`` scenario never returns) and stamped when its handler ends
for any reason, including aiohttp cancelling it because the client went away
(``handler_cancellation=True``). Wrapping the handler is the one place that sees
all of these endings.

The control endpoints (``/_control/...``) sit outside the API prefix, need no
credentials and are not recorded: they drive the test double, they are not part
of the API it imitates.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from .chat_request import parse_chat_request
from .errors import UpstreamError, error_body
from .models import MODEL_IDS
from .recording import Outcome
from .responder import JSON, Exchange, respond_chat, respond_models
from .scenario import Scenario, ScenarioError, parse_scenario
from .state import UpstreamState

__all__ = ["STATE_KEY", "build_app"]

STATE_KEY: Final = web.AppKey("embedded_upstream_state", UpstreamState)
_EXCHANGE_KEY: Final = web.RequestKey("embedded_upstream_exchange", Exchange)
_CLIENT_MAX_SIZE: Final = 256 * 1024 * 1024
"""Request bodies up to 256 MiB: the bridge's large-message tests must reach us."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(state: UpstreamState) -> web.Application:
    """An application serving the API under ``state.config.base_path`` plus the control routes."""
    app = web.Application(middlewares=[_api_middleware], client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = state
    base = state.config.base_path
    app.router.add_get(base + "/models", _models, allow_head=False)
    app.router.add_post(base + "/chat/completions", _chat_completions)
    app.router.add_route("*", base + "/{tail:.*}", _unknown_route)
    app.router.add_get("/_control/scenario", _get_scenario, allow_head=False)
    app.router.add_post("/_control/scenario", _set_scenario)
    app.router.add_delete("/_control/scenario", _reset_scenario)
    app.router.add_get("/_control/requests", _get_requests, allow_head=False)
    app.router.add_delete("/_control/requests", _clear_requests)
    return app


@web.middleware
async def _api_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    base = state.config.base_path
    if request.path != base and not request.path.startswith(base + "/"):
        return await handler(request)

    raw = await request.read()
    body, body_is_json = _decode(raw)
    record = state.recorder.start(request.method, request.path, _headers(request), body, raw)
    exchange = Exchange(
        request=request, state=state, record=record, body=body, body_is_json=body_is_json
    )
    request[_EXCHANGE_KEY] = exchange
    task = asyncio.current_task()
    if task is not None:
        state.track(task)
    try:
        try:
            response = await handler(request)
        except UpstreamError as refusal:
            response = await exchange.send(refusal.status, refusal.body(), JSON)
        # Handlers end their own bodies (stamping the record just before the last
        # bytes leave, see Exchange.completing); this only catches one that did not.
        await response.prepare(request)
        await response.write_eof()
    except asyncio.CancelledError:
        outcome: Outcome = "error" if state.closing else "disconnected"
        state.recorder.finish(record, outcome, replace=exchange.provisional)
        raise
    except ConnectionResetError:
        state.recorder.finish(record, "disconnected", replace=exchange.provisional)
        # Hand aiohttp the response already begun: its own write_eof fails quietly
        # on the dead connection, instead of logging a handler error.
        return exchange.response if exchange.response is not None else web.Response()
    except BaseException:
        state.recorder.finish(record, "error", replace=exchange.provisional)
        raise
    finally:
        if task is not None:
            state.untrack(task)
    state.recorder.finish(record, "completed")
    return response


def _decode(raw: bytes) -> tuple[Any, bool]:
    if not raw:
        return None, False
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return None, False


def _headers(request: web.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _authorize(request: web.Request, api_keys: frozenset[str] | None) -> None:
    """Require ``Authorization: Bearer <token>``; never echo the token back."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UpstreamError(401, "No auth credentials found")
    if api_keys is not None and token not in api_keys:
        raise UpstreamError(401, "Invalid API key")


async def _models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    _authorize(request, state.config.api_keys)
    return await respond_models(request[_EXCHANGE_KEY], state.scenario)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    exchange = request[_EXCHANGE_KEY]
    _authorize(request, state.config.api_keys)
    if not exchange.body_is_json:
        raise UpstreamError(400, "Request body is not valid JSON")
    chat = parse_chat_request(exchange.body, MODEL_IDS)
    scenario = _request_scenario(exchange.body, state)
    if scenario.kind != "ok" and not _applies(scenario, request, chat.model, state):
        scenario = dataclasses.replace(scenario, kind="ok")
    return await respond_chat(exchange, chat, scenario)


def _applies(scenario: Scenario, request: web.Request, model: str, state: UpstreamState) -> bool:
    """Whether the scenario's fault is for this request (its ``models`` and ``times``)."""
    if scenario.models is not None and model not in scenario.models:
        return False
    if scenario.times is not None:
        return state.seen(request.headers.get("x-request-id", "")) <= scenario.times
    return True


def _request_scenario(body: Any, state: UpstreamState) -> Scenario:
    """The request's own ``"scenario"`` member if any, else the server's current one."""
    given = body.get("scenario") if isinstance(body, dict) else None
    if given is None:
        return state.scenario
    try:
        return parse_scenario(given)
    except ScenarioError as exc:
        raise UpstreamError(400, f"Invalid scenario: {exc}") from None


async def _unknown_route(request: web.Request) -> web.StreamResponse:
    base = request.app[STATE_KEY].config.base_path
    if request.path in (base + "/models", base + "/chat/completions"):
        raise UpstreamError(405, f"Method {request.method} not allowed")
    raise UpstreamError(404, f"No route for {request.path}")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), headers={"Content-Type": JSON})


async def _get_scenario(request: web.Request) -> web.StreamResponse:
    return _json({"scenario": request.app[STATE_KEY].scenario.to_json()})


async def _set_scenario(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    try:
        scenario = parse_scenario(orjson.loads(await request.read()))
    except orjson.JSONDecodeError:
        return web.Response(
            status=400,
            body=error_body(400, "Request body is not valid JSON"),
            headers={"Content-Type": JSON},
        )
    except ScenarioError as exc:
        return web.Response(
            status=400, body=error_body(400, str(exc)), headers={"Content-Type": JSON}
        )
    state.set_scenario(scenario)
    return _json({"scenario": scenario.to_json()})


async def _reset_scenario(request: web.Request) -> web.StreamResponse:
    return _json({"scenario": request.app[STATE_KEY].reset_scenario().to_json()})


async def _get_requests(request: web.Request) -> web.StreamResponse:
    records = request.app[STATE_KEY].recorder.snapshot()
    return _json({"requests": [record.to_json() for record in records]})


async def _clear_requests(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].recorder.clear()
    return _json({"requests": []})
