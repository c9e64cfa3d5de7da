"""What a caller may do, decided for each call before anything goes upstream.

One owner for the three questions the bridge asks of every call, in order:

1. who is calling (`bridge.callers`: the identity, from the sources listed),
   and may it call at all (`bridge.policy`: the rule it matches);
2. may it spend the bridge's service key, and the model it names;
3. is it within its limits (`bridge.quotas`): requests, concurrency, tokens.

The first is `identify` and `check_allowed`, at the very start of the RPC; the others are `admit`,
once the request is validated, so a refused call costs nothing upstream. At the
end `finish` settles the token reservation against the usage the caller was
told of and gives the concurrency lease back; nothing runs per chunk, and a
stream that has started is never cut for budget.

When a token limit applies to a stream, the upstream is asked for its usage
(``stream_options.include_usage``), since a stream reports none otherwise: the
caller then receives one more chunk, the last, with ``usage`` and no choices
(docs/callers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import grpc

from .callers import caller_identity
from .config import BridgeConfig
from .errors import CallerNotAllowed
from .metrics import Metrics
from .policy import CallerRule, Policy, PolicyFile, model_allowed
from .quotas import Grant, Quotas

__all__ = ["Access", "Caller"]

log = logging.getLogger("bridge.access")


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, and the policy rule that says what it may do."""

    identity: str
    """As the listed source gave it (``anonymous`` without one): logs and the upstream."""
    rule: CallerRule

    @property
    def label(self) -> str:
        """The metrics label: bounded by the policy (`CallerRule.label`)."""
        return self.rule.label

    @property
    def counts_tokens(self) -> bool:
        limits = self.rule.limits
        return limits.tokens_per_minute is not None or limits.tokens_per_day is not None


class Access:
    """The bridge's caller policy in force, its limits engine, and the decisions on them.

    Owned by the server, which starts and closes it (`start`, `close`: the
    policy file's watch and the limits store), and handed to the service.
    """

    def __init__(
        self,
        config: BridgeConfig,
        quotas: Quotas,
        policy_file: PolicyFile | None = None,
    ) -> None:
        self._sources = config.caller_identity
        # What the listed sources read, so that nothing else is decoded per call (grpc
        # decodes the metadata anew at each `invocation_metadata`).
        self._reads_tls = any(source.kind == "tls" for source in self._sources)
        self._reads_metadata = any(source.header is not None for source in self._sources)
        self._token_estimate = config.token_estimate
        self._quotas = quotas
        self._policy_file = policy_file
        self._permissive = Policy.permissive()
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls,
        config: BridgeConfig,
        metrics: Metrics | None = None,
        on_policy: Callable[[Policy], None] | None = None,
    ) -> Access:
        """What the settings ask for: the policy file (read now: a bad one raises
        PolicyError, which refuses start-up; `on_policy` hears of each good reload)
        and the limits engine."""
        policy_file = None
        if config.policy_file is not None:
            policy_file = PolicyFile(
                config.policy_file,
                on_policy,
                interval=config.policy_reload_interval,
                on_result=None if metrics is None else metrics.policy_reloaded,
            )
        return cls(config, Quotas.from_config(config, metrics=metrics), policy_file)

    @property
    def policy(self) -> Policy:
        """The policy in force: the file's last good one, or everyone-may-everything."""
        return self._permissive if self._policy_file is None else self._policy_file.policy

    def identify(self, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of this RPC and its rule; refuses a malformed identity
        (`InvalidCallerIdentity`). Whether the rule allows it is `check_allowed`, once the
        caller is noted, so that a refused caller is still named in its log line and metrics."""
        identity = caller_identity(
            self._sources,
            context.auth_context() if self._reads_tls else None,
            context.invocation_metadata() if self._reads_metadata else None,
        )
        return Caller(identity, self.policy.rule_for(identity))

    def check_allowed(self, caller: Caller) -> None:
        """Refuse a caller the policy does not allow (``allow: false``)."""
        if not caller.rule.allow:
            raise CallerNotAllowed(
                "the bridge's policy does not admit this caller",
                reason="CALLER_NOT_ALLOWED",
                metadata={"caller": caller.label},
            )

    def check_service_key(self, caller: Caller, using_service_key: bool) -> None:
        """A call that would spend the bridge's key needs the rule's ``service_key``; a caller
        that sends its own token pays for itself."""
        if using_service_key and not caller.rule.service_key:
            raise CallerNotAllowed(
                "this caller may not use the bridge's service key: send your own "
                "token in the authorization metadata",
                reason="SERVICE_KEY_NOT_ALLOWED",
                metadata={"caller": caller.label},
            )

    async def admit(
        self, caller: Caller, body: MutableMapping[str, Any] | None, *, stream: bool = False
    ) -> Grant:
        """The model check and the limits, in that order; the grant to `finish`.

        `body` is the upstream request's JSON (None for a call without one, such as
        ListModels, which counts against requests and concurrency only). For a
        stream under a token limit it gains ``stream_options.include_usage``.
        """
        rule = caller.rule
        limits = rule.limits
        tokens = 0
        if body is None:  # no tokens to count, nor to be refused for (an overdrawn window)
            limits = dataclasses.replace(limits, tokens_per_minute=None, tokens_per_day=None)
        else:
            model = body.get("model")
            if isinstance(model, str) and not model_allowed(rule, model):
                raise CallerNotAllowed(
                    f"this caller may not use the model {model!r}",
                    reason="MODEL_NOT_ALLOWED",
                    metadata={"caller": caller.label, "model": model},
                )
            if caller.counts_tokens:
                tokens = self._reservation(body)
                if stream:
                    _ask_for_usage(body)
        return await self._quotas.admit(caller.identity, limits, tokens)

    def _reservation(self, body: Mapping[str, Any]) -> int:
        """The tokens a call reserves: its own cap, else the configured estimate."""
        for key in ("max_completion_tokens", "max_tokens"):
            cap = body.get(key)
            if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
                return cap
        return self._token_estimate

    async def finish(self, grant: Grant, tokens: Mapping[str, int] | None) -> None:
        """Settle the reservation with the usage the caller was told of (None: none came,
        keep it), then give the lease back. Never raises."""
        used = None if tokens is None else tokens.get("input", 0) + tokens.get("output", 0)
        await self._quotas.settle(grant, used)
        await self._quotas.release(grant)

    async def start(self) -> None:
        """Connect the limits store and watch the policy file for changes."""
        await self._quotas.start()
        if self._policy_file is not None:
            self._watch = asyncio.create_task(self._policy_file.run(), name="policy-file")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._quotas.close()


def _ask_for_usage(body: MutableMapping[str, Any]) -> None:
    options = body.get("stream_options")
    if not isinstance(options, dict):
        options = body["stream_options"] = {}
    options["include_usage"] = True
