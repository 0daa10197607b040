"""runyard's outbound HTTP: every request a channel sends to a URL someone configured.

Server-side request forgery is checked here, at send time, because a name that resolved to
a public address when the URL was saved may resolve to 127.0.0.1 or 169.254.169.254 now.
The request then goes to the address that was checked (the URL's host is replaced by it;
the Host header and, for https, the TLS server name and certificate check keep the real
name), so a second DNS answer cannot slip in between the check and the connection.
Redirects are never followed: the request's headers would go to a host nobody configured.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx

from app import __version__
from app.notify.outbound import OutboundPolicy, Unresolvable, UnsafeTarget

USER_AGENT = f"runyard/{__version__}"
MAX_CLIENTS = 256  # hosts with a connection pool kept open


def host_key(url: str) -> str:
    """``host:port`` of a URL, the unit of the per-host concurrency limit."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0  # refused at send time with a clear message; any key will do here
    return f"{host}:{port}"


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


def unresolved(exc: UnsafeTarget) -> bool:
    """The target was refused only because its name did not resolve now. That is a DNS
    outage or a record not created yet, like a refused connection: worth trying again,
    and the check runs again (on the new answer) before the next attempt."""
    return isinstance(exc, Unresolvable)


class PinnedHttp:
    """POSTs to checked, pinned addresses, with a connection pool per host and port.

    ``post`` raises UnsafeTarget (Unresolvable when the name did not resolve) before any
    connection is made, and httpx.HTTPError (httpx.TimeoutException for a timeout) when
    the request fails; each channel words those for its own errors.
    """

    def __init__(self, policy: OutboundPolicy, *, timeout: float, per_host: int) -> None:
        self._policy = policy
        self.timeout = httpx.Timeout(timeout)
        self._limits = httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host)
        self._tls: ssl.SSLContext | None = None  # loading the CA bundle takes ~0.1 s: once
        # One client (connection pool) per host and port, the unit the outbox limits: pinned
        # URLs carry the address, so a shared pool could reuse a TLS connection verified for
        # one name for another, and one hanging host would use up a shared pool's connections.
        self._clients: OrderedDict[str, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def _client(self, host: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                if self._tls is None:
                    self._tls = httpx.create_ssl_context()
                client = httpx.Client(
                    timeout=self.timeout,
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

    def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        addresses = self._policy.check_target(url)
        target, pin_headers, extensions = pinned_request(url, addresses[0] if addresses else None)
        return self._client(host_key(url)).post(
            target, content=content, headers={**headers, **pin_headers}, extensions=extensions
        )

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
