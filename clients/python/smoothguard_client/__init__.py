"""A thin, typed client for the SmoothGuard REST API (httpx + pydantic): ``SmoothGuard(url,
api_key=…)`` with ``jobs``, ``media``, ``audits``, ``datasets`` and ``webhooks``; ``wait()`` polls
with backoff and jitter until a job, audit or dataset is done; ``verify_webhook`` checks a
delivery's Standard Webhooks signature. Example: clients/python/README.md."""

from smoothguard_client.backoff import Backoff
from smoothguard_client.client import SmoothGuard
from smoothguard_client.errors import (
    ApiError,
    ConnectionFailed,
    MissingApiKey,
    SmoothGuardError,
    TransientError,
    WaitTimeout,
)
from smoothguard_client.models import (
    Audit,
    AuditProgress,
    Dataset,
    Delivery,
    Job,
    Media,
    Page,
    Sample,
    WebhookEndpoint,
    WebhookEvent,
)
from smoothguard_client.resources import DatasetInvalid
from smoothguard_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "ApiError",
    "Audit",
    "AuditProgress",
    "Backoff",
    "ConnectionFailed",
    "Dataset",
    "DatasetInvalid",
    "Delivery",
    "Job",
    "Media",
    "MissingApiKey",
    "Page",
    "Sample",
    "SmoothGuard",
    "SmoothGuardError",
    "TransientError",
    "WaitTimeout",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookVerificationError",
    "verify_webhook",
]
