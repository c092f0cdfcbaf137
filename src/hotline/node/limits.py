"""Request rate limits on the link endpoints, per source address.

A token bucket per source: ``burst`` requests at once, refilled at ``per_second``. Requests over
the limit get ``429 rate_limited`` before any parsing or cryptography, so one flooding address
cannot starve the node's other peers. The number of addresses tracked is bounded (the least
recently seen are forgotten), so spoofed sources cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

#: Most source addresses whose buckets are kept at once.
MAX_TRACKED_SOURCES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_second: float, burst: float) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_second > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        """Take one token from ``source``'s bucket at monotonic time ``now``; False if empty."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[source] = bucket
            if len(self._buckets) > MAX_TRACKED_SOURCES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.per_second)
            bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


__all__ = ["MAX_TRACKED_SOURCES", "RateLimiter"]
