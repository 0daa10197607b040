"""Outcome classification, Retry-After, redaction and the back-off schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from app.notify.deliver import RetryPolicy
from app.notify.http import pinned_request
from app.notify.result import from_status, parse_retry_after, redact, retry
from app.notify.webhook import request_headers


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (425, "retry"),
        (429, "retry"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
        (422, "failed"),
    ],
)
def test_status_classification(status: int, outcome: str) -> None:
    assert from_status(status, f"HTTP {status}").outcome == outcome


def test_retry_after_forms() -> None:
    now = datetime(2026, 4, 28, 2, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Tue, 28 Apr 2026 02:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 28 Apr 2026 01:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("999999") == 3600.0  # capped
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert from_status(429, "busy", "12").retry_after == 12.0


def test_redact_blanks_values_and_their_words() -> None:
    sent = retry("HTTP 401: token tok-123456 refused for Bearer tok-123456; s3cr3t-value")
    clean = redact(sent, ["Bearer tok-123456", "s3cr3t-value", None, "short"])
    assert clean.error == "HTTP 401: token [redacted] refused for [redacted]; [redacted]"
    assert redact(sent, []) is sent


def test_default_schedule_is_at_least_five_attempts_over_ten_minutes() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts >= 5

    class Lowest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a

    waits = [policy.delay(n, Lowest()) for n in range(1, policy.max_attempts)]
    assert waits == sorted(waits)  # exponential
    assert sum(waits) >= 600  # even with the shortest jitter
    assert sum(policy.delay(n, random.Random(1)) for n in range(1, 8)) < 2 * 3600


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    waits = {round(policy.delay(3, rng), 3) for _ in range(20)}
    assert len(waits) > 10 and all(32 <= w <= 48 for w in waits)
    assert policy.delay(40) <= policy.cap_seconds * (1 + policy.jitter)


def test_runyard_headers_win_over_job_headers() -> None:
    headers = request_headers(
        {"content-type": "text/plain", "X-Runyard-Event": "forged", "X-Team": "data"},
        event="failure",
        delivery_id="ntf_1",
        signature_value="t=1,v1=ab",
    )
    assert headers == {
        "X-Team": "data",
        "Content-Type": "application/json",
        "User-Agent": headers["User-Agent"],
        "X-Runyard-Event": "failure",
        "X-Runyard-Delivery": "ntf_1",
        "X-Runyard-Signature": "t=1,v1=ab",
    }
    assert headers["User-Agent"].startswith("runyard/")


def test_pinned_request() -> None:
    url, headers, extensions = pinned_request("https://hooks.example.com/a/b?c=d", "93.184.215.14")
    assert url == "https://93.184.215.14/a/b?c=d"
    assert headers == {"Host": "hooks.example.com"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    url, headers, extensions = pinned_request("http://h.example:8080", "2001:db8::1")
    assert url == "http://[2001:db8::1]:8080/" and headers == {"Host": "h.example:8080"}
    assert extensions == {}
    assert pinned_request("http://h.example/x", None) == ("http://h.example/x", {}, {})
