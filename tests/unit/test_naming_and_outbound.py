from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.naming import cronjob_name, run_job_name
from app.notify.outbound import OutboundPolicy, UnsafeTarget


def test_names_fit_kubernetes_limits() -> None:
    when = datetime(2026, 4, 28, 12, 0, tzinfo=UTC)
    assert cronjob_name("analytics", "nightly-refresh") == "analytics-nightly-refresh"
    assert run_job_name("analytics", "nightly-refresh", when) == (
        "analytics-nightly-refresh-20260428-120000"
    )
    long_a, long_b = "p" * 40, "j" * 40
    assert len(cronjob_name(long_a, long_b)) == 52
    assert cronjob_name(long_a, long_b) != cronjob_name(long_a, long_b + "x")
    name = run_job_name(long_a, long_b, when, "ab12")
    assert len(name) <= 63 and name.endswith("20260428-120000-ab12")


def _policy(answers: dict[str, list[str]], allowed: tuple[str, ...] = ()) -> OutboundPolicy:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    return OutboundPolicy(allowed, resolver=resolve)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://localhost:8080/x",
        "http://sneaky.example/x",
        "ftp://example.com/x",
        "http://user:pass@example.com/x",
        "http://0.0.0.0/",
        "http://192.168.1.1/",
        "http://metadata.google.internal/",
    ],
)
def test_unsafe_targets_refused(url: str) -> None:
    policy = _policy({"sneaky.example": ["127.0.0.1"]})
    with pytest.raises(UnsafeTarget):
        policy.check_target(url)
    assert policy.check_url("webhook_url", url)


def test_public_and_allowed_targets() -> None:
    policy = _policy(
        {"hooks.example.com": ["93.184.216.34"], "ci.corp": ["10.0.0.5"]},
        allowed=("127.0.0.1/32", "ci.corp"),
    )
    assert policy.check_target("https://hooks.example.com/x") == ["93.184.216.34"]
    assert policy.check_target("http://127.0.0.1:9000/x") == ["127.0.0.1"]
    assert policy.check_target("http://ci.corp/x") == []
    # Unresolvable at save time: accepted now, checked again at send time.
    assert policy.check_url("webhook_url", "https://not-yet.example.com/x") == []
    with pytest.raises(UnsafeTarget):
        policy.check_target("https://not-yet.example.com/x")
