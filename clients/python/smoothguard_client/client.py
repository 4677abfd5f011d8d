"""``SmoothGuard``: one HTTP connection pool, the API key, retries of transient failures, and the
resources (``jobs``, ``media``, ``audits``, ``datasets``, ``webhooks``) as attributes.

What is retried, with exponential backoff and jitter (at most ``retries`` times per call):

- a connection that could not be made (nothing was sent): always;
- 429 and 503 (the API refused before doing anything), honouring ``Retry-After``: always;
- a connection broken after sending, 502 and 504: only when repeating the request is harmless — a
  read, or a create that carries an ``Idempotency-Key`` (the client sends one on every create).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from smoothguard_client.backoff import Backoff, retry_after
from smoothguard_client.errors import ApiError, ConnectionFailed, MissingApiKey, TransientError, WaitTimeout

log = logging.getLogger("smoothguard_client")
M = TypeVar("M", bound=BaseModel)
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left
NO_KEY = "no API key: pass api_key (the CLI: --key or SMOOTHGUARD_API_KEY; `smoothguard up` prints one)"


def check_key(api_key: str | None) -> str:
    """The key as a header can carry it; ``MissingApiKey`` when there is none or it cannot be sent."""
    key = (api_key or "").strip()
    if not key:
        raise MissingApiKey(NO_KEY)
    if not key.isascii() or not key.isprintable() or " " in key:
        raise MissingApiKey("the API key has spaces or characters an HTTP header cannot carry: check how it was pasted")
    return key


class SmoothGuard:
    """``with SmoothGuard("http://127.0.0.1:8000", api_key="sg_…") as sg: sg.jobs.submit(...)``.

    ``http``: an ``httpx.Client`` of your own (proxies, TLS, a test transport); its ``base_url`` is used.
    ``sleep``: what pauses between tries (tests pass a fake clock)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: Backoff | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from smoothguard_client.resources import Audits, Datasets, Jobs, MediaFiles, Webhooks

        self._auth = {"Authorization": f"Bearer {check_key(api_key)}"}
        self._http = http if http is not None else httpx.Client(base_url=base_url, timeout=timeout)
        self.retries, self.backoff, self.sleep = retries, backoff or Backoff(), sleep
        self.jobs, self.media, self.audits = Jobs(self), MediaFiles(self), Audits(self)
        self.datasets, self.webhooks = Datasets(self), Webhooks(self)

    def __enter__(self) -> SmoothGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """One API call, retried as the module says; ``ApiError`` (``TransientError`` for a
        429/502/503/504 that lasted) or ``ConnectionFailed`` when it does not succeed."""
        idempotent = method in ("GET", "HEAD", "DELETE") if idempotent is None else idempotent
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, headers={**self._auth, **(headers or {})}, **kw)
            except httpx.TransportError as exc:
                if last or not (idempotent or isinstance(exc, NOT_SENT)):
                    raise ConnectionFailed(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
                self._pause(attempt, None, f"{method} {path}: {type(exc).__name__}")
                continue
            if response.is_success:
                return response
            hint = retry_after(response)
            status = response.status_code
            if last or not (status in (429, 503) or (idempotent and status in (502, 504))):
                raise ApiError.from_response(response, hint)
            self._pause(attempt, hint, f"{method} {path} → {status}")
        raise AssertionError("unreachable")

    def _pause(self, attempt: int, hint: float | None, why: str) -> None:
        pause = max(self.backoff.pause(attempt), hint or 0.0)
        log.warning("%s; trying again in %.1f s", why, pause)
        self.sleep(pause)

    def get(self, path: str, model: type[M], **kw: Any) -> M:
        return model.model_validate(self.request("GET", path, **kw).json())

    def send(self, method: str, path: str, model: type[M], **kw: Any) -> M:
        return model.model_validate(self.request(method, path, **kw).json())

    def create(self, path: str, model: type[M], idempotency_key: str | None, **kw: Any) -> M:
        """A POST that makes something, with an ``Idempotency-Key`` (yours, or a new one): a retry after a
        lost answer gets the first request's result instead of a duplicate."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return model.model_validate(self.request("POST", path, idempotent=True, headers=headers, **kw).json())

    def poll(
        self,
        path: str,
        model: type[M],
        finished: Callable[[M], bool],
        *,
        timeout: float | None,
        backoff: Backoff,
        on_update: Callable[[M], None] | None = None,
    ) -> M:
        """GET ``path`` until ``finished``: pauses grow by ``backoff`` (never below the server's
        ``Retry-After``, which ``backoff.maximum`` caps unless it came with a 429/503); transient
        failures are logged and polled through; no limit but ``timeout`` (None: none)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: M | None = None
        attempt = 0
        while True:
            hint: float | None
            try:
                response = self.request("GET", path)
                last, hint = model.model_validate(response.json()), retry_after(response)
                if on_update is not None:
                    on_update(last)
                if finished(last):
                    return last
                hint = None if hint is None else min(hint, backoff.maximum)
            except (TransientError, ConnectionFailed) as exc:
                log.warning("%s; still waiting", exc)
                hint = exc.retry_after if isinstance(exc, ApiError) else None
            pause = max(backoff.pause(attempt), hint or 0.0)
            attempt += 1
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(f"{path} not finished after {timeout:g} s", last)
                pause = min(pause, remaining)  # one more look at the deadline
            self.sleep(pause)
