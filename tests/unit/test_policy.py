"""bridge.policy: the file's schema with line-numbered refusals, matching and labels, and
reloading (edits, a ConfigMap's symlink swap, a broken file that keeps the last good policy)."""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
from pathlib import Path

import pytest

from bridge.callers import ANONYMOUS
from bridge.config import ConfigError
from bridge.policy import (
    MAX_CACHED_CALLERS,
    OTHER_LABEL,
    CallerRule,
    Limits,
    Policy,
    PolicyError,
    PolicyFile,
    load_policy,
    model_allowed,
    parse_policy,
)

pytestmark = pytest.mark.timeout(30)

ISSUE_EXAMPLE = """\
callers:
  - id: "spiffe://cluster.local/ns/search/*"   # exact, or a glob with *
    models: ["myrouter/*", "openai/gpt-4o-mini"] # globs; absent means any model
    service_key: true                            # may it spend the bridge's key?
    limits:                                      # each optional
      concurrent: 20
      requests_per_minute: 600
      tokens_per_minute: 200000
      tokens_per_day: 5000000
default:                                         # any caller no entry names, anonymous included
  service_key: false
"""
RANKER = "spiffe://cluster.local/ns/search/sa/ranker"


def policy(text: str) -> Policy:
    return parse_policy(textwrap.dedent(text), "policy.yaml")


def test_the_issue_example_loads_into_typed_rules():
    loaded = policy(ISSUE_EXAMPLE)
    [rule] = loaded.rules
    assert rule == CallerRule(
        pattern="spiffe://cluster.local/ns/search/*",
        models=("myrouter/*", "openai/gpt-4o-mini"),
        service_key=True,
        limits=Limits(
            concurrent=20,
            requests_per_minute=600,
            tokens_per_minute=200000,
            tokens_per_day=5000000,
        ),
        label="spiffe://cluster.local/ns/search/*",
    )
    assert loaded.default.service_key is False and loaded.default.limits == Limits()
    assert loaded.default.models is None and loaded.default.allow is True
    assert loaded.fallbacks == {} and loaded.source == "policy.yaml"


def test_first_match_wins_and_star_crosses_slashes():
    loaded = policy(
        """\
        callers:
          - {id: "spiffe://cluster.local/ns/search/sa/ranker", service_key: false, allow: false}
          - {id: "spiffe://cluster.local/ns/search/*", service_key: true}
          - {id: "*.example", service_key: true}
        default: {service_key: false}
        """
    )
    assert loaded.rule_for(RANKER).allow is False
    assert loaded.rule_for("spiffe://cluster.local/ns/search/sa/x/y").label == (
        "spiffe://cluster.local/ns/search/*"
    )
    assert loaded.rule_for("a.b.example").label == "*.example"
    # only * is special: ? [ ] . + are literal
    assert loaded.rule_for("spiffe://cluster.local/ns/searchX/sa/x") is loaded.default
    assert loaded.rule_for("aXexample") is loaded.default


def test_labels_are_bounded_by_the_file():
    loaded = policy(ISSUE_EXAMPLE)
    assert loaded.rule_for(RANKER).label == "spiffe://cluster.local/ns/search/*"
    assert loaded.rule_for(ANONYMOUS).label == ANONYMOUS
    labels = {loaded.rule_for(f"spiffe://cluster.local/ns/other/sa/{n}").label for n in range(50)}
    assert labels == {OTHER_LABEL}


def test_the_anonymous_caller_always_gets_the_default():
    loaded = policy("""\
        callers: [{id: "*", service_key: true}]
        default: {service_key: false}
        """)
    assert loaded.rule_for("spiffe://x/y").service_key is True
    anonymous = loaded.rule_for(ANONYMOUS)
    assert anonymous.service_key is False and anonymous.label == ANONYMOUS


def test_model_globs():
    rule = policy(ISSUE_EXAMPLE).rules[0]
    assert model_allowed(rule, "myrouter/echo") and model_allowed(rule, "myrouter/a/b")
    assert model_allowed(rule, "openai/gpt-4o-mini")
    assert not model_allowed(rule, "openai/gpt-4o") and not model_allowed(rule, "myrouter")
    assert model_allowed(policy(ISSUE_EXAMPLE).default, "anything/at-all")


