"""When to try again: exponential backoff with jitter, and the server's ``Retry-After``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class Backoff:
    """Pauses of ``initial`` seconds growing by ``factor`` up to ``maximum``; each drawn uniformly from
    ``[(1 - jitter)·p, p]`` so that many clients that failed together do not retry together."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.5

    def pause(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause before try ``attempt + 1`` (``attempt`` counts from 0)."""
        ceiling = min(self.maximum, self.initial * self.factor ** min(attempt, 64))  # no overflow in a days-long wait
        return ceiling * (1 - self.jitter * (rng or random).random())


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
