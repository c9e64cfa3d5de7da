"""The caller policy: who may call, which models, on whose key, within which limits.

The file (``--policy-file``, YAML) is validated whole at load: a bad file
raises `PolicyError` naming the file, the line and the reason, so start-up
stops with a message an operator can act on. Unknown keys are refused the same
way, so a misspelt limit never passes silently. The schema (docs/callers.md)::

    callers:                          # optional; the first entry that matches wins
      - id: "spiffe://cluster.local/ns/search/*"   # exact, or a glob with *
        allow: true                   # optional; false refuses the caller
        models: ["myrouter/*"]        # optional globs; absent: any model
        service_key: true             # required: may it spend the bridge's key?
        limits: {concurrent: 20, requests_per_minute: 600,
                 tokens_per_minute: 200000, tokens_per_day: 5000000}  # each optional
    default: {service_key: false}     # required: every caller no entry names
    fallbacks: {model: [model, ...]}  # optional, exact model names

Matching: ``*`` stands for any run of characters, ``/`` included (so
``spiffe://cluster.local/ns/search/*`` covers every service account of that
namespace); every other character is literal. Entries name identified callers
only: the anonymous caller always gets the default. Without a file,
`Policy.permissive()` lets everyone use the key without limits, as the bridge
did before policies.

A caller's metrics label is bounded by the file, never by the callers: an
entry's ``id`` for the callers it matches, ``anonymous`` for the anonymous
caller, and `OTHER_LABEL` for every identified caller only the default matches.

`PolicyFile` polls the file and reloads it when it changes (a Kubernetes
ConfigMap's ``..data`` symlink swap included); a bad reload keeps the last good
policy, logs one line and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .callers import ANONYMOUS, MAX_IDENTITY_CHARS
from .config import DEFAULT_POLICY_RELOAD_INTERVAL, ConfigError

__all__ = [
    "MAX_CACHED_CALLERS",
    "OTHER_LABEL",
    "CallerRule",
    "Limits",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "load_policy",
    "model_allowed",
    "parse_policy",
]

log = logging.getLogger("bridge.policy")

OTHER_LABEL = "other"
"""The label of identified callers that no entry names (only the default matches them)."""

MAX_CACHED_CALLERS = 4096
"""Callers whose rule is remembered; past it the memory starts again (callers repeat)."""

_MAX_LIMIT = 10**15


class PolicyError(ConfigError):
    """The policy file is unusable: the message names the file, the line and the reason."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"policy file {where}: {reason}")
        self.path, self.line, self.reason = path, line, reason


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one caller may use; None: no limit (the limits engine enforces them)."""

    concurrent: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


@dataclasses.dataclass(frozen=True, slots=True)
class CallerRule:
    """What the policy says about the callers one entry (or the default) matches."""

    pattern: str
    """The entry's ``id`` (exact, or a glob with ``*``); ``*`` for the default."""
    models: tuple[str, ...] | None
    """Model globs the caller may use; None: any model."""
    service_key: bool
    """May the caller's calls spend the bridge's own key (when it sends no token)?"""
    limits: Limits
    label: str
    """The caller's metrics label: the ``id``, ``anonymous`` or `OTHER_LABEL`."""
    allow: bool = True
    """False: the caller is refused (CALLER_NOT_ALLOWED)."""
    _id: re.Pattern[str] = dataclasses.field(init=False, repr=False, compare=False)
    _models: re.Pattern[str] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id", _glob(self.pattern))
        models = None
        if self.models is not None:
            models = re.compile("|".join(f"(?:{_glob(m).pattern})" for m in self.models), re.DOTALL)
        object.__setattr__(self, "_models", models)

    def matches(self, caller: str) -> bool:
        return self._id.fullmatch(caller) is not None


def model_allowed(rule: CallerRule, model: str) -> bool:
    """May `rule`'s callers use `model`? (its globs; no list: any model)"""
    return rule._models is None or rule._models.fullmatch(model) is not None


