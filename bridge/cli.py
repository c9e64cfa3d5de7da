"""`myrouter-bridge` and `python -m bridge`: serve, chat, models, health, upstream, demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from .config import ConfigError, add_serve_arguments, config_from_args
from .logs import setup_logging

__all__ = ["DEFAULT_TARGET", "HEALTH_TIMEOUT", "build_parser", "main"]

DEFAULT_TARGET = "localhost:50051"
HEALTH_TIMEOUT = 5.0
"""`health`'s default deadline: a probe that hangs is worse than one that fails."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="myrouter-bridge",
        description="gRPC bridge for MyRouter's OpenAI-compatible chat API.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bridge", allow_abbrev=False)
    add_serve_arguments(serve)

    for name, text in (("chat", "send a prompt and stream the answer"), ("models", "list models")):
        sub = commands.add_parser(
            name,
            help=text,
            allow_abbrev=False,
            epilog="The caller's token is read from the environment variable MYROUTER_TOKEN "
            "and sent as the authorization metadata.",
        )
        _add_connection_arguments(sub, timeout_help="deadline of the call, in seconds")
        if name == "chat":
            sub.add_argument(
                "--model",
                default=os.environ.get("MYROUTER_MODEL"),
                help="model id [env MYROUTER_MODEL]; see `models`",
            )
            sub.add_argument("--system", help="a system message to send first")
            sub.add_argument("--max-tokens", type=int)
            sub.add_argument("--temperature", type=float)
            sub.add_argument("--request-id", help="x-request-id to send")
            sub.add_argument(
                "--extra",
                type=_json_object,
                help="provider-specific parameters as a JSON object, e.g. '{\"seed\": 7}'",
            )
            sub.add_argument("--json", action="store_true", help="print each chunk as a JSON line")
            sub.add_argument(
                "prompt", nargs="*", help="the prompt; read from stdin if absent or '-'"
            )

    health = commands.add_parser(
        "health",
        help="ask a bridge's grpc.health.v1 service; exit 0 only if it is SERVING",
        allow_abbrev=False,
        epilog="Prints the status (SERVING, NOT_SERVING, ...). Exit status: 0 SERVING; "
        "1 any other status, or no answer; 2 a usage error. Fit for exec probes.",
    )
    _add_connection_arguments(
        health, timeout_default=HEALTH_TIMEOUT, timeout_help="seconds to wait for the answer"
    )
    health.add_argument(
        "--service",
        default="",
        help="the service to ask about, e.g. myrouter.chat.v1.ChatService "
        "[default: the whole server]",
    )

    commands.add_parser(
        "upstream",
        help="run the embedded MyRouter API (for demos and tests); see `upstream --help`",
    )
    commands.add_parser("demo", help="run the embedded upstream and the bridge; stream an answer")
    return parser


def _add_connection_arguments(
    sub: argparse.ArgumentParser, *, timeout_help: str, timeout_default: float | None = None
) -> None:
    """--target, --timeout and the TLS options that chat, models and health share."""
    sub.add_argument(
        "--target",
        default=os.environ.get("BRIDGE_TARGET", DEFAULT_TARGET),
        help=f"bridge address [env BRIDGE_TARGET, default {DEFAULT_TARGET}]",
    )
    sub.add_argument("--timeout", type=float, default=timeout_default, help=timeout_help)
    sub.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's CAs"
    )
    sub.add_argument(
        "--ca-file",
        type=Path,
        help="connect with TLS, trusting the CA certificates (PEM) in this file",
    )
    sub.add_argument(
        "--cert-file",
        type=Path,
        help="connect with TLS and present this client certificate chain (PEM), for a bridge "
        "with mTLS (--tls-client-ca-file); needs --key-file",
    )
    sub.add_argument("--key-file", type=Path, help="the private key (PEM) of --cert-file")


class _UsageError(Exception):
    """A command-line mistake found after parsing: one line, exit status 2."""


