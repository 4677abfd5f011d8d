"""Rate limits: ``rate_limit`` per API key, and ``rate_limit_unauthenticated`` per client address for
requests without a valid key (so guessing keys is throttled too; a valid key is never refused for
its neighbours' failures). Fixed windows of the ``limits`` library, counted in the service's Redis,
so every API replica shares the counts. Over a limit: ``OverLimit`` (429 with ``Retry-After``).

Redis down or slow: requests are served unlimited and a warning is logged (fail open: the limiter
never turns a request into a 500); after a failure Redis is not asked again for ``PAUSE_S``.
Behind a proxy the client address is the proxy's unless uvicorn trusts its forwarded headers
(``--proxy-headers --forwarded-allow-ips``)."""

from __future__ import annotations

import logging
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from shared.config import Settings
from shared.errors import OverLimit

log = logging.getLogger(__name__)
PAUSE_S = 5.0  # after Redis failed, serve without asking it for this long
REDIS_TIMEOUT_S = 0.5  # a Redis that does not answer in this long counts as down
KEY_PREFIX = "smoothguard-rate"


def parse_limit(text: str) -> RateLimitItem | None:
    """``"600/minute"`` (the ``limits`` notation); ``""`` or a zero amount: no limit."""
    if text.strip() in ("", "0"):
        return None
    item = parse(text)
    return item if item.amount > 0 else None


class RateLimits:
    def __init__(self, settings: Settings):
        self.per_key = parse_limit(settings.rate_limit)
        self.per_address = parse_limit(settings.rate_limit_unauthenticated)
        storage = RedisStorage(
            settings.redis_url,
            key_prefix=KEY_PREFIX,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self.limiter = FixedWindowRateLimiter(storage)
        self.paused_until = 0.0  # monotonic clock

    def hit_key(self, key_id: object) -> None:
        """Count a request of a valid key; ``OverLimit`` past ``rate_limit``."""
        self._hit(self.per_key, "key", str(key_id), "rate limit of this API key")

    def hit_address(self, request: Request) -> None:
        """Count a request without a valid key from the client's address; ``OverLimit`` past the limit."""
        address = request.client.host if request.client else "unknown"
        self._hit(self.per_address, "address", address, "rate limit of requests without a valid API key")

    def _hit(self, item: RateLimitItem | None, kind: str, who: str, what: str) -> None:
        if item is None or time.monotonic() < self.paused_until:
            return
        try:
            if self.limiter.hit(item, kind, who):
                return
            retry_after = math.ceil(self.limiter.get_window_stats(item, kind, who).reset_time - time.time())
        except (RedisError, OSError) as exc:
            self.paused_until = time.monotonic() + PAUSE_S
            log.warning("rate limits not enforced for %.0f s: Redis failed: %s", PAUSE_S, exc)
            return
        raise OverLimit(f"{what} ({item}) used up; retry after the window resets", max(1, retry_after))
