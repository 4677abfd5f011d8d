"""Webhook signing and delivery policy per the Standard Webhooks spec.

Headers: ``webhook-id`` (stable across retries), ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` — one signature per
active secret, space-separated, so a receiver keeps verifying while secrets rotate. Secrets are
``whsec_`` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

SECRET_PREFIX = "whsec_"
MAX_ATTEMPTS = 8
TOLERANCE_S = 300


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secrets start with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers, signed with every active secret (rotation sends two)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(secret: str, hdrs: dict[str, str], body: bytes, now: int) -> bool:
    """What a receiver does: a fresh timestamp and one matching ``v1`` signature."""
    timestamp = int(hdrs["webhook-timestamp"])
    if abs(now - timestamp) > TOLERANCE_S:
        return False
    expected = sign(secret, hdrs["webhook-id"], timestamp, body)
    return any(hmac.compare_digest(expected, sig) for sig in hdrs["webhook-signature"].split())


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
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("callback URL must be http(s) with a host")
    if parsed.hostname in allowlist:
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"callback host {parsed.hostname!r} does not resolve") from exc
    except UnicodeError as exc:
        raise ValueError(f"callback host {parsed.hostname!r} is not a valid host name") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise ValueError(f"callback URL resolves to a non-public address ({ip}); allowlist it to use it")
