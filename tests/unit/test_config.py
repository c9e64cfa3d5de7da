"""Tests for bridge.config (and the help text of bridge.cli): defaults, flags
over environment variables, the service key's two sources, validation errors
that name the setting, and secrets that never print."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import NamedTuple

import pytest

from bridge.callers import IdentitySource
from bridge.cli import build_parser
from bridge.config import (
    DEFAULT_LISTEN,
    DEFAULT_UPSTREAM_URL,
    GROUPS,
    SETTINGS,
    BridgeConfig,
    ConfigError,
    Secret,
    configuration_reference,
    parse_serve_config,
)

KEY = "sk-or-v1-0123456789abcdef0123456789abcdef"


# --------------------------------------------------------------------------- #
# Defaults, flags, environment
# --------------------------------------------------------------------------- #


def test_defaults_with_no_flags_and_no_environment() -> None:
    config = parse_serve_config([], {})

    assert config == BridgeConfig()
    assert config.listen == DEFAULT_LISTEN == "0.0.0.0:50051"
    assert config.upstream_url == DEFAULT_UPSTREAM_URL
    assert config.api_key is None
    assert config.connect_timeout == 5.0
    assert config.request_timeout == 600.0
    assert config.stream_idle_timeout == 300.0
    assert config.max_upstream_connections == 1000
    assert config.log_level == "INFO"


# The flag and the variable of each setting come from its row in bridge.config.SETTINGS;
# here only what to feed them: config field, flag value, env value, expected from flag, from env


def _as_given(field: str, flag_value: str, env_value: str) -> tuple[str, str, str, str, str]:
    """The sample of a setting whose value is its text as given."""
    return (field, flag_value, env_value, flag_value, env_value)


SAMPLES = [
    _as_given("listen", "127.0.0.1:1", "[::]:2"),
    _as_given("upstream_url", "http://localhost:8080/v1", "https://env.example/api"),
    ("connect_timeout", "1.5", "2.5", 1.5, 2.5),
    ("request_timeout", "30", "45", 30.0, 45.0),
    ("stream_idle_timeout", "10", "20", 10.0, 20.0),
    ("max_upstream_connections", "8", "16", 8, 16),
    _as_given("log_level", "DEBUG", "ERROR"),
    _as_given("event_loop", "asyncio", "uvloop"),
    # reliability limits (issue 3)
    *[
        (field, "4096", "8192", 4096, 8192)
        for field in (
            "max_response_bytes",
            "max_event_bytes",
            "max_request_bytes",
            "max_messages",
            "max_concurrent_rpcs",
        )
    ],
    ("shutdown_grace", "0", "7.5", 0.0, 7.5),
    ("connect_retries", "0", "5", 0, 5),
    ("connect_retry_backoff", "0.5", "1", 0.5, 1.0),
]
# service-mesh settings
SAMPLES += [
    ("reflection", "false", "off", False, False),
    ("shutdown_delay", "2", "3.5", 2.0, 3.5),
    _as_given("metrics_listen", "127.0.0.1:9464", "[::]:9090"),
    _as_given("log_format", "json", "text"),
    ("workers", "4", "3", 4, 3),
    _as_given("opentelemetry", "on", "off"),
    ("keepalive_time", "30", "45", 30.0, 45.0),
    ("keepalive_timeout", "5", "7", 5.0, 7.0),
    ("keepalive_permit_without_calls", "false", "no", False, False),
    ("keepalive_min_client_interval", "1", "2", 1.0, 2.0),
    ("max_connection_idle", "9", "8", 9.0, 8.0),
    ("max_connection_age", "300", "60", 300.0, 60.0),
    ("max_connection_age_grace", "30", "40", 30.0, 40.0),
    ("max_concurrent_streams", "100", "200", 100, 200),
    ("upstream_ca_file", "/a/ca.pem", "/b/ca.pem", Path("/a/ca.pem"), Path("/b/ca.pem")),
    ("max_send_bytes", "4096", "8192", 4096, 8192),
    (
        "propagate_headers",
        "x-tenant,X-Team",
        " x-env ",
        ("x-tenant", "x-team"),
        ("x-env",),
    ),
]
# callers (issue 18)
SAMPLES += [
    (
        "caller_identity",
        "xfcc,tls",
        "header:L5d-Client-Id",
        (IdentitySource("xfcc", "x-forwarded-client-cert"), IdentitySource("tls")),
        (IdentitySource("header", "l5d-client-id"),),
    ),
    ("policy_file", "/a/p.yaml", "/b/p.yaml", Path("/a/p.yaml"), Path("/b/p.yaml")),
    ("policy_reload_interval", "5", "0.5", 5.0, 0.5),
    ("forward_caller_header", "X-Caller", "x-myrouter-caller", "x-caller", "x-myrouter-caller"),
]
# retries, fallbacks and breakers (issue 19)
SAMPLES += [
    ("retry_attempts", "1", "4", 1, 4),
    ("retry_backoff", "0.2", "0", 0.2, 0.0),
    ("retry_max_backoff", "5", "1.5", 5.0, 1.5),
    ("retry_budget", "0.2", "0", 0.2, 0.0),
    ("retry_budget_floor", "0", "3", 0, 3),
    ("retry_budget_window", "60", "5", 60.0, 5.0),
    (
        "fallback_models",
        "a/x=a/y|b/z, c=d",
        "e=f",
        {"a/x": ("a/y", "b/z"), "c": ("d",)},
        {"e": ("f",)},
    ),
    ("breaker_failures", "0", "3", 0, 3),
    ("breaker_failure_rate", "0.25", "1", 0.25, 1.0),
    ("breaker_min_calls", "5", "50", 5, 50),
    ("breaker_window", "10", "60", 10.0, 60.0),
    ("breaker_cooldown", "1", "30", 1.0, 30.0),
    ("breaker_probes", "1", "5", 1, 5),
]
BY_NAME = {setting.name: setting for setting in SETTINGS}


class SettingRow(NamedTuple):
    """One setting's flag and variable, a value for each, and what each parses to."""

    flag: str
    env: str
    flag_value: str
    env_value: str
    from_flag: object
    from_env: object

    @property
    def field(self) -> str:
        return self.flag[2:].replace("-", "_")