def _read_pem(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _UsageError(f"{flag}: cannot read {path}: {exc.strerror}") from None


def _channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials when any TLS option is given; None for plaintext."""
    from . import chat_cli

    if (args.cert_file is None) != (args.key_file is None):
        raise _UsageError("--cert-file and --key-file go together (the client certificate)")
    if not (args.tls or args.ca_file or args.cert_file):
        return None
    return chat_cli.tls_credentials(
        _read_pem(args.ca_file, "--ca-file"),
        _read_pem(args.cert_file, "--cert-file"),
        _read_pem(args.key_file, "--key-file"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["upstream"]:  # its own CLI parses the rest
        try:
            from myrouter_upstream.cli import main as upstream_main
        except ModuleNotFoundError as exc:
            return _upstream_missing(exc)
        return upstream_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        try:
            from myrouter_upstream.demo import run_demo
        except ModuleNotFoundError as exc:
            return _upstream_missing(exc)
        return run_demo()
    try:
        credentials = _channel_credentials(args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "health":
        return _health(args, credentials)
    from . import chat_cli

    token = os.environ.get("MYROUTER_TOKEN") or None
    client_cert = args.cert_file is not None
    if args.command == "models":
        return chat_cli.list_models(
            args.target,
            token=token,
            timeout=args.timeout,
            credentials=credentials,
            client_cert=client_cert,
        )
    if not args.model:
        print("error: --model is required (or set MYROUTER_MODEL); see `models`", file=sys.stderr)
        return 2
    prompt = chat_cli.read_prompt(args.prompt)
    if not prompt:
        print("error: empty prompt", file=sys.stderr)
        return 2
    _quiet_broken_pipe()
    return chat_cli.chat(
        args.target,
        model=args.model,
        prompt=prompt,
        system=args.system,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        token=token,
        request_id=args.request_id,
        extra=args.extra,
        credentials=credentials,
        client_cert=client_cert,
        as_json=args.json,
        timeout=args.timeout,
    )


def _health(args: argparse.Namespace, credentials: grpc.ChannelCredentials | None) -> int:
    """`health`: print the status; 0 only for SERVING, so that it can serve as a probe."""
    from . import chat_cli
    from .health import SERVING, check, status_name

    with chat_cli.open_channel(args.target, credentials) as channel:
        try:
            status = check(channel, args.service, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(chat_cli.describe_error(exc), file=sys.stderr)
            line = chat_cli.hint(
                exc, tls=credentials is not None, client_cert=args.cert_file is not None, token=""
            )
            if line is not None:
                print(line, file=sys.stderr)
            return 1
    print(status_name(status))
    return 0 if status == SERVING else 1


def _upstream_missing(exc: ModuleNotFoundError) -> int:
    """`upstream` and `demo` delegate to the separate myrouter_upstream package; without it, exit 2.

    Only that package's absence is a usage matter; any other missing module is a
    broken installation and keeps its traceback.
    """
    if exc.name != "myrouter_upstream":
        raise exc
    print(
        "error: `upstream` and `demo` need the myrouter_upstream package, which is not installed",
        file=sys.stderr,
    )
    return 2


def _json_object(text: str) -> dict[str, Any]:
    """argparse type for --extra: a JSON object, or a usage error naming the problem."""
    import orjson

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _quiet_broken_pipe() -> None:
    """`chat ... | head -1` must end quietly: a closed stdout is the reader's choice, not an error.

    Python ignores SIGPIPE and raises BrokenPipeError instead, which would end
    in a traceback; the default action ends the process silently, as any Unix
    filter, and the closed connection cancels the call at the bridge.
    """
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def _serve(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args, os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    from .loop import run
    from .open_files import raise_file_limit
    from .ports import BindError
    from .server import serve
    from .workers import run_workers

    raise_file_limit(config)  # before the workers, which inherit it
    try:
        if config.workers > 1:
            return run_workers(config)
        run(serve(config), config.event_loop)
    except (ConfigError, BindError) as exc:  # a file named by a setting (TLS); a busy port
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
