"""Delivery policy: which callback URLs are allowed, and what follows an attempt (retry with
backoff, stop, disable the endpoint)."""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from shared.errors import Invalid

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Outcome:
    """What to do after an attempt: retry (after ``delay_s``), stop, and whether to disable the endpoint."""

    delivered: bool
    retry: bool
    delay_s: float = 0.0
    disable: bool = False


def backoff(attempt: int, rng: random.Random, base: float = 2.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)]."""
    return rng.uniform(0, min(cap, base * 2**attempt))


def classify(status: int | None, attempt: int, rng: random.Random, retry_after: str | None = None) -> Outcome:
    """``status`` None means a timeout or connection error. Retry timeouts, 5xx and 429 (honouring
    ``Retry-After`` seconds); never other 4xx; 410 Gone disables the endpoint."""
    if status is not None and 200 <= status < 300:
        return Outcome(delivered=True, retry=False)
    if status == 410:
        return Outcome(delivered=False, retry=False, disable=True)
    retryable = status is None or status >= 500 or status == 429
    if not retryable or attempt + 1 >= MAX_ATTEMPTS:
        return Outcome(delivered=False, retry=False)
    delay = backoff(attempt, rng)
    if status == 429 and retry_after and retry_after.isdigit():
        delay = max(delay, float(retry_after))
    return Outcome(delivered=False, retry=True, delay_s=delay)


def check_url(url: str, allowlist: set[str] | frozenset[str] = frozenset()) -> None:
    """Refuse callback URLs that are not http(s) or resolve to private, loopback, link-local or
    otherwise internal addresses, unless the host is allowlisted (tests, internal receivers)."""
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise Invalid("callback URL must not contain spaces or control characters")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid("callback URL must be http(s) with a host")
    if parsed.hostname in allowlist:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise Invalid(f"callback host {parsed.hostname!r} does not resolve") from exc
    except UnicodeError as exc:
        raise Invalid(f"callback host {parsed.hostname!r} is not a valid host name") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not is_public(ip):
            raise Invalid(f"callback URL resolves to a non-public address ({ip}); allowlist it to use it")


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