def test_permissive_is_the_bridge_without_a_policy():
    permissive = Policy.permissive()
    for caller in (ANONYMOUS, RANKER):
        rule = permissive.rule_for(caller)
        assert rule.allow and rule.service_key and rule.limits == Limits()
        assert model_allowed(rule, "any/model")


def test_the_lookup_cache_is_bounded_and_stays_right():
    loaded = policy(ISSUE_EXAMPLE)
    for n in range(MAX_CACHED_CALLERS + 10):
        assert loaded.rule_for(f"spiffe://x/{n}") is loaded.default
    assert loaded.rule_for(RANKER) is loaded.rules[0]
    assert len(loaded._cache) <= MAX_CACHED_CALLERS  # a peek, to prove the bound


def test_fallbacks_are_accepted_and_validated():
    loaded = policy("""\
        default: {service_key: true}
        fallbacks:
          openai/gpt-4o: [openai/gpt-4o-mini, myrouter/echo]
        """)
    assert loaded.fallbacks == {"openai/gpt-4o": ("openai/gpt-4o-mini", "myrouter/echo")}


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("callers: []\n", 1, "needs a default"),
        ("default:\n  service_key: true\n  limts: {}\n", 3, "unknown key 'limts' in default"),
        ("default: {service_key: true}\ncaller: []\n", 2, "unknown key 'caller'"),
        ("default:\n  allow: true\n", 2, "needs service_key"),
        ("default: {service_key: 1}\n", 1, "service_key must be true or false"),
        ("default: {service_key: 'yes'}\n", 1, "service_key must be true or false"),
        ("default: {service_key: true, limits: {concurrent: 0}}\n", 1, "between 1 and"),
        ("default:\n  service_key: true\n  limits:\n    tokens_per_day: 1.5\n", 4, "whole number"),
        ("default:\n  service_key: true\n  limits:\n    concurrent: true\n", 4, "whole number"),
        ("default: {service_key: true, id: x}\n", 1, "unknown key 'id'"),
        ("default: {service_key: true}\ncallers:\n  - service_key: true\n", 3, "needs an id"),
        (
            "default: {service_key: true}\ncallers:\n  - {id: anonymous, service_key: true}\n",
            3,
            "caller without identity",
        ),
        (
            "default: {service_key: true}\ncallers:\n  - {id: '', service_key: true}\n",
            3,
            "printable ASCII",
        ),
        (
            "default: {service_key: true}\ncallers:\n  - {id: 'é', service_key: true}\n",
            3,
            "printable ASCII",
        ),
        (
            "default: {service_key: true}\ncallers:\n  - {id: a, service_key: true, models: []}\n",
            3,
            "non-empty list",
        ),
        (
            "default: {service_key: true}\ncallers:\n  - {id: a, service_key: true}\n"
            "  - {id: a, service_key: false}\n",
            4,
            r"already the id of callers\[0\]",
        ),
        ("default: {service_key: true}\ncallers: {id: a}\n", 2, "callers must be a list"),
        ("default: {service_key: true}\ndefault: {service_key: true}\n", 2, "'default' twice"),
        ("default: {service_key: true}\nfallbacks: {a: [a]}\n", 2, "fall back to itself"),
        ("default: {service_key: true}\nfallbacks: {a: b}\n", 2, "non-empty list"),
        ("default: {service_key: true}\nfallbacks:\n  a: [b, b]\n", 3, "'b' twice"),
        ("default: {service_key: true\n", 2, "expected"),  # yaml's own, with its line
        ("- 1\n", 1, "the policy must be a mapping"),
        ("default: {service_key: true}\n---\ndefault: {service_key: true}\n", 3, "second"),
    ],
)
def test_bad_files_name_the_line_and_the_reason(text, line, why):
    with pytest.raises(PolicyError, match=why) as caught:
        parse_policy(text, "policy.yaml")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"policy file policy.yaml:{line}: ")
    assert isinstance(caught.value, ConfigError)  # so start-up stops with it, like any setting