_PERMISSIVE = CallerRule("*", None, True, Limits(), OTHER_LABEL)


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The rules, in the file's order, and the default; `rule_for` picks a caller's."""

    rules: tuple[CallerRule, ...]
    default: CallerRule
    """For identified callers no entry matches (labelled `OTHER_LABEL`)."""
    fallbacks: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    """Model -> the models to try instead, in order (used by the fallback work)."""
    source: str = ""
    """The file it was read from; empty for the permissive policy."""
    _anonymous: CallerRule = dataclasses.field(init=False, repr=False, compare=False)
    _cache: dict[str, CallerRule] = dataclasses.field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_anonymous", dataclasses.replace(self.default, label=ANONYMOUS))

    @classmethod
    def permissive(cls) -> Policy:
        """No file: everyone may use the key, any model, without limits (the bridge as before)."""
        return cls(rules=(), default=_PERMISSIVE)

    def rule_for(self, caller: str) -> CallerRule:
        """The first entry matching `caller`, else the default; anonymous: always the default."""
        if caller == ANONYMOUS:
            return self._anonymous
        rule = self._cache.get(caller)
        if rule is None:
            rule = next((r for r in self.rules if r.matches(caller)), self.default)
            if len(self._cache) >= MAX_CACHED_CALLERS:
                self._cache.clear()
            self._cache[caller] = rule
        return rule


# --------------------------------------------------------------------------- #
# Reading the file: yaml's node tree, so that every complaint has its line
# --------------------------------------------------------------------------- #

_ENTRY_KEYS = frozenset({"id", "allow", "models", "service_key", "limits"})
_DEFAULT_KEYS = _ENTRY_KEYS - {"id"}
_TOP_KEYS = frozenset({"callers", "default", "fallbacks"})
_LIMIT_KEYS = tuple(field.name for field in dataclasses.fields(Limits))
_SCALARS = yaml.constructor.SafeConstructor()


class _Invalid(Exception):
    def __init__(self, node: yaml.Node | None, reason: str) -> None:
        super().__init__(reason)
        self.line = None if node is None else node.start_mark.line + 1
        self.reason = reason


def load_policy(path: Path | str) -> Policy:
    """The policy in the file at `path`; PolicyError if it cannot be read or is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PolicyError(str(path), None, f"cannot read it: {reason}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy in YAML `text`; PolicyError naming `source`, the line and the reason."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PolicyError(source, None if mark is None else mark.line + 1, problem) from None
    try:
        if not documents:
            raise _Invalid(None, "the file is empty")
        if len(documents) > 1:
            raise _Invalid(documents[1], "one YAML document is expected, and this is a second")
        return _policy(documents[0], source)
    except _Invalid as exc:
        raise PolicyError(source, exc.line, exc.reason) from None


def _mapping(node: yaml.Node, what: str, allowed: frozenset[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid(node, f"{what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = _scalar(key, f"a key of {what}", str)
        if name in out:
            raise _Invalid(key, f"{what} has {name!r} twice")
        if name not in allowed:
            expected = ", ".join(sorted(allowed))
            raise _Invalid(key, f"unknown key {name!r} in {what} (expected {expected})")
        out[name] = value
    return out


def _scalar(node: yaml.Node, what: str, kind: type[Any]) -> Any:
    value = _SCALARS.construct_object(node) if isinstance(node, yaml.ScalarNode) else node
    if type(value) is not kind:  # bool is not an int here
        names = {str: "a string", bool: "true or false", int: "a whole number"}
        raise _Invalid(node, f"{what} must be {names[kind]}")
    return value


def _name(node: yaml.Node, what: str) -> str:
    text: str = _scalar(node, what, str)
    if not text or len(text) > MAX_IDENTITY_CHARS or not (text.isascii() and text.isprintable()):
        raise _Invalid(node, f"{what} must be 1 to {MAX_IDENTITY_CHARS} printable ASCII characters")
    return text


def _names(node: yaml.Node, what: str) -> tuple[yaml.Node, tuple[str, ...]]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise _Invalid(node, f"{what} must be a non-empty list")
    names = tuple(_name(item, f"an item of {what}") for item in node.value)
    for item, name in zip(node.value, names, strict=True):
        if names.count(name) > 1:
            raise _Invalid(item, f"{what} has {name!r} twice")
    return node, names


def _limits(node: yaml.Node) -> Limits:
    fields = _mapping(node, "limits", frozenset(_LIMIT_KEYS))
    values = {}
    for name, value in fields.items():
        number: int = _scalar(value, f"limits.{name}", int)
        if not 1 <= number <= _MAX_LIMIT:
            raise _Invalid(value, f"limits.{name} must be between 1 and {_MAX_LIMIT}")
        values[name] = number
    return Limits(**values)


def _rule(node: yaml.Node, what: str, *, default: bool) -> CallerRule:
    fields = _mapping(node, what, _DEFAULT_KEYS if default else _ENTRY_KEYS)
    if "service_key" not in fields:
        raise _Invalid(node, f"{what} needs service_key: true or false (may it spend the key?)")
    pattern = "*"
    if not default:
        if "id" not in fields:
            raise _Invalid(node, f"{what} needs an id")
        pattern = _name(fields["id"], "id")
        if pattern == ANONYMOUS:
            raise _Invalid(
                fields["id"],
                f"{ANONYMOUS!r} is the caller without identity: the default applies to it",
            )
    models = None
    if "models" in fields:
        models = _names(fields["models"], "models")[1]
    return CallerRule(
        pattern=pattern,
        models=models,
        service_key=_scalar(fields["service_key"], "service_key", bool),
        limits=_limits(fields["limits"]) if "limits" in fields else Limits(),
        label=OTHER_LABEL if default else pattern,
        allow=_scalar(fields["allow"], "allow", bool) if "allow" in fields else True,
    )


def _policy(root: yaml.Node, source: str) -> Policy:
    fields = _mapping(root, "the policy", _TOP_KEYS)
    if "default" not in fields:
        raise _Invalid(root, "the policy needs a default entry (for callers no entry names)")
    rules: list[CallerRule] = []
    if "callers" in fields:
        callers = fields["callers"]
        if not isinstance(callers, yaml.SequenceNode):
            raise _Invalid(callers, "callers must be a list")
        seen: dict[str, int] = {}
        for index, entry in enumerate(callers.value):
            rule = _rule(entry, f"callers[{index}]", default=False)
            if rule.pattern in seen:
                raise _Invalid(
                    entry, f"id {rule.pattern!r} is already the id of callers[{seen[rule.pattern]}]"
                )
            seen[rule.pattern] = index
            rules.append(rule)
    fallbacks: dict[str, tuple[str, ...]] = {}
    if "fallbacks" in fields:
        node = fields["fallbacks"]
        if not isinstance(node, yaml.MappingNode):
            raise _Invalid(node, "fallbacks must be a mapping of model -> [model, ...]")
        for key, value in node.value:
            model = _name(key, "a model of fallbacks")
            if model in fallbacks:
                raise _Invalid(key, f"fallbacks has {model!r} twice")
            _, others = _names(value, f"fallbacks[{model!r}]")
            if model in others:
                raise _Invalid(value, f"{model!r} cannot fall back to itself")
            fallbacks[model] = others
    return Policy(
        rules=tuple(rules),
        default=_rule(fields["default"], "default", default=True),
        fallbacks=MappingProxyType(fallbacks),
        source=source,
    )


# --------------------------------------------------------------------------- #
# Watching the file
# --------------------------------------------------------------------------- #

_Signature = tuple[object, ...] | None


def _signature(path: Path) -> _Signature:
    """What changes when the file does: the link itself, where it leads, and that file.

    A ConfigMap volume swaps its ``..data`` symlink: the path's own entry stays,
    the resolved file (its inode, size, times) is new.
    """
    try:
        link = os.lstat(path)
        target = os.stat(path)
        resolved = os.path.realpath(path)
    except OSError:
        return None
    return (
        resolved,
        link.st_ino,
        link.st_mtime_ns,
        target.st_dev,
        target.st_ino,
        target.st_size,
        target.st_mtime_ns,
        target.st_ctime_ns,
    )


class PolicyFile:
    """The policy in a file, reloaded when the file changes.

    Built at start-up, where a bad file raises PolicyError. `run` (an asyncio
    task) polls every `interval` seconds; on a change it loads the file: a good
    one becomes `policy` and is handed to `on_reload`, a bad one keeps the last
    good policy and is logged once at ERROR. Each reload's result, ``ok`` or
    ``error``, goes to `on_result` (the metrics' ``bridge_policy_reloads_total``).
    """

    def __init__(
        self,
        path: Path | str,
        on_reload: Callable[[Policy], None] | None = None,
        *,
        interval: float = DEFAULT_POLICY_RELOAD_INTERVAL,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError("the reload interval must be > 0")
        self.path = Path(path)
        self.interval = interval
        self._on_reload = on_reload
        self._on_result = on_result
        self._seen = _signature(self.path)
        self.policy: Policy = load_policy(self.path)

    def check(self) -> bool:
        """Reload if the file changed since the last look; True if a new policy is in force."""
        seen = _signature(self.path)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc)
            self._count("error")
            return False
        self.policy = policy
        log.info("policy reloaded from %s (%d caller entries)", self.path, len(policy.rules))
        self._count("ok")
        if self._on_reload is not None:
            self._on_reload(policy)
        return True

    def _count(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)

    async def run(self) -> None:
        """Poll until cancelled; a failing callback is logged, never ends the watch."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:
                log.exception("policy reload: a callback failed")

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[PolicyFile]:
        """`run` as a task for the body's duration."""
        task = asyncio.create_task(self.run(), name="policy-file")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
