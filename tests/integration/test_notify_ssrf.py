"""Server-side request forgery at send time: refused targets are never connected to,
redirects are never followed, and the connection goes to the address that was checked.

The receivers of these tests listen on 127.0.0.1, which the tests allow explicitly
(RUNYARD_WEBHOOK_ALLOWED_HOSTS=127.0.0.1); everything else that is loopback, private,
link-local or metadata stays refused. A receiver on 127.0.0.2 (loopback too, but not
allowed) shows that a refused target is not even connected to.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.container import Container
from app.notify.messages import SlackMessage
from app.notify.outbound import OutboundPolicy
from app.notify.slack import SlackSender
from app.notify.webhook import WebhookSender
from tests.conftest import ContainerFactory
from tests.integration.api_helpers import assert_problem
from tests.integration.api_helpers import make_project as make_api_project
from tests.integration.test_notify_support import (
    Receiver,
    always,
    finish,
    make_job,
    make_project,
    make_run,
    receiver,
    wait_settled,
)


@pytest.fixture
def allowing_loopback_one(container_factory: ContainerFactory) -> Container:
    return container_factory(webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=1.0)


@pytest.fixture
def other_loopback() -> Iterator[Receiver]:
    with receiver(host="127.0.0.2") as server:
        yield server


def _send_one(container: Container, url: str) -> tuple[str, int, str]:
    project = make_project(container, name=f"p{abs(hash(url))}")
    job = make_job(container, project, webhook_enabled=True, webhook_url=url)
    run = make_run(container, project, job)
    finish(container, run, "failed", exit_code=1)
    [notification] = wait_settled(container, run.id, 1)
    return notification.state, notification.attempts, notification.last_error or ""


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://10.255.255.254:8080/hook",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
        "http://0.0.0.0:9/hook",
        "http://192.168.1.1/hook",
        "ftp://example.com/hook",
    ],
)
def test_private_and_metadata_targets_are_refused(
    allowing_loopback_one: Container, url: str
) -> None:
    state, attempts, error = _send_one(allowing_loopback_one, url)
    assert (state, attempts) == ("failed", 1)
    assert error.startswith("refused:")


def test_loopback_not_allowed_is_never_connected_to(
    allowing_loopback_one: Container, other_loopback: Receiver
) -> None:
    state, _, error = _send_one(allowing_loopback_one, other_loopback.url())
    assert state == "failed" and "127.0.0.2" in error
    assert other_loopback.requests == []


def test_a_name_that_resolves_to_loopback_is_refused(
    container_factory: ContainerFactory,
) -> None:
    # This machine's own name resolves to a loopback address on most systems; the policy
    # allows nothing, so it must be refused like 127.0.0.1 itself.
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        pytest.skip("the host name does not resolve here")
    if not any(str(a).startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"{name} does not resolve to loopback here")
    container = container_factory(notify_timeout_seconds=1.0)
    state, _, error = _send_one(container, f"http://{name}:9/hook")
    assert state == "failed" and "resolves to" in error


def test_dns_change_after_save_is_caught_at_send_time() -> None:
    """Saved while the name pointed at a public address, sent after it moved to the
    metadata service: refused when sent."""
    answers = {"hooks.example.test": ["93.184.215.14"]}
    policy = OutboundPolicy((), resolver=lambda host, _port: answers[host])
    assert policy.check_url("webhook_url", "https://hooks.example.test/x") == []
    answers["hooks.example.test"] = ["169.254.169.254"]
    sender = WebhookSender(policy, timeout=1, per_host=2)
    sent = sender.send(
        "https://hooks.example.test/x",
        b"{}",
        event="failure",
        delivery_id="d",
        job_headers={},
        secret=None,
    )
    assert sent.outcome == "failed" and "169.254.169.254" in (sent.error or "")


def test_the_connection_goes_to_the_checked_address(hook_receiver: Receiver) -> None:
    """A name no DNS server knows reaches the receiver: runyard connected to the address
    its check resolved (pinning), with the real name in the Host header."""
    policy = OutboundPolicy(("127.0.0.1",), resolver=lambda _host, _port: ["127.0.0.1"])
    sender = WebhookSender(policy, timeout=1, per_host=2)
    url = f"http://hooks.invalid:{hook_receiver.port}/pinned"
    sent = sender.send(url, b"{}", event="success", delivery_id="d1", job_headers={}, secret=None)
    sender.close()
    assert sent.outcome == "delivered", sent
    [request] = hook_receiver.requests
    assert (
        request.path == "/pinned"
        and request.headers["host"] == f"hooks.invalid:{hook_receiver.port}"
    )


def test_an_incoming_webhook_connects_to_the_checked_address(hook_receiver: Receiver) -> None:
    """The same pinning for a project's Slack incoming webhook: no second DNS answer
    (a rebinding) can send the message anywhere but the address that was checked."""
    answers = {"hooks.invalid": ["127.0.0.1"]}
    policy = OutboundPolicy(("127.0.0.1",), resolver=lambda host, _port: answers[host])
    sender = SlackSender(token=None, base_url=None, timeout=1, policy=policy)
    url = f"http://hooks.invalid:{hook_receiver.port}/services/T/B/X"
    message = SlackMessage(text="nightly failed", blocks=[{"type": "divider"}], metadata={})
    sent = sender.post_incoming(url, message)
    answers["hooks.invalid"] = ["169.254.169.254"]  # the name moved: checked again, refused
    moved = sender.post_incoming(url, message)
    sender.close()
    assert sent.outcome == "delivered", sent
    [request] = hook_receiver.requests
    assert request.path == "/services/T/B/X"
    assert request.headers["host"] == f"hooks.invalid:{hook_receiver.port}"
    assert request.json() == {
        "text": "nightly failed",
        "blocks": [{"type": "divider"}],
        "unfurl_links": False,
    }
    assert moved.outcome == "failed" and "169.254.169.254" in (moved.error or "")


@pytest.fixture
def hook_receiver() -> Iterator[Receiver]:
    with receiver() as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    allowing_loopback_one: Container, hook_receiver: Receiver, status: int
) -> None:
    for target in (hook_receiver.url("/elsewhere"), "http://169.254.169.254/latest/meta-data/"):
        with receiver(always(status, b"", Location=target)) as redirecting:
            state, attempts, error = _send_one(allowing_loopback_one, redirecting.url())
            assert len(redirecting.requests) == 1
        assert (state, attempts) == ("failed", 1)
        assert "does not follow redirects" in error and str(status) in error
    assert hook_receiver.requests == []


def test_incoming_webhook_targets_are_checked_and_not_redirected(
    container_factory: ContainerFactory, other_loopback: Receiver, hook_receiver: Receiver
) -> None:
    container = container_factory(webhook_allowed_hosts=("127.0.0.1",), notify_timeout_seconds=1.0)
    with receiver(always(302, b"", Location=hook_receiver.url("/internal"))) as redirecting:
        for url, expected in (
            (other_loopback.url("/services/x"), "refused"),
            (redirecting.url("/services/x"), "302"),
        ):
            project = make_project(container, name=f"p{abs(hash(url))}", slack_webhook_url=url)
            job = make_job(container, project, slack_alerts_enabled=True)
            run = make_run(container, project, job)
            finish(container, run, "failed", exit_code=1)
            [notification] = wait_settled(container, run.id, 1)
            assert notification.state == "failed" and expected in (notification.last_error or "")
    assert other_loopback.requests == [] and hook_receiver.requests == []


def test_secrets_never_reach_the_log(
    container_factory: ContainerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret, header_token, slack_token = "whsec-never-logged-1", "hdr-never-logged-2", "xoxb-never-3"
    caplog.set_level(logging.DEBUG)
    with receiver(always(401, f"bad token {header_token}".encode())) as echoing:
        container = container_factory(
            webhook_allowed_hosts=("127.0.0.1",),
            slack_token=slack_token,
            slack_base_url=echoing.url("/api/"),
        )
        project = make_project(container)
        job = make_job(
            container,
            project,
            secret=secret,
            slack_alerts_enabled=True,
            slack_channel="#c",
            webhook_enabled=True,
            webhook_url=echoing.url(),
            webhook_headers={"Authorization": f"Bearer {header_token}"},
        )
        run = make_run(container, project, job)
        finish(container, run, "failed", exit_code=1)
        found = wait_settled(container, run.id, 2)
    assert [n.state for n in found] == ["failed", "failed"]
    webhook = next(n for n in found if n.kind == "webhook")
    assert "[redacted]" in (webhook.last_error or "")
    logged = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert "notification failed" in logged
    for value in (secret, header_token, slack_token):
        assert value not in logged
        assert all(value not in (n.last_error or "") for n in found)


@pytest.mark.parametrize(
    "host",
    [
        "::ffff:127.0.0.2",  # IPv4-mapped: a dual-stack socket connects to 127.0.0.2
        "::ffff:0:127.0.0.2",  # SIIT
        "::127.0.0.2",  # IPv4-compatible
        "64:ff9b::7f00:2",  # NAT64: a translator on the network forwards to 127.0.0.2
        "2002:7f00:2::1",  # 6to4
    ],
)
def test_ipv6_forms_of_a_refused_ipv4_are_refused_at_send_time(
    allowing_loopback_one: Container, other_loopback: Receiver, host: str
) -> None:
    """Saved before the check existed (through the store): refused when sent, and the
    receiver on 127.0.0.2 never sees a connection. 127.0.0.1 is allowed, 127.0.0.2 is not:
    the embedded address is what is judged."""
    state, attempts, error = _send_one(
        allowing_loopback_one, f"http://[{host}]:{other_loopback.port}/hook"
    )
    assert (state, attempts) == ("failed", 1)
    assert error.startswith("refused:") and "embeds" in error
    assert other_loopback.requests == []


def test_ipv6_forms_of_private_addresses_are_refused_at_save(
    client: TestClient[Any], admin_headers: dict[str, str]
) -> None:
    project = make_api_project(client, admin_headers)
    for url in (
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[::ffff:0:a00:1]/hook",
        "http://[2002:c0a8:101::1]/hook",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",
    ):
        response = client.post(
            f"/api/v1/projects/{project['id']}/jobs",
            json={"name": "hook", "command": "dbt build", "webhook_url": url},
            headers=admin_headers,
        )
        assert "embeds" in assert_problem(response, 422, field="webhook_url")["detail"]
        response = client.put(
            f"/api/v1/projects/{project['id']}",
            json={"slack_webhook_url": url.replace("/hook", "/services/x")},
            headers=admin_headers,
        )
        assert_problem(response, 422, field="slack_webhook_url")
    assert (
        client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin_headers).json()["total"]
        == 0
    )