def test_an_empty_or_unreadable_file(tmp_path):
    with pytest.raises(PolicyError, match="empty"):
        parse_policy("# nothing\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read it"):
        load_policy(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- #
# Reloading
# --------------------------------------------------------------------------- #

GOOD_A = "default: {service_key: true}\n"
GOOD_B = "default: {service_key: false}\n"
BROKEN = "default: {service_key: maybe}\n"


class Recorder:
    def __init__(self) -> None:
        self.policies: list[Policy] = []
        self.results: list[str] = []


def watched(path: Path) -> tuple[PolicyFile, Recorder]:
    seen = Recorder()
    return PolicyFile(path, seen.policies.append, on_result=seen.results.append), seen


def rewrite(path: Path, text: str) -> None:
    """Write `text` and make sure the change shows even within one mtime tick."""
    before = os.stat(path)
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def test_a_bad_file_refuses_start_up(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(BROKEN)
    with pytest.raises(PolicyError, match=r"policy\.yaml:1: service_key"):
        PolicyFile(path)


def test_edits_reload_and_a_broken_file_keeps_the_last_good_policy(tmp_path, caplog):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_A)
    watch, seen = watched(path)
    assert watch.policy.default.service_key is True
    assert watch.check() is False  # nothing changed
    rewrite(path, GOOD_B)
    assert watch.check() is True
    assert watch.policy.default.service_key is False and seen.policies == [watch.policy]
    good = watch.policy
    with caplog.at_level(logging.ERROR, logger="bridge.policy"):
        rewrite(path, BROKEN)
        assert watch.check() is False
        assert watch.check() is False  # once per change: one line, one count
    assert watch.policy is good
    [line] = [r for r in caplog.records if r.name == "bridge.policy"]
    assert "keeping the previous policy" in line.getMessage() and ":1:" in line.getMessage()
    path.unlink()
    assert watch.check() is False and watch.policy is good  # gone: still the last good one
    path.write_text(GOOD_A)
    assert watch.check() is True and watch.policy.default.service_key is True
    assert seen.results == ["ok", "error", "error", "ok"]


def _configmap_swap(directory: Path, text: str, name: str) -> None:
    """What the kubelet does: a new timestamped dir, then ..data swapped onto it atomically."""
    version = directory / name
    version.mkdir()
    (version / "policy.yaml").write_text(text)
    (directory / "..data_tmp").symlink_to(name)
    os.replace(directory / "..data_tmp", directory / "..data")


def test_a_configmap_symlink_swap_reloads(tmp_path):
    volume = tmp_path / "policy"
    volume.mkdir()
    _configmap_swap(volume, GOOD_A, "..2026_12_07_10_00_00.000000001")
    (volume / "policy.yaml").symlink_to("..data/policy.yaml")
    watch, seen = watched(volume / "policy.yaml")
    assert watch.policy.default.service_key is True
    # same size, and possibly the same mtime: only the target changes
    _configmap_swap(volume, GOOD_B.replace("false", "False"), "..2026_12_07_10_05_00.000000002")
    assert watch.check() is True and watch.policy.default.service_key is False
    _configmap_swap(volume, BROKEN, "..2026_12_07_10_10_00.000000003")
    assert watch.check() is False and watch.policy.default.service_key is False
    _configmap_swap(volume, GOOD_A, "..2026_12_07_10_15_00.000000004")
    assert watch.check() is True and watch.policy.default.service_key is True
    assert seen.results == ["ok", "error", "ok"]


def test_the_watch_task_reloads_while_running(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_A)

    async def scenario() -> list[str]:
        reloaded = asyncio.Event()
        watch = PolicyFile(path, lambda _: reloaded.set(), interval=0.01)
        async with watch.watching():
            in_use = watch.policy.rule_for("spiffe://x/y")  # a caller holding the old rule
            rewrite(path, GOOD_B)
            await asyncio.wait_for(reloaded.wait(), 10)
        assert in_use.service_key is True  # rules in use are values: the old one is unchanged
        return [str(watch.policy.default.service_key)]

    assert asyncio.run(scenario()) == ["False"]


def test_a_failing_callback_does_not_end_the_watch(tmp_path, caplog):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_A)
    calls: list[Policy] = []

    async def scenario() -> None:
        called: asyncio.Queue[Policy] = asyncio.Queue()

        def callback(new: Policy) -> None:
            calls.append(new)
            called.put_nowait(new)
            if len(calls) == 1:
                raise RuntimeError("boom")

        watch = PolicyFile(path, callback, interval=0.01)
        async with watch.watching():
            rewrite(path, GOOD_B)
            await called.get()
            rewrite(path, GOOD_A)
            await called.get()

    with caplog.at_level(logging.ERROR, logger="bridge.policy"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(calls) == 2 and "a callback failed" in caplog.text


def test_the_interval_must_be_positive(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_A)
    with pytest.raises(ValueError, match="interval"):
        PolicyFile(path, interval=0)
