"""The RedactingFilter on every log handler: no credential survives formatting.

That no credential reaches any output of a real bridge process, a status
message or error details is shown in tests/integration/test_secrets.py.
"""

from __future__ import annotations

import io
import logging

import pytest

from bridge.logs import RedactingFilter, install_redaction
from bridge.redaction import REDACTED
from support import CALLER_TOKEN, SERVICE_KEY

pytestmark = pytest.mark.timeout(60)


def _capturing_logger(name: str, *, redacting: bool) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(detail)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    if redacting:
        install_redaction([SERVICE_KEY], logger=logger)
    return logger, out


@pytest.mark.parametrize("redacting", [True, False])
def test_filter_scrubs_message_args_exception_and_extra_fields(redacting):
    logger, out = _capturing_logger(f"test.redaction.{redacting}", redacting=redacting)
    try:
        raise RuntimeError(f"header was Authorization: Bearer {CALLER_TOKEN}")
    except RuntimeError:
        logger.exception("key %s failed", SERVICE_KEY, extra={"detail": f"Bearer {CALLER_TOKEN}"})
    logger.debug("plain %s", "sk-abcdefgh12345678", extra={"detail": "-"})
    text = out.getvalue()
    leaked = [s for s in (SERVICE_KEY, CALLER_TOKEN, "sk-abcdefgh12345678") if s in text]
    if redacting:
        assert leaked == []
        assert REDACTED in text
        assert "RuntimeError" in text  # the traceback is kept, only the secret is gone
    else:
        assert leaked  # the test can fail: without the filter the secrets are there


def test_install_redaction_does_not_stack_filters():
    logger, _ = _capturing_logger("test.redaction.twice", redacting=True)
    install_redaction([SERVICE_KEY], logger=logger)
    [handler] = logger.handlers
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
