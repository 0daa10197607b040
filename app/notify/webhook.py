"""The webhook channel: one signed JSON POST per attempt, to the job's ``webhook_url``.

Webhooks are for machines: a job gets exactly the events listed in its ``webhook_events``
(``started`` and ``cancelled`` included). The body is encoded once, when the notification
is written, so every retry sends the same bytes; the signature is made afresh for each
attempt. Requests go through runyard's pinned-address sender (app/notify/http.py) and
redirects are never followed: the job's headers and the signature would go to a host
nobody configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from app.models import ALERT_EVENTS, JobConfig, Project, WebhookEvent, reserved_header
from app.notify import result
from app.notify.channels import ChannelInfo, Planned, RunView, Stored
from app.notify.http import USER_AGENT, PinnedHttp, host_key, unresolved
from app.notify.messages import alert_webhook_body, signature, webhook_body
from app.notify.outbound import OutboundPolicy, UnsafeTarget
from app.notify.result import SendResult
from app.settings import Settings
from app.store.outbox import Claimed

KIND = "webhook"


def request_headers(
    job_headers: Mapping[str, str],
    *,
    event: str,
    delivery_id: str,
    signature_value: str | None,
) -> dict[str, str]:
    headers = {name: value for name, value in job_headers.items() if not reserved_header(name)}
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Runyard-Event": event,
            "X-Runyard-Delivery": delivery_id,
        }
    )
    if signature_value:
        headers["X-Runyard-Signature"] = signature_value
    return headers


def _snippet(response: httpx.Response) -> str:
    """The start of a receiver's answer, on one line, for the attempt's error (secrets a
    receiver echoes are blanked by the deliverer)."""
    text = " ".join(response.text[:300].split())
    return f": {text[:200]}" if text else ""


class WebhookSender:
    """Signed webhook requests, through its own pinned-address sender."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: float,
        per_host: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = PinnedHttp(policy, timeout=timeout, per_host=per_host)
        self._clock = clock

    def send(
        self,
        url: str,
        body: bytes,
        *,
        event: str,
        delivery_id: str,
        job_headers: Mapping[str, str],
        secret: str | None,
    ) -> SendResult:
        headers = request_headers(
            job_headers,
            event=event,
            delivery_id=delivery_id,
            signature_value=signature(secret, int(self._clock()), body) if secret else None,
        )
        try:
            response = self._http.post(url, body, headers)
        except UnsafeTarget as exc:
            if unresolved(exc):
                return result.retry(f"could not deliver: {exc}")
            return result.failed(f"refused: {exc}")
        except httpx.TimeoutException:
            return result.retry(f"no answer within {self._http.timeout.read:g} seconds (timed out)")
        except httpx.HTTPError as exc:
            return result.retry(f"could not deliver: {type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return result.delivered(code)
        if 300 <= code < 400:
            location = response.headers.get("location", "")
            return result.failed(
                f"the receiver answered {code} redirecting to {location[:200]!r}; runyard does "
                "not follow redirects for webhooks: set webhook_url to the final address",
                code,
            )
        return result.from_status(
            code, f"HTTP {code}{_snippet(response)}", response.headers.get("retry-after")
        )

    def close(self) -> None:
        self._http.close()


def wanted(job: JobConfig, event: WebhookEvent) -> bool:
    # A silence alert exists only for a job that set its threshold: that is the opt-in,
    # whatever webhook_events lists.
    listed = event in job.webhook_events or event in ALERT_EVENTS
    return bool(job.webhook_enabled and job.webhook_url and listed)


class WebhookChannel:
    info = ChannelInfo(kind=KIND, title="Webhook", target="the job's webhook_url")

    def __init__(self, sender: WebhookSender) -> None:
        self._sender = sender

    def plan(self, job: JobConfig, event: WebhookEvent, project: Project | None) -> list[Planned]:
        if not wanted(job, event):
            return []
        assert job.webhook_url is not None  # wanted() checked it
        url = job.webhook_url
        return [Planned(kind=KIND, event=event, target=url, host=host_key(url))]

    def stored(self, planned: Planned, run: RunView, delivery_id: str) -> Stored:
        # The secret is copied onto the row so that retries sign even if the job is
        # deleted meanwhile (the outbox store clears it once delivered).
        if run.alert is not None:
            payload = alert_webhook_body(run.alert, delivery_id, run.public_url)
        else:
            assert run.record is not None  # a run's event has its run
            payload = webhook_body(run.record, planned.event, delivery_id, run.public_url)
        return Stored(payload=payload, secret=run.job_webhook_secret)

    def deliver(self, row: Claimed, run: RunView) -> SendResult:
        if not row.target or row.payload is None:
            return result.failed("the notification has no webhook URL or body")
        return self._sender.send(
            row.target,
            row.payload,
            event=row.event,
            delivery_id=row.id,
            job_headers=run.webhook_headers,
            secret=row.secret,
        )

    def secrets(self, run: RunView | None) -> list[str | None]:
        return []  # the row's secret and the job's header values are blanked for every kind

    def close(self) -> None:
        self._sender.close()


def build(settings: Settings, policy: OutboundPolicy) -> WebhookChannel:
    return WebhookChannel(
        WebhookSender(
            policy,
            timeout=settings.notify_timeout_seconds,
            per_host=max(1, settings.notify_per_host),
        )
    )
