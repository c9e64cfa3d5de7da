"""Tests for bridge.redaction: known secrets removed exactly, token-shaped text
removed by shape, and harmless inputs left intact."""

from __future__ import annotations

import pytest

from bridge.redaction import REDACTED, redact

SERVICE_KEY = "mr-live-7f3a9c1e5b2d4f60"


# --------------------------------------------------------------------------- #
# Exact secrets
# --------------------------------------------------------------------------- #


def test_exact_secret_is_removed() -> None:
    text = f"Incorrect API key provided: {SERVICE_KEY}."

    assert redact(text, [SERVICE_KEY]) == f"Incorrect API key provided: {REDACTED}."


def test_every_occurrence_of_a_secret_is_removed() -> None:
    text = f"{SERVICE_KEY} and again {SERVICE_KEY}"

    assert redact(text, [SERVICE_KEY]) == f"{REDACTED} and again {REDACTED}"


def test_several_secrets_are_all_removed() -> None:
    text = "caller token tok_ABCDEF, service key svc_123456"

    assert redact(text, ["tok_ABCDEF", "svc_123456"]) == (
        f"caller token {REDACTED}, service key {REDACTED}"
    )


def test_secret_embedded_in_a_word_is_still_removed() -> None:
    assert redact("url?key=abcd1234&x=1", ["abcd1234"]) == f"url?key={REDACTED}&x=1"


def test_secrets_may_be_any_iterable() -> None:
    assert redact("a secret-value b", (s for s in ["secret-value"])) == f"a {REDACTED} b"


def test_overlapping_secrets_leave_no_part_of_the_longer_one() -> None:
    result = redact("key=abcd-efgh-ijkl", ["abcd", "abcd-efgh-ijkl"])

    assert "efgh" not in result


# --------------------------------------------------------------------------- #
# Shapes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {REDACTED}"),
        ("authorization: bearer xyz", f"authorization: bearer {REDACTED}"),
        ("BEARER    tok", f"BEARER    {REDACTED}"),
        (
            "headers={'Authorization': 'Bearer eyJhbGci.eyJzdWIi.sig', 'x': 1}",
            f"headers={{'Authorization': 'Bearer {REDACTED}', 'x': 1}}",
        ),
        ('"Bearer tok1", "Bearer tok2"', f'"Bearer {REDACTED}", "Bearer {REDACTED}"'),
        ("Bearer tok;next", f"Bearer {REDACTED};next"),
    ],
)
def test_bearer_tokens_are_removed_keeping_the_scheme(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Incorrect API key provided: sk-proj-AbC123xyz_789.",
            f"Incorrect API key provided: {REDACTED}.",
        ),
        ("sk-or-v1-0123456789abcdef", REDACTED),
        ("key=sk-12345678", f"key={REDACTED}"),
        ("pk-live_ABCDEFGH and rk-test-12345678", f"{REDACTED} and {REDACTED}"),
        ("SK-ABCDEFGHIJ", REDACTED),
    ],
)
def test_provider_style_keys_are_removed_by_shape(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sk-short",  # fewer than 8 characters after the prefix
        "task-management-strategy",  # "sk-" inside a word
        "disk-01234567 is full",
        "the model is gpt-4o-mini",
        "bearer",  # the word alone
        "Request failed with status 429: rate limited (retry in 2s)",
    ],
)
def test_text_that_only_resembles_a_token_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_known_secret_inside_a_bearer_header_is_removed_once() -> None:
    text = f"Authorization: Bearer {SERVICE_KEY}"

    assert redact(text, [SERVICE_KEY]) == f"Authorization: Bearer {REDACTED}"


# --------------------------------------------------------------------------- #
# Short and empty secrets
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("secret", ["", "a", "ab", "abc", None])
def test_short_or_empty_secrets_are_ignored_without_damaging_text(secret: str | None) -> None:
    text = "a cab ran abc to abcd"

    assert redact(text, [secret]) == text


def test_four_character_secret_is_the_shortest_removed() -> None:
    assert redact("pin 1234 ok", ["1234"]) == f"pin {REDACTED} ok"


def test_ignored_secrets_do_not_stop_the_others() -> None:
    text = f"x {SERVICE_KEY} y"

    assert redact(text, ["", None, "ab", SERVICE_KEY]) == f"x {REDACTED} y"


def test_text_without_secrets_or_tokens_is_unchanged() -> None:
    text = "Provider returned error: upstream overloaded, try again"

    assert redact(text, [SERVICE_KEY]) == text
    assert redact("") == ""