SETTING_ROWS = [
    SettingRow._make((BY_NAME[field].flag, BY_NAME[field].env, *values))
    for field, *values in SAMPLES
]
SETTING_IDS = [row[0] for row in SAMPLES]


@pytest.mark.parametrize("row", SETTING_ROWS, ids=SETTING_IDS)
def test_flag_wins_over_environment(row: SettingRow) -> None:
    config = parse_serve_config([row.flag, row.flag_value], {row.env: row.env_value})

    assert getattr(config, row.field) == row.from_flag


@pytest.mark.parametrize("row", SETTING_ROWS, ids=SETTING_IDS)
def test_environment_is_used_without_a_flag(row: SettingRow) -> None:
    config = parse_serve_config([], {row.env: row.env_value})

    assert getattr(config, row.field) == row.from_env
    assert type(getattr(config, row.field)) is type(row.from_env)


# settings valid only together, tested by test_tls_files_from_flags_and_environment
TLS_TRIO = {"BRIDGE_TLS_CERT_FILE", "BRIDGE_TLS_KEY_FILE", "BRIDGE_TLS_CLIENT_CA_FILE"}


def test_tls_files_from_flags_and_environment() -> None:
    env = {
        "BRIDGE_TLS_CERT_FILE": "/env/cert.pem",
        "BRIDGE_TLS_KEY_FILE": "/env/key.pem",
        "BRIDGE_TLS_CLIENT_CA_FILE": "/env/ca.pem",
    }
    from_env = parse_serve_config([], env)
    assert from_env.tls_cert_file == Path("/env/cert.pem")
    assert from_env.tls_key_file == Path("/env/key.pem")
    assert from_env.tls_client_ca_file == Path("/env/ca.pem")
    flags = ["--tls-cert-file", "/f/cert.pem", "--tls-key-file", "/f/key.pem"]
    from_flags = parse_serve_config(flags, env)
    assert from_flags.tls_cert_file == Path("/f/cert.pem")
    assert from_flags.tls_key_file == Path("/f/key.pem")
    assert from_flags.tls_client_ca_file == Path("/env/ca.pem")


def test_every_environment_source_is_covered_by_these_tests() -> None:
    # the service key's two sources have tests of their own, below
    plain = {setting.env for setting in SETTINGS if not setting.secret}
    assert plain == {row.env for row in SETTING_ROWS} | TLS_TRIO
    assert [setting.env for setting in SETTINGS if setting.secret] == ["MYROUTER_API_KEY"]


@pytest.mark.parametrize("env", [row.env for row in SETTING_ROWS])
def test_empty_environment_variable_means_unset(env: str) -> None:
    assert parse_serve_config([], {env: ""}) == BridgeConfig()


def test_unrelated_environment_is_ignored() -> None:
    assert parse_serve_config([], {"PATH": "/bin", "LISTEN": "x"}) == BridgeConfig()


# --------------------------------------------------------------------------- #
# The service key
# --------------------------------------------------------------------------- #


def test_service_key_from_environment() -> None:
    config = parse_serve_config([], {"MYROUTER_API_KEY": KEY})

    assert config.api_key == Secret(KEY)


