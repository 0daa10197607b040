"""Webhook delivery with httpx: one signed JSON POST per attempt.

Server-side request forgery is checked again here, at send time, because a name that
resolved to a public address when the job was saved may resolve to 127.0.0.1 or
169.254.169.254 now. The request then goes to the address that was checked (the URL's host
is replaced by it; the Host header and, for https, the TLS server name and certificate
check keep the real name), so a second DNS answer cannot slip in between the check and the
connection. Redirects are never followed: the receiver's job headers and the signature
would go to a host nobody configured.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx

from app import __version__
from app.notify import result
from app.notify.messages import signature
from app.notify.plan import host_key
from app.notify.result import SendResult
from app.services.outbound import OutboundPolicy, Unresolvable, UnsafeTarget

USER_AGENT = f"runyard/{__version__}"
# runyard's own headers: a job's webhook_headers never replace these (nor hop-by-hop ones).
RESERVED = frozenset(
    {"content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection"}
)
MAX_CLIENTS = 256  # hosts with a connection pool kept open


def pinned_request(url: str, address: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL with its host replaced by ``address``, the Host header, and the httpx
    extensions that keep TLS verifying the real name. Unchanged without an address."""
    if not address:
        return url, {}, {}
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip = ipaddress.ip_address(address.split("%")[0])
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, {"Host": host_header}, extensions


def request_headers(
    job_headers: Mapping[str, str],
    *,
    event: str,
    delivery_id: str,
    signature_value: str | None,
) -> dict[str, str]:
    headers = {
        name: value
        for name, value in job_headers.items()
        if name.lower() not in RESERVED and not name.lower().startswith("x-runyard-")
    }
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


def unresolved(exc: UnsafeTarget) -> bool:
    """The target was refused only because its name did not resolve now. That is a DNS
    outage or a record not created yet, like a refused connection: worth trying again,
    and the check runs again (on the new answer) before the next attempt."""
    return isinstance(exc, Unresolvable)


def _snippet(response: httpx.Response) -> str:
    """The start of a receiver's answer, on one line, for the attempt's error (secrets a
    receiver echoes are blanked by the deliverer)."""
    text = " ".join(response.text[:300].split())
    return f": {text[:200]}" if text else ""


class WebhookSender:
    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: float,
        per_host: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._timeout = httpx.Timeout(timeout)
        self._limits = httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host)
        self._clock = clock
        self._tls = httpx.create_ssl_context()  # loading the CA bundle takes ~0.1 s: once
        # One client (connection pool) per host and port, the unit the outbox limits: pinned
        # URLs carry the address, so a shared pool could reuse a TLS connection verified for
        # one name for another, and one hanging host would use up a shared pool's connections.
        self._clients: OrderedDict[str, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def _client(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                client = httpx.Client(
                    timeout=self._timeout,
                    limits=self._limits,
                    follow_redirects=False,
                    verify=self._tls,
                )
                self._clients[host] = client
                if len(self._clients) > MAX_CLIENTS:
                    _, oldest = self._clients.popitem(last=False)
                    oldest.close()
            self._clients.move_to_end(host)
            return client

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
        try:
            addresses = self._policy.check_target(url)
        except UnsafeTarget as exc:
            if unresolved(exc):
                return result.retry(f"could not deliver: {exc}")
            return result.failed(f"refused: {exc}")
        target, pin_headers, extensions = pinned_request(url, addresses[0] if addresses else None)
        headers = request_headers(
            job_headers,
            event=event,
            delivery_id=delivery_id,
            signature_value=signature(secret, int(self._clock()), body) if secret else None,
        )
        headers.update(pin_headers)
        try:
            response = self._client(host_key(url)).post(
                target, content=body, headers=headers, extensions=extensions
            )
        except httpx.TimeoutException:
            return result.retry(f"no answer within {self._timeout.read:g} seconds (timed out)")
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
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
