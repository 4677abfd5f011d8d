"""Delivery policy: which callback addresses may be called, what follows an attempt (delivered,
retried, given up, endpoint disabled), and when the next attempt is due."""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

from shared.errors import Invalid

Resolver = Callable[[str, int], list[str]]  # host, port → its addresses


class Unresolved(Exception):
    """The callback host does not resolve now (DNS may come back: the attempt is retried)."""


@dataclass(frozen=True)
class Outcome:
    """What follows an attempt: delivered, retried (not before ``retry_after_s`` when the receiver
    said so), given up, and whether to disable the endpoint."""

    delivered: bool
    retry: bool
    disable: bool = False
    retry_after_s: float | None = None


def classify(status: int | None, retry_after: str | None = None, now: datetime | None = None) -> Outcome:
    """``status`` None means a timeout, connection or TLS error. Retry those, 5xx and 429 (honouring
    ``Retry-After``, seconds or an HTTP date); never other 4xx; 410 Gone disables the endpoint."""
    if status is not None and 200 <= status < 300:
        return Outcome(delivered=True, retry=False)
    if status == 410:
        return Outcome(delivered=False, retry=False, disable=True)
    if status is not None and status < 500 and status != 429:
        return Outcome(delivered=False, retry=False)
    return Outcome(delivered=False, retry=True, retry_after_s=retry_after_seconds(retry_after, now))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from now; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds()) if when.tzinfo else None


def retry_delay(delays: list[float], retry: int, jitter: float, rng: random.Random) -> float:
    """Seconds from attempt ``retry`` of a series (0: the first) to the next: the schedule's step,
    scaled by a uniform factor in [1 - jitter, 1 + jitter] (receivers coming back are not hit by
    every event at once)."""
    return delays[retry] * rng.uniform(1 - jitter, 1 + jitter)


def check_url(url: str, allowlist: set[str] | frozenset[str] = frozenset()) -> None:
    """Refuse callback URLs that are not http(s) or resolve to private, loopback, link-local or
    otherwise internal addresses, unless the host is allowlisted (tests, internal receivers)."""
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise Invalid("callback URL must not contain spaces or control characters")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid("callback URL must be http(s) with a host")
    if parsed.hostname in allowlist:
        return  # resolved when called (an internal name may not resolve yet)
    try:
        callable_addresses(parsed.hostname, parsed.port or 443, allowlist)
    except Unresolved as exc:
        raise Invalid(str(exc)) from exc


def callable_addresses(
    host: str, port: int, allowlist: set[str] | frozenset[str], resolver: Resolver | None = None
) -> list[str]:
    """The addresses ``host`` resolves to (one lookup), all of them public unless the host is
    allowlisted; ``Invalid`` when one is not (DNS rebinding answers differently on the next lookup,
    so the caller connects to one of these, never to the name)."""
    try:
        addresses = (resolver or resolve)(host, port)
    except socket.gaierror as exc:
        raise Unresolved(f"callback host {host!r} does not resolve") from exc
    except UnicodeError as exc:
        raise Invalid(f"callback host {host!r} is not a valid host name") from exc
    if host not in allowlist:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                raise Invalid(f"callback URL resolves to a non-public address ({address}); allowlist it to use it")
    if not addresses:
        raise Unresolved(f"callback host {host!r} has no address")
    return addresses


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Cloud metadata services and protocol ranges that some providers answer on, though
# ``is_global`` may call them public: Alibaba's 100.100.100.200, Oracle's 192.0.0.192 (all of
# 192.0.0.0/24, the IETF protocol assignments), AWS's IPv6 fd00:ec2::254.
DENIED_NETWORKS = [ipaddress.ip_network(n) for n in ("100.100.100.200/32", "192.0.0.0/24", "fd00:ec2::254/128")]


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable and no metadata service; an IPv6 address that embeds an IPv4 one
    (IPv4-mapped, 6to4, Teredo) is judged by the IPv4 address it reaches."""
    if any(ip in net for net in DENIED_NETWORKS) or not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        return embedded is None or is_public(embedded)
    return True
