"""Webhook targets: malformed URLs are refused with a reason (never an exception of another
kind), and IPv6 addresses that embed an IPv4 address are judged by that IPv4 address."""

from __future__ import annotations

import ipaddress

import pytest

from app.notify.outbound import (
    MAX_URL_LENGTH,
    OutboundPolicy,
    Unresolvable,
    UnsafeTarget,
    embedded_ipv4,
)


def _policy(
    answers: dict[str, list[str]] | None = None, allowed: tuple[str, ...] = ()
) -> OutboundPolicy:
    table = answers or {}

    def resolve(host: str, _port: int) -> list[str]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return OutboundPolicy(allowed, resolver=resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1", "cannot be parsed"),
        ("http://[zz]/", "cannot be parsed"),
        ("http://" + "a" * 64 + ".example.com/", "label"),
        ("http://a..b.example.com/", "label"),
        ("http://" + ".".join(["a" * 60] * 5) + "/", "253"),
        ("http://hooks.example.com/" + "a" * 500_000, str(MAX_URL_LENGTH)),
        ("http://[::1]:99999/", "port"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    policy = _policy({"hooks.example.com": ["93.184.216.34"]})
    with pytest.raises(UnsafeTarget) as refused:
        policy.check_target(url)
    assert reason in str(refused.value)
    [error] = policy.check_url("webhook_url", url)
    assert error.field == "webhook_url" and error.message.startswith("refused:")


def test_a_resolver_that_chokes_on_a_name_means_unresolvable() -> None:
    def choking(_host: str, _port: int) -> list[str]:
        raise UnicodeError("label empty or too long")

    policy = OutboundPolicy((), resolver=choking)
    with pytest.raises(Unresolvable):
        policy.check_target("http://hooks.example.com/")


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("64:ff9b::7f00:1", ["127.0.0.1"]),  # NAT64, RFC 6052
        ("64:ff9b::a9fe:a9fe", ["169.254.169.254"]),
        ("2002:c0a8:101::1", ["192.168.1.1"]),  # 6to4
        ("::127.0.0.1", ["127.0.0.1"]),  # IPv4-compatible
        ("::ffff:10.0.0.1", ["10.0.0.1"]),  # IPv4-mapped
        ("::ffff:0:10.0.0.1", ["10.0.0.1"]),  # SIIT
        # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted in the last 32 bits)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", ["65.54.227.120", "127.0.0.1"]),
        ("2606:4700::1111", []),
    ],
)
def test_embedded_ipv4_is_extracted(address: str, inner: list[str]) -> None:
    found = embedded_ipv4(ipaddress.IPv6Address(address))
    assert [str(a) for a in found] == inner


@pytest.mark.parametrize(
    "host",
    [
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::7f00:1",
        "64:ff9b:1::808:808",  # local-use NAT64: where the IPv4 sits is the operator's choice
        "2002:7f00:1::",
        "2002:a00:1::1",
        "2002:a9fe:a9fe::",
        "::127.0.0.1",
        "::10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:0:127.0.0.1",
        "::ffff:0:a00:1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo client 10.0.0.1
    ],
)
def test_ipv6_literals_embedding_private_ipv4_are_refused(host: str) -> None:
    policy = _policy()
    url = f"http://[{host}]:8080/hook"
    with pytest.raises(UnsafeTarget, match="embeds"):
        policy.check_target(url)
    assert policy.check_url("webhook_url", url)


def test_a_name_resolving_to_an_embedding_address_is_refused() -> None:
    # A DNS64 resolver answers AAAA 64:ff9b::<IPv4> for a name with only an A record.
    policy = _policy({"hooks.example.com": ["64:ff9b::a9fe:a9fe"]})
    with pytest.raises(UnsafeTarget, match="resolves to 64:ff9b::a9fe:a9fe"):
        policy.check_target("https://hooks.example.com/x")


@pytest.mark.parametrize(
    "host", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2606:4700::1111"]
)
def test_ipv6_literals_embedding_public_ipv4_pass(host: str) -> None:
    assert _policy().check_target(f"http://[{host}]/hook") == [host]


def test_the_allow_list_applies_to_the_embedded_address() -> None:
    policy = _policy(allowed=("127.0.0.1/32",))
    assert policy.check_target("http://[::ffff:127.0.0.1]:9000/") == ["::ffff:127.0.0.1"]
    assert policy.check_target("http://[64:ff9b::7f00:1]:9000/") == ["64:ff9b::7f00:1"]
    with pytest.raises(UnsafeTarget):
        policy.check_target("http://[64:ff9b::7f00:2]:9000/")


def test_unicode_host_names_within_limits_pass() -> None:
    policy = _policy({"bücher.example": ["93.184.216.34"]})
    assert policy.check_target("https://bücher.example/hook") == ["93.184.216.34"]
