"""Tests for bridge.config (and the help text of bridge.cli): defaults, flags
over environment variables, the service key's two sources, validation errors
that name the setting, and secrets that never print."""

from __future__ import annotations

import argparse
import dataclasses
import math
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
    ListenAddress,
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
    assert config.listen == ListenAddress("0.0.0.0", 50051)
    assert config.listen.text == DEFAULT_LISTEN == "0.0.0.0:50051"
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
    ("listen", "127.0.0.1:1", "[::]:2", ListenAddress("127.0.0.1", 1), ListenAddress("::", 2)),
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
    (
        "metrics_listen",
        "127.0.0.1:9464",
        "[::]:9090",
        ListenAddress("127.0.0.1", 9464),
        ListenAddress("::", 9090),
    ),
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
]
# caller limits (bridge/quotas.py)
SAMPLES += [
    (
        "limits_redis_url",
        "redis://a:6379/0",
        "rediss://b:6380/1",
        Secret("redis://a:6379/0"),
        Secret("rediss://b:6380/1"),
    ),
    ("limits_redis_timeout", "0.1", "0.2", 0.1, 0.2),
    _as_given("limits_failure_mode", "closed", "open"),
    ("token_estimate", "256", "512", 256, 512),
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
    ("argv", "environ", "message"),
    [
        (
            ["--upstream-url", "api.myrouter.example/v1"],
            {},
            "--upstream-url (MYROUTER_BASE_URL): must be an http:// or https:// URL",
        ),
        (
            ["--upstream-url", "ftp://api.example"],
            {},
            "--upstream-url (MYROUTER_BASE_URL): must be an http:// or https:// URL",
        ),
        (
            [],
            {"MYROUTER_BASE_URL": "localhost:8080"},
            "--upstream-url (MYROUTER_BASE_URL): must be an http:// or https:// URL",
        ),
        (
            [],
            {"BRIDGE_LISTEN": "50051"},
            "--listen (BRIDGE_LISTEN): must be host:port, got '50051'",
        ),
        (
            [],
            {"BRIDGE_METRICS_LISTEN": "host:http"},
            "--metrics-listen (BRIDGE_METRICS_LISTEN): must be host:port, got 'host:http'",
        ),
        (
            ["--connect-timeout", "-1"],
            {},
            "--connect-timeout (BRIDGE_CONNECT_TIMEOUT): must be a positive number",
        ),
        (
            ["--connect-timeout", "0"],
            {},
            "--connect-timeout (BRIDGE_CONNECT_TIMEOUT): must be a positive number",
        ),
        (
            ["--request-timeout", "-0.5"],
            {},
            "--request-timeout (BRIDGE_REQUEST_TIMEOUT): must be a positive number",
        ),
        (
            ["--request-timeout", "inf"],
            {},
            "--request-timeout (BRIDGE_REQUEST_TIMEOUT): must be a positive number",
        ),
        (
            ["--stream-idle-timeout", "nan"],
            {},
            "--stream-idle-timeout (BRIDGE_STREAM_IDLE_TIMEOUT): must be a positive number",
        ),
        (
            [],
            {"BRIDGE_STREAM_IDLE_TIMEOUT": "-5"},
            "--stream-idle-timeout (BRIDGE_STREAM_IDLE_TIMEOUT): must be a positive number",
        ),
        (
            ["--max-upstream-connections", "0"],
            {},
            "--max-upstream-connections (BRIDGE_MAX_UPSTREAM_CONNECTIONS): must be >= 1",
        ),
        (
            [],
            {"BRIDGE_LOG_LEVEL": "verbose"},
            "--log-level (BRIDGE_LOG_LEVEL): must be one of DEBUG, INFO, WARNING, ERROR",
        ),
        (
            [],
            {"BRIDGE_CONNECT_TIMEOUT": "five"},
            "--connect-timeout (BRIDGE_CONNECT_TIMEOUT): must be a number, got 'five'",
        ),
        (
            [],
            {"BRIDGE_REQUEST_TIMEOUT": "10s"},
            "--request-timeout (BRIDGE_REQUEST_TIMEOUT): must be a number, got '10s'",
        ),
        (
            [],
            {"BRIDGE_MAX_UPSTREAM_CONNECTIONS": "1.5"},
            "--max-upstream-connections (BRIDGE_MAX_UPSTREAM_CONNECTIONS): "
            "must be an integer, got '1.5'",
        ),
        (
            [],
            {"BRIDGE_MAX_CONCURRENT_RPCS": "abc"},
            "--max-concurrent-rpcs (BRIDGE_MAX_CONCURRENT_RPCS): must be an integer, got 'abc'",
        ),
        (
            [],
            {"BRIDGE_REFLECTION": "maybe"},
            "--reflection (BRIDGE_REFLECTION): must be true or false, got 'maybe'",
        ),
        (
            ["--workers", "0"],
            {},
            "--workers (BRIDGE_WORKERS): must be in [1, 256]",
        ),
        (
            [],
            {"BRIDGE_TLS_CERT_FILE": "/c.pem"},
            "--tls-cert-file (BRIDGE_TLS_CERT_FILE) and --tls-key-file (BRIDGE_TLS_KEY_FILE) "
            "go together",
        ),
        (
            ["--tls-client-ca-file", "/ca.pem"],
            {},
            "--tls-client-ca-file (BRIDGE_TLS_CLIENT_CA_FILE) (mTLS) needs "
            "--tls-cert-file (BRIDGE_TLS_CERT_FILE) and --tls-key-file (BRIDGE_TLS_KEY_FILE)",
        ),
        (
            ["--keepalive-timeout", "0"],
            {},
            "--keepalive-timeout (BRIDGE_KEEPALIVE_TIMEOUT) must be > 0 unless "
            "--keepalive-time (BRIDGE_KEEPALIVE_TIME) is 0",
        ),
    ],
)
def test_invalid_value_raises_config_error_naming_flag_and_variable(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_serve_config(argv, environ)

    assert str(caught.value) == message


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
    ],
)
def test_invalid_config_field_raises_naming_it(field: str, value: object) -> None:
    # a setting by its flag and variable; deadline_margin, no setting, by its field
    name = f"{BY_NAME[field].flag} ({BY_NAME[field].env})" if field in BY_NAME else field
    with pytest.raises(ConfigError) as caught:
        BridgeConfig(**{field: value})  # type: ignore[arg-type]

    assert str(caught.value).startswith(f"{name}: must be ")


