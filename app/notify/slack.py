"""The Slack channel, and the only module that imports slack_sdk.

Slack is for people, so it stays quiet unless something needs attention: failures (failed,
timed_out, lost) when ``slack_alerts_enabled``, successes only with ``slack_alert_on_success``.
A cancelled run is never a Slack alert (someone, or a newer run under concurrency_policy
Replace, stopped it on purpose) and neither is a start.

Two ways to post, chosen at send time (not when the row was written, so a retry after the
operator fixed the configuration uses the fixed one):
- a bot token (``RUNYARD_SLACK_TOKEN``, scope ``chat:write``): ``chat.postMessage`` with
  Block Kit, through slack_sdk;
- without a token, the project's incoming-webhook URL (``slack_webhook_url``), through
  runyard's pinned-address sender (app/notify/http.py) like any webhook: checked, connected
  to the address that was checked, never redirected.

slack_sdk's own retry handlers are switched off: the outbox retries, so that every attempt
is recorded and a rate-limited message waits in the database, not in a thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.error import URLError

import httpx
import msgspec
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from app.models import ALERT_EVENTS, JobConfig, Project, WebhookEvent
from app.notify import result
from app.notify.channels import ChannelInfo, Planned, RunView, Stored
from app.notify.http import USER_AGENT, PinnedHttp, unresolved
from app.notify.messages import SlackMessage, alert_slack_message, slack_message
from app.notify.outbound import OutboundPolicy, UnsafeTarget
from app.notify.result import SendResult
from app.settings import Settings
from app.store.outbox import Claimed

KIND = "slack"
DEFAULT_BASE_URL = "https://slack.com/api/"
# Every Slack delivery shares this concurrency key: the Web API and incoming webhooks are
# both Slack's servers, and its rate limits apply across them.
SLACK_HOST = "slack"

NO_CHANNEL = (
    "no Slack channel: set the job's slack_channel, the project's slack_channel or "
    "RUNYARD_SLACK_DEFAULT_CHANNEL"
)
NO_SLACK = (
    "Slack is not configured: set RUNYARD_SLACK_TOKEN (a bot token with the chat:write "
    "scope) or the project's slack_webhook_url"
)

# slack_sdk logs request details at DEBUG when its logger's own level allows it and
# response bodies on errors. Every attempt's outcome is logged by the outbox, redacted, so
# the client's own logger stays silent.
_sdk_log = logging.getLogger("runyard.notify.slack_sdk")
_sdk_log.setLevel(logging.CRITICAL)

# Web API errors (HTTP 200, "ok": false) worth another attempt; every other error code
# (channel_not_found, invalid_auth, invalid_blocks, ...) will not change by itself.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)
_HINTS = {
    "channel_not_found": "check the channel name, and invite the bot to a private channel",
    "not_in_channel": "invite the bot to the channel (/invite @your-bot)",
    "is_archived": "the channel is archived; choose another slack_channel",
    "invalid_auth": "check RUNYARD_SLACK_TOKEN",
    "not_authed": "set RUNYARD_SLACK_TOKEN",
    "token_revoked": "the token was revoked; set a new RUNYARD_SLACK_TOKEN",
    "account_inactive": "the token's account is inactive; set a new RUNYARD_SLACK_TOKEN",
    "missing_scope": "the bot token needs the chat:write scope",
}


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return None


class _IncomingBody(msgspec.Struct):
    """What an incoming webhook accepts (the fields slack_sdk's WebhookClient sent)."""

    text: str
    blocks: list[dict[str, Any]]
    unfurl_links: bool = False


class SlackSender:
    """Posts one message, through the Web API (bot token) or an incoming webhook."""

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str | None,
        timeout: float,
        policy: OutboundPolicy,
        per_host: int = 4,
    ) -> None:
        self.has_token = bool(token)
        base = base_url or DEFAULT_BASE_URL
        self._client = WebClient(
            token=token,
            base_url=base if base.endswith("/") else base + "/",  # slack_sdk needs the slash
            timeout=max(1, round(timeout)),
            retry_handlers=[],
            logger=_sdk_log,
        )
        # The outbox sends at most per_host Slack requests at a time (they share SLACK_HOST).
        self._http = PinnedHttp(policy, timeout=timeout, per_host=per_host)

    def post_message(self, channel: str, message: SlackMessage) -> SendResult:
        try:
            response = self._client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                metadata=message.metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            return self._api_error(exc)
        except (URLError, OSError) as exc:  # refused, reset, timed out (TimeoutError)
            reason = getattr(exc, "reason", exc)
            return result.retry(f"could not reach Slack: {type(reason).__name__}: {reason}")
        except SlackClientError as exc:
            return result.failed(f"Slack client error: {exc}")
        return result.delivered(response.status_code)

    @staticmethod
    def _api_error(exc: SlackApiError) -> SendResult:
        response = exc.response
        code = int(response.status_code)
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {code}")
        if code == 429 or error == "ratelimited":
            retry_after = _header(response.headers, "retry-after")
            return result.from_status(429, f"Slack rate limit ({error})", retry_after)
        if code >= 500 or error in RETRYABLE_ERRORS:
            return result.retry(f"Slack answered {error}", code)
        hint = _HINTS.get(error)
        return result.failed(f"Slack refused the message: {error}" + (f" ({hint})" if hint else ""))

    def post_incoming(self, url: str, message: SlackMessage) -> SendResult:
        """Post through an incoming webhook, checked like any webhook target and sent to
        the address that was checked; redirects are refused."""
        body = msgspec.json.encode(_IncomingBody(text=message.text, blocks=message.blocks))
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        try:
            response = self._http.post(url, body, headers)
        except UnsafeTarget as exc:
            if unresolved(exc):
                return result.retry(f"could not reach Slack: {exc}")
            return result.failed(f"refused: the project's slack_webhook_url: {exc}")
        except httpx.HTTPError as exc:  # refused, reset, timed out
            return result.retry(f"could not reach Slack: {type(exc).__name__}: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return result.delivered(code)
        if 300 <= code < 400:
            return result.failed(f"the incoming webhook answered {code} (redirects not followed)")
        text = " ".join(response.text[:300].split())[:200]
        return result.from_status(
            code, f"Slack answered HTTP {code}: {text}", response.headers.get("retry-after")
        )

    def close(self) -> None:
        self._http.close()


def wanted(job: JobConfig, event: WebhookEvent) -> bool:
    if not job.slack_alerts_enabled:
        return False
    if event == "failure" or event in ALERT_EVENTS:  # alerts: the job set a threshold
        return True
    return event == "success" and job.slack_alert_on_success


def channel_name(
    job: JobConfig, project_channel: str | None, default_channel: str | None
) -> str | None:
    """The job's channel, else the project's, else the operator's default."""
    return job.slack_channel or project_channel or default_channel or None


class SlackChannel:
    info = ChannelInfo(
        kind=KIND,
        title="Slack",
        target="the Slack channel (unused by the project's incoming webhook)",
    )

    def __init__(
        self, sender: SlackSender, *, default_channel: str | None, token: str | None
    ) -> None:
        self._sender = sender
        self._default_channel = default_channel
        self._token = token

    def plan(self, job: JobConfig, event: WebhookEvent, project: Project | None) -> list[Planned]:
        if not wanted(job, event):
            return []
        project_channel = project.slack_channel if project else None
        target = channel_name(job, project_channel, self._default_channel)
        return [Planned(kind=KIND, event=event, target=target, host=SLACK_HOST)]

    def stored(self, planned: Planned, run: RunView, delivery_id: str) -> Stored:
        # The message is built at send time from the run record (immutable once the run
        # ended) and its log, so the transaction that ends a run stays small. A silence
        # alert's is built now: what it reports (a run's queue place, ...) changes.
        if run.alert is not None:
            message = alert_slack_message(run.alert, delivery_id, run.public_url)
            return Stored(payload=msgspec.json.encode(message))
        return Stored()

    def deliver(self, row: Claimed, run: RunView) -> SendResult:
        webhook_url = run.project.slack_webhook_url if run.project else None
        if self._sender.has_token:
            webhook_url = None
            if not row.target:
                return result.failed(NO_CHANNEL)
        elif not webhook_url:
            return result.failed(NO_SLACK)
        if row.payload is not None:  # a silence alert, rendered when it was written
            message = msgspec.json.decode(row.payload, type=SlackMessage)
        elif run.record is not None:
            message = slack_message(run.record, row.event, row.id, run.log_text(), run.public_url)
        else:
            return result.failed("the notification's run no longer exists")
        if webhook_url:
            return self._sender.post_incoming(webhook_url, message)
        assert row.target is not None
        return self._sender.post_message(row.target, message)

    def secrets(self, run: RunView | None) -> list[str | None]:
        if run is None:
            return [self._token]
        return [self._token, run.project.slack_webhook_url if run.project else None]

    def close(self) -> None:
        self._sender.close()


def build(settings: Settings, policy: OutboundPolicy) -> SlackChannel:
    sender = SlackSender(
        token=settings.slack_token,
        base_url=settings.slack_base_url,
        timeout=settings.notify_timeout_seconds,
        policy=policy,
        per_host=max(1, settings.notify_per_host),
    )
    return SlackChannel(
        sender, default_channel=settings.slack_default_channel, token=settings.slack_token
    )
