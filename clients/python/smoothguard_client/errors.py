"""The client's errors: an API's problem+json answer, a missing key, a wait that ran out of time."""

from __future__ import annotations

from typing import Any

import httpx


class SmoothGuardError(RuntimeError):
    """Base of every error this client raises."""


class MissingApiKey(SmoothGuardError, ValueError):
    """No API key was given: the API answers every ``/v1`` request 401 without one."""


class ApiError(SmoothGuardError):
    """The API answered with an error (RFC 9457 problem details when it could): ``status``, ``title``,
    ``detail``, the validation ``errors`` list when there is one, and the whole ``problem``."""

    def __init__(self, method: str, path: str, status: int, problem: dict[str, Any], retry_after: float | None = None):
        self.method, self.path, self.status, self.problem = method, path, status, problem
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", problem.get("title", "")))
        self.errors: list[Any] = list(problem.get("errors") or [])
        self.retry_after = retry_after
        super().__init__(f"{method} {path} → {status}: {self.detail}")

    @classmethod
    def from_response(cls, response: httpx.Response, retry_after: float | None = None) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        problem = body if isinstance(body, dict) else {"detail": response.text or response.reason_phrase}
        error = TransientError if response.status_code in TRANSIENT_STATUSES else ApiError
        return error(response.request.method, response.request.url.path, response.status_code, problem, retry_after)


class TransientError(ApiError):
    """A 429, 502, 503 or 504 still there after the retries: worth trying again later."""


class ConnectionFailed(SmoothGuardError):
    """The API could not be reached (or the connection broke) after the retries."""


class WaitTimeout(SmoothGuardError, TimeoutError):
    """``wait(..., timeout=…)`` ran out before the resource finished; ``last`` is what was seen last."""

    def __init__(self, message: str, last: Any = None):
        super().__init__(message)
        self.last = last


TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