@pytest.mark.parametrize("text", ["no-port", "50051", "host:", "host:http", "host:65536", ""])
def test_listen_address_refuses_what_is_not_host_and_port(text: str) -> None:
    with pytest.raises(ValueError, match="must be host:port"):
        ListenAddress.parse(text)


@pytest.mark.parametrize(
    ("text", "host", "port", "written"),
    [
        ("0.0.0.0:50051", "0.0.0.0", 50051, "0.0.0.0:50051"),
        ("[::]:0", "::", 0, "[::]:0"),
        ("[::1]:9090", "::1", 9090, "[::1]:9090"),
        (":7", "", 7, ":7"),
        ("localhost:65535", "localhost", 65535, "localhost:65535"),
    ],
)
def test_listen_address_is_parsed_once_and_written_back_as_given(
    text: str, host: str, port: int, written: str
) -> None:
    address = ListenAddress.parse(text)

    assert (address.host, address.port) == (host, port)
    assert address.text == str(address) == written
    assert address.with_port(1234) == ListenAddress(host, 1234)


@pytest.mark.parametrize("given", ["INFO", "info", "Info", "dEbUg"])
def test_log_level_accepts_any_case(given: str) -> None:
    expected = given.upper()
    assert parse_serve_config(["--log-level", given], {}).log_level == expected
    assert parse_serve_config([], {"BRIDGE_LOG_LEVEL": given}).log_level == expected


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_config_is_frozen() -> None:
    config = BridgeConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = ListenAddress("x", 1)  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Secrets never print
