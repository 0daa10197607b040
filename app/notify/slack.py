"""Slack delivery: the only module that imports slack_sdk.

Bot token (``RUNYARD_SLACK_TOKEN``, scope ``chat:write``): ``chat.postMessage`` with Block
Kit. Without a token, a project's incoming-webhook URL (``slack_webhook_url``) is used.

The clients' own retry handlers are switched off: the outbox retries, so that every
attempt is recorded and a rate-limited message waits in the database, not in a thread.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.error import URLError
from urllib.request import HTTPRedirectHandler, HTTPSHandler, ProxyHandler, Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient, WebhookResponse

from app.notify import result
from app.notify.messages import SlackMessage
from app.notify.result import SendResult
from app.notify.webhook import unresolved
from app.services.outbound import OutboundPolicy, UnsafeTarget

DEFAULT_BASE_URL = "https://slack.com/api/"

# slack_sdk logs request details at DEBUG when its logger's own level allows it (an
# incoming-webhook URL is a secret) and response bodies on errors. Every attempt's outcome
# is logged by the outbox, redacted, so the client's own logger stays silent.
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


class _NoRedirects(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class _IncomingWebhook(WebhookClient):
    """WebhookClient whose requests never follow redirects: urllib would turn a redirected
    POST into a GET of any address, past the target check made on the configured URL."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirects(),
            HTTPSHandler(context=self.ssl),
        ]
        if self.proxy:
            handlers.append(ProxyHandler({"http": self.proxy, "https": self.proxy}))
        response = urllib.request.build_opener(*handlers).open(req, timeout=self.timeout)
        charset = response.headers.get_content_charset() or "utf-8"
        return WebhookResponse(
            url=url,
            status_code=response.status,
            body=response.read().decode(charset),
            headers=dict(response.headers.items()),
        )


class SlackSender:
    def __init__(
        self,
        *,
        token: str | None,
        base_url: str | None,
        timeout: float,
        policy: OutboundPolicy,
    ) -> None:
        self._timeout = max(1, round(timeout))
        self._policy = policy
        self.has_token = bool(token)
        base = base_url or DEFAULT_BASE_URL
        self._client = WebClient(
            token=token,
            base_url=base if base.endswith("/") else base + "/",  # slack_sdk needs the slash
            timeout=self._timeout,
            retry_handlers=[],
            logger=_sdk_log,
        )

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
        """Post through an incoming webhook, checked like any webhook target. urllib resolves
        the name again when it connects: unlike webhook.py this path is not pinned to the
        checked address (slack_sdk offers no hook for it), which leaves a DNS-rebinding
        window of one request; redirects are refused."""
        try:
            self._policy.check_target(url)
        except UnsafeTarget as exc:
            if unresolved(exc):
                return result.retry(f"could not reach Slack: {exc}")
            return result.failed(f"refused: the project's slack_webhook_url: {exc}")
        client = _IncomingWebhook(url, timeout=self._timeout, retry_handlers=[], logger=_sdk_log)
        try:
            response = client.send(text=message.text, blocks=message.blocks, unfurl_links=False)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return result.retry(f"could not reach Slack: {type(reason).__name__}: {reason}")
        except SlackClientError as exc:
            return result.failed(f"Slack client error: {exc}")
        code = response.status_code
        if 200 <= code < 300:
            return result.delivered(code)
        if 300 <= code < 400:
            return result.failed(f"the incoming webhook answered {code} (redirects not followed)")
        body = " ".join(str(response.body or "").split())[:200]
        return result.from_status(
            code, f"Slack answered HTTP {code}: {body}", _header(response.headers, "retry-after")
        )
