"""What the domain refuses, by kind. The message is for the caller; the API turns each kind into
one HTTP status (``api/errors.py``), so nothing here knows about HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses; ``str(exc)`` says why."""


class Invalid(DomainError):
    """The input breaks a rule or a bound of the deployment."""


class NotFound(DomainError):
    """No such thing, or it belongs to another tenant (the two are indistinguishable)."""


class Conflict(DomainError):
    """The input is fine but the current state refuses it (already exists, already finished)."""


class InProgress(Conflict):
    """Another request with the same Idempotency-Key is being processed; retrying shortly may succeed."""


class OverLimit(DomainError):
    """A rate limit or a quota is used up; the same request may succeed after ``retry_after_s`` seconds."""

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.retry_after_s = retry_after_s
