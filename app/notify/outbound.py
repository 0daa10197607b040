"""Outbound safety for webhooks: http(s) only, and no loopback, link-local, private or
cloud-metadata targets unless an operator allows them (RUNYARD_WEBHOOK_ALLOWED_HOSTS).

Checked at save time, and again at send time, because DNS answers can change.

IPv6 addresses that carry an IPv4 address inside them (IPv4-mapped and -compatible, SIIT,
NAT64, 6to4, Teredo) reach that IPv4 address through a translator, a tunnel or the host's
own dual-stack socket, so they are judged by the IPv4 address they embed: otherwise
``http://[64:ff9b::7f00:1]/`` would be a way to 127.0.0.1 on a network with NAT64.
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

# Longer URLs are refused before any parsing: no webhook needs more, and a cap keeps a
# 500 KB "URL" out of the database, the logs and every notification attempt.
MAX_URL_LENGTH = 2048
_MAX_HOST_LENGTH = 253  # RFC 1035: a name of at most 253 characters ...
_MAX_LABEL_LENGTH = 63  # ... in labels of 1 to 63

_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Network
# Prefixes whose last 32 bits are an IPv4 address (RFC 4291 section 2.5.5, RFC 6052, RFC 7915).
_LOW_32_PREFIXES = (
    _V6("::ffff:0:0/96"),  # IPv4-mapped
    _V6("::ffff:0:0:0/96"),  # SIIT, IPv4-translated
    _V6("64:ff9b::/96"),  # NAT64 well-known prefix
    _V6("::/96"),  # IPv4-compatible (deprecated, still routed by some stacks)
)
# The local-use NAT64 block (RFC 8215): an operator picks a prefix of /48 to /96 inside it,
# so where the IPv4 address sits cannot be known from outside. Refused as a whole.
_LOCAL_NAT64 = _V6("64:ff9b:1::/48")


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class UnsafeTarget(Exception):
    """The URL may not be reached; the message says why."""


class Unresolvable(UnsafeTarget):
    """The host name did not resolve now: it may later (a DNS failure is often passing)."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to, when it embeds any."""
    if address.teredo is not None:
        server, client = address.teredo
        return [server, client]  # traffic goes through the server to the client
    if address.sixtofour is not None:
        return [address.sixtofour]
    for prefix in _LOW_32_PREFIXES:
        if address in prefix:
            return [_V4(int(address) & 0xFFFFFFFF)]
    return []


def _check_host_name(host: str) -> None:
    """DNS limits, checked here so that the resolver (and its IDNA codec) never meets a
    name it would choke on."""
    if len(host) > _MAX_HOST_LENGTH:
        raise UnsafeTarget(f"the host name is longer than {_MAX_HOST_LENGTH} characters")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeTarget(
            f"the host name is not a valid DNS name (each dot-separated label has 1 to "
            f"{_MAX_LABEL_LENGTH} characters)"
        ) from None
    labels = ascii_host.split(".")
    if len(ascii_host) > _MAX_HOST_LENGTH or any(
        not 1 <= len(label) <= _MAX_LABEL_LENGTH for label in labels
    ):
        raise UnsafeTarget(
            f"the host name is not a valid DNS name (at most {_MAX_HOST_LENGTH} characters, "
            f"each dot-separated label 1 to {_MAX_LABEL_LENGTH})"
        )


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
        if isinstance(address, ipaddress.IPv6Address):
            if address in _LOCAL_NAT64:
                return False
            embedded = embedded_ipv4(address)
            if embedded:
                return all(self._address_allowed(inner) for inner in embedded)
        return address.is_global and not address.is_multicast

    def _split(self, url: str) -> tuple[str, int]:
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
        if any(ord(c) < 33 or ord(c) == 127 for c in url):
            raise UnsafeTarget("the URL contains spaces or control characters")
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError as exc:  # e.g. "http://[::1" (Invalid IPv6 URL)
            raise UnsafeTarget(f"the URL cannot be parsed ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise UnsafeTarget("only http:// and https:// URLs are allowed")
        if not hostname:
            raise UnsafeTarget("the URL has no host")
        if parts.username or parts.password:
            raise UnsafeTarget("credentials in the URL are not allowed; use webhook_headers")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise UnsafeTarget("the URL's port is not a number between 0 and 65535") from None
        return hostname.lower().rstrip("."), port

    def check_target(self, url: str, *, resolve: bool = True) -> list[str]:
        """Raise UnsafeTarget unless every address the host resolves to may be reached.
        Returns the addresses (empty when not resolved)."""
        host, port = self._split(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self._address_allowed(literal):
                raise UnsafeTarget(
                    f"{host} is a loopback, private, link-local or metadata "
                    "address (or embeds one); an operator can allow it with "
                    "RUNYARD_WEBHOOK_ALLOWED_HOSTS"
                )
            return [host]
        _check_host_name(host)
        if host in self._names:
            return []
        if host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
            raise UnsafeTarget(
                f"{host} is a local name; an operator can allow it with "
                "RUNYARD_WEBHOOK_ALLOWED_HOSTS"
            )
        if not resolve:
            return []
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise Unresolvable(f"{host} could not be resolved ({reason})") from None
        for address in addresses:
            if not self._address_allowed(ipaddress.ip_address(address.split("%")[0])):
                raise UnsafeTarget(
                    f"{host} resolves to {address}, a loopback, private, "
                    "link-local or metadata address (or one that embeds it); an "
                    "operator can allow it with RUNYARD_WEBHOOK_ALLOWED_HOSTS"
                )
        return addresses

    def check_url(self, field: str, url: str) -> list[FieldError]:
        """Save-time check. A name that does not resolve now is accepted (it may be created
        later); it is checked again before every delivery."""
        try:
            self.check_target(url, resolve=False)
            self.check_target(url)
        except Unresolvable:
            return []
        except UnsafeTarget as exc:
            return [FieldError(field, f"refused: {exc}")]
        return []
