"""Checking that a webhook came from SmoothGuard: the Standard Webhooks signature, verified by the
official ``standardwebhooks`` package (``webhook-id``, ``webhook-timestamp`` within 5 minutes,
``webhook-signature``; any of several signatures, as during a secret rotation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify_webhook"]


def verify_webhook(payload: bytes | str, headers: Mapping[str, str], secret: str) -> Any:
    """The webhook's JSON body once its signature checks out with ``secret`` (the endpoint's
    ``whsec_…``); ``WebhookVerificationError`` otherwise. Pass the raw body, before any parsing."""
    return Webhook(secret).verify(payload, dict(headers))