# --------------------------------------------------------------------------- #


def test_repr_and_str_of_config_do_not_contain_the_key() -> None:
    config = parse_serve_config([], {"MYROUTER_API_KEY": KEY})

    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert "0123456789abcdef" not in repr(config)
    assert "api_key=" in repr(config)  # the field is shown, its value is not


def test_repr_of_config_does_not_contain_the_limits_store_password() -> None:
    config = BridgeConfig(limits_redis_url=Secret("redis://user:hunter2@redis:6379/0"))

    assert "hunter2" not in repr(config)
    assert "limits_redis_url=" in repr(config)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"limits_redis_url": Secret("http://redis:6379")},
            r"--limits-redis-url \(BRIDGE_LIMITS_REDIS_URL\): must be a redis://",
        ),
        (
            {"limits_redis_url": Secret("")},
            r"--limits-redis-url \(BRIDGE_LIMITS_REDIS_URL\): must be a redis://",
        ),
        (
            {"limits_redis_timeout": 0.0},
            r"--limits-redis-timeout \(BRIDGE_LIMITS_REDIS_TIMEOUT\): must be in \(0, 5\]",
        ),
        (
            {"limits_redis_timeout": math.nan},
            r"--limits-redis-timeout \(BRIDGE_LIMITS_REDIS_TIMEOUT\): must be in \(0, 5\]",
        ),
        (
            {"limits_redis_timeout": 6.0},
            r"--limits-redis-timeout \(BRIDGE_LIMITS_REDIS_TIMEOUT\): must be in \(0, 5\]",
        ),
        (
            {"limits_failure_mode": "maybe"},
            r"--limits-failure-mode \(BRIDGE_LIMITS_FAILURE_MODE\): must be",
        ),
        ({"token_estimate": 0}, r"--token-estimate \(BRIDGE_TOKEN_ESTIMATE\): must be >= 1"),
    ],
)
def test_limits_settings_out_of_range_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BridgeConfig(**changes)  # type: ignore[arg-type]


def test_limits_store_urls_of_each_scheme_are_accepted() -> None:
    for url in ("redis://h:6379/0", "rediss://u:p@h:6380", "unix:///run/redis.sock"):
        assert BridgeConfig(limits_redis_url=Secret(url)).limits_redis_url == Secret(url)


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


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--connect-timeout", "x"], "argument --connect-timeout: must be a number, got 'x'"),
        (
            ["--max-concurrent-rpcs", "abc"],
            "argument --max-concurrent-rpcs: must be an integer, got 'abc'",
        ),
        (["--reflection", "maybe"], "argument --reflection: must be true or false, got 'maybe'"),
        (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        (["--listen", "50051"], "argument --listen: must be host:port, got '50051'"),
    ],
)
def test_bad_flag_values_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_serve_config(argv, {})
    assert caught.value.code == 2
    assert error in capsys.readouterr().err.splitlines()[-1]


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
    with pytest.raises(ConfigError) as caught:
        parse_serve_config([], {"BRIDGE_CALLER_IDENTITY": "header:cookie"})
    assert str(caught.value).startswith(
        "--caller-identity (BRIDGE_CALLER_IDENTITY): header:cookie: a credential"
    )


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--caller-identity", "header:x-id", "--propagate-headers", "x-id"], "never forwarded"),
        (["--propagate-headers", "x-forwarded-client-cert"], "never forwarded upstream"),
        (["--policy-reload-interval", "0"], "--policy-reload-interval"),
        (["--policy-reload-interval", "nan"], "--policy-reload-interval"),
        (
            ["--forward-caller-header", "authorization"],
            r"--forward-caller-header \(BRIDGE_FORWARD_CALLER_HEADER\): 'authorization'",
        ),
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
