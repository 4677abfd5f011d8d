"""Webhook signing per the Standard Webhooks spec.

Headers: ``webhook-id`` (stable across retries), ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` — one signature per
active secret, space-separated, so a receiver keeps verifying while secrets rotate. Secrets are
``whsec_`` + base64 of 32 random bytes; the HMAC key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


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
