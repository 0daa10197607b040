"""Outbound safety for webhooks: http(s) only, and no loopback, link-local, private or
cloud-metadata targets unless an operator allows them (RUNYARD_WEBHOOK_ALLOWED_HOSTS).

Checked at save time, and again at send time, because DNS answers can change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from app.errors import FieldError

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class UnsafeTarget(Exception):
    """The URL may not be reached; the message says why."""


class OutboundPolicy:
    def __init__(
        self, allowed_hosts: Sequence[str] = (), resolver: Resolver = system_resolver
    ) -> None:
        self._names: set[str] = set()
        self._networks: list[IPNetwork] = []
        for entry in allowed_hosts:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.add(entry.lower().rstrip("."))
        self._resolve = resolver

    def _address_allowed(self, address: IPAddress) -> bool:
        if any(address in network for network in self._networks):
            return True
        return address.is_global and not address.is_multicast

    def _split(self, url: str) -> tuple[str, int]:
        if any(ord(c) < 33 or ord(c) == 127 for c in url):
            raise UnsafeTarget("the URL contains spaces or control characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UnsafeTarget("only http:// and https:// URLs are allowed")
        if not parts.hostname:
            raise UnsafeTarget("the URL has no host")
        if parts.username or parts.password:
            raise UnsafeTarget("credentials in the URL are not allowed; use webhook_headers")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UnsafeTarget("the URL's port is not a number between 0 and 65535") from None
        return parts.hostname.lower().rstrip("."), port

    def check_target(self, url: str, *, resolve: bool = True) -> list[str]:
        """Raise UnsafeTarget unless every address the host resolves to may be reached.
        Returns the addresses (empty when not resolved)."""
        host, port = self._split(url)
        if host in self._names:
            return []
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self._address_allowed(literal):
                raise UnsafeTarget(
                    f"{host} is a loopback, private, link-local or metadata "
                    "address; an operator can allow it with "
                    "RUNYARD_WEBHOOK_ALLOWED_HOSTS"
                )
            return [host]
        if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
            raise UnsafeTarget(
                f"{host} is a local name; an operator can allow it with "
                "RUNYARD_WEBHOOK_ALLOWED_HOSTS"
            )
        if not resolve:
            return []
        try:
            addresses = self._resolve(host, port)
        except OSError as exc:
            raise UnsafeTarget(f"{host} could not be resolved ({exc.strerror or exc})") from None
        for address in addresses:
            if not self._address_allowed(ipaddress.ip_address(address.split("%")[0])):
                raise UnsafeTarget(
                    f"{host} resolves to {address}, a loopback, private, "
                    "link-local or metadata address; an operator can allow it "
                    "with RUNYARD_WEBHOOK_ALLOWED_HOSTS"
                )
        return addresses

    def check_url(self, field: str, url: str) -> list[FieldError]:
        """Save-time check. A name that does not resolve now is accepted (it may be created
        later); it is checked again before every delivery."""
        try:
            self.check_target(url, resolve=False)
            self.check_target(url)
        except UnsafeTarget as exc:
            if "could not be resolved" in str(exc):
                return []
            return [FieldError(field, f"refused: {exc}")]
        return []