def test_service_key_from_environment_is_stripped() -> None:
    config = parse_serve_config([], {"MYROUTER_API_KEY": f"  {KEY}\n"})

    assert config.api_key is not None and config.api_key.value == KEY


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_blank_service_key_in_environment_means_no_key(value: str) -> None:
    assert parse_serve_config([], {"MYROUTER_API_KEY": value}).api_key is None


def test_service_key_from_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n", encoding="utf-8")

    config = parse_serve_config(["--api-key-file", str(key_file)], {})

    assert config.api_key is not None and config.api_key.value == KEY


def test_service_key_file_wins_over_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("file-key-value", encoding="utf-8")

    config = parse_serve_config(
        ["--api-key-file", str(key_file)], {"MYROUTER_API_KEY": "env-key-value"}
    )

    assert config.api_key == Secret("file-key-value")


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_service_key_file_is_refused(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match="--api-key-file") as caught:
        parse_serve_config(["--api-key-file", str(key_file)], {"MYROUTER_API_KEY": KEY})

    assert "empty" in str(caught.value)


def test_empty_secret_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="service key"):
        BridgeConfig(api_key=Secret(""))


def test_there_is_no_flag_for_the_key_itself() -> None:
    with pytest.raises(SystemExit):
        parse_serve_config(["--api-key", KEY], {})


def test_missing_service_key_file_is_refused_naming_flag_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"

    with pytest.raises(ConfigError, match="--api-key-file") as caught:
        parse_serve_config(["--api-key-file", str(missing)], {})

    assert str(missing) in str(caught.value)


# --------------------------------------------------------------------------- #
# Invalid values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("argv", "environ", "setting"),
    [
        (["--upstream-url", "api.myrouter.example/v1"], {}, "upstream_url"),
        (["--upstream-url", "ftp://api.example"], {}, "upstream_url"),
        ([], {"MYROUTER_BASE_URL": "localhost:8080"}, "upstream_url"),
        (["--listen", "50051"], {}, "listen"),
        (["--connect-timeout", "-1"], {}, "connect_timeout"),
        (["--connect-timeout", "0"], {}, "connect_timeout"),
        (["--request-timeout", "-0.5"], {}, "request_timeout"),
        (["--request-timeout", "inf"], {}, "request_timeout"),
        (["--stream-idle-timeout", "nan"], {}, "stream_idle_timeout"),
        ([], {"BRIDGE_STREAM_IDLE_TIMEOUT": "-5"}, "stream_idle_timeout"),
        (["--max-upstream-connections", "0"], {}, "max_upstream_connections"),
        ([], {"BRIDGE_LOG_LEVEL": "verbose"}, "log_level"),
        ([], {"BRIDGE_CONNECT_TIMEOUT": "five"}, "BRIDGE_CONNECT_TIMEOUT"),
        ([], {"BRIDGE_REQUEST_TIMEOUT": "10s"}, "BRIDGE_REQUEST_TIMEOUT"),
        ([], {"BRIDGE_MAX_UPSTREAM_CONNECTIONS": "1.5"}, "BRIDGE_MAX_UPSTREAM_CONNECTIONS"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_setting(
    argv: list[str], environ: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_serve_config(argv, environ)

    assert setting in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deadline_margin", -0.1),
        ("deadline_margin", 10.0),
        ("max_response_bytes", 1023),
        ("max_event_bytes", 1023),
        ("max_request_bytes", 0),
        ("max_messages", 0),
        ("max_concurrent_rpcs", 0),
        ("shutdown_grace", -1.0),
        ("shutdown_grace", float("inf")),
        ("connect_retries", -1),
        ("connect_retries", 11),
        ("connect_retry_backoff", float("nan")),
        ("listen", "no-port"),
    ],
)
def test_invalid_config_field_raises_naming_it(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        BridgeConfig(**{field: value})  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_config_is_frozen() -> None:
    config = BridgeConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = "x:1"  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Secrets never print
# --------------------------------------------------------------------------- #


def test_repr_and_str_of_config_do_not_contain_the_key() -> None:
    config = parse_serve_config([], {"MYROUTER_API_KEY": KEY})

    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert "0123456789abcdef" not in repr(config)
    assert "api_key=" in repr(config)  # the field is shown, its value is not


def test_str_and_repr_of_secret_do_not_contain_the_key() -> None:
    secret = Secret(KEY)

    assert KEY not in str(secret)
    assert KEY not in repr(secret)
    assert KEY not in f"{secret}"
    assert KEY not in f"{secret!r}"
    assert secret.value == KEY


# --------------------------------------------------------------------------- #
# The CLI's help
# --------------------------------------------------------------------------- #


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*argv, "--help"])
    assert caught.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "env",
    sorted({setting.env for setting in SETTINGS} | {"MYROUTER_API_KEY"}),
)
def test_serve_help_mentions_each_environment_variable(
    capsys: pytest.CaptureFixture[str], env: str
) -> None:
    assert env in _help(capsys, "serve")


@pytest.mark.parametrize(
    ("command", "env"),
    [("chat", "BRIDGE_TARGET"), ("chat", "MYROUTER_MODEL"), ("models", "BRIDGE_TARGET")],
)
def test_client_help_mentions_its_environment_variables(
    capsys: pytest.CaptureFixture[str], command: str, env: str
) -> None:
    assert env in _help(capsys, command)


@pytest.mark.parametrize("command", ["chat", "models"])
def test_client_help_mentions_the_token_variable(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert "MYROUTER_TOKEN" in _help(capsys, command)


# --------------------------------------------------------------------------- #
# The one table of settings, and the reference generated from it
# --------------------------------------------------------------------------- #

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"


def _serve_flags() -> list[str]:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    return [
        flag
        for action in serve._actions
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    ]


def test_committed_reference_is_the_generated_one() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == configuration_reference(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_reference_says_it_is_generated_and_by_what() -> None:
    head = configuration_reference().splitlines()[0]
    assert "make docs" in head
    assert "bridge/config.py" in head


@pytest.mark.parametrize("flag", _serve_flags())
def test_every_serve_flag_appears_in_the_reference(flag: str) -> None:
    assert f"`{flag}`" in configuration_reference()


def test_every_setting_has_one_flag_and_one_variable_of_its_own() -> None:
    flags = [setting.flag for setting in SETTINGS]
    envs = [setting.env for setting in SETTINGS]
    assert len(set(flags)) == len(flags) == len(_serve_flags())
    assert len(set(envs)) == len(envs)
    assert set(flags) == set(_serve_flags())


@pytest.mark.parametrize("setting", SETTINGS, ids=[setting.name for setting in SETTINGS])
def test_each_setting_row_in_the_reference(setting) -> None:
    [row] = [line for line in configuration_reference().splitlines() if f"`{setting.flag}`" in line]
    assert f"`{setting.env}`" in row
    assert setting.help in row


def test_every_section_has_settings_and_every_setting_a_section() -> None:
    assert {setting.group for setting in SETTINGS} == set(GROUPS)
    for title in GROUPS:
        assert f"\n## {title}\n" in configuration_reference()


def test_a_per_machine_default_is_documented_in_words() -> None:
    # docs/configuration.md must not depend on the machine that generated it
    [workers] = [line for line in configuration_reference().splitlines() if "`--workers`" in line]
    assert "the number of cores" in workers


def test_deadline_margin_is_no_setting() -> None:
    assert "deadline_margin" not in {setting.name for setting in SETTINGS}
    with pytest.raises(SystemExit):
        parse_serve_config(["--deadline-margin", "1"], {})


def test_bad_flag_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--connect-timeout", "x"], ["--reflection", "maybe"], ["--log-format", "xml"]):
        with pytest.raises(SystemExit) as caught:
            parse_serve_config(argv, {})
        assert caught.value.code == 2
        assert argv[0] in capsys.readouterr().err


# --------------------------------------------------------------------------- #
# Callers: identity sources, policy reloads, the forwarded caller header
# --------------------------------------------------------------------------- #


def test_caller_identity_defaults_to_tls_and_no_policy() -> None:
    config = BridgeConfig()
    assert config.caller_identity == (IdentitySource("tls"),)
    assert config.policy_file is None and config.forward_caller_header is None


def test_a_bad_identity_source_names_the_flag_or_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_serve_config(["--caller-identity", "tls,tsl"], {})
    assert "argument --caller-identity: unknown identity source 'tsl'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"^BRIDGE_CALLER_IDENTITY: header:cookie: a credential"):
        parse_serve_config([], {"BRIDGE_CALLER_IDENTITY": "header:cookie"})


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--caller-identity", "header:x-id", "--propagate-headers", "x-id"], "never forwarded"),
        (["--propagate-headers", "x-forwarded-client-cert"], "never forwarded upstream"),
        (["--policy-reload-interval", "0"], "--policy-reload-interval"),
        (["--policy-reload-interval", "nan"], "--policy-reload-interval"),
        (["--forward-caller-header", "authorization"], "--forward-caller-header: 'authorization'"),
        (["--forward-caller-header", "traceparent"], "already a trace, propagated"),
        (["--forward-caller-header", "x-a", "--propagate-headers", "x-a"], "already a trace"),
        (
            ["--forward-caller-header", "x-id", "--caller-identity", "header:x-id"],
            "identity header",
        ),
        (["--forward-caller-header", "x-forwarded-client-cert"], "never forwarded"),
    ],
)
def test_caller_settings_that_cannot_work_are_refused(argv: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_serve_config(argv, {})
