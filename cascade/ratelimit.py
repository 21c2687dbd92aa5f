"""Admission control at the API door: a per-key rate limit and queue-depth backpressure.

Both live in the broker's Redis, so every API process shares one view:

* ``RateLimiter`` is a sliding-window log (a sorted set of request times per key, trimmed and
  checked atomically in a Lua script on Redis's own clock). Unlike a fixed window it never
  lets through twice the limit across a window boundary, and its Retry-After is exact: the
  time until enough old requests leave the window.
* ``Backpressure`` refuses uploads while the stage-1 queue is longer than
  ``Settings.max_queue_depth``. Celery's Redis transport keeps each queue as a list named
  after it, so its depth is one ``LLEN``; the answer is cached for about a second so a burst
  of uploads costs one round trip, not one each.

Redis trouble fails open (logged): refusing every upload because the limiter is unreachable
would turn a metrics-grade outage into a full one; the enqueue itself still needs the broker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from cascade import queues
from cascade.config import Settings
from cascade.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger(__name__)

WINDOW_S = 60.0
BACKPRESSURE_RETRY_AFTER_S = 5

# KEYS[1]: the key's log. ARGV: window seconds, limit, cost, member id.
# Returns {allowed (0/1), used, retry_after seconds as a string}.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used + cost > limit then
  local k = used + cost - limit
  local row = redis.call('ZRANGE', KEYS[1], k - 1, k - 1, 'WITHSCORES')
  local retry = window
  if row[2] then retry = tonumber(row[2]) + window - now end
  return {0, used, tostring(retry)}
end
for i = 1, cost do
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {1, used + cost, '0'}
"""


def redis_client(url: str) -> Any:
    """A client that gives up fast: admission checks sit on every request's path."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1)
    )


def redis_for(settings: Settings) -> Any | None:
    """A Redis client on the broker, or None when the broker is not Redis (limits are off)."""
    url = settings.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis_client(url)


class RateLimiter:
    """At most ``limit`` units per key in any sliding ``window_s`` seconds."""

    def __init__(
        self, client: Any, *, window_s: float = WINDOW_S, namespace: str = "cascade:rl"
    ) -> None:
        self.client = client
        self.window_s = window_s
        self.namespace = namespace
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, key_id: int | str, *, limit: int, cost: int = 1) -> None:
        """Count ``cost`` units for ``key_id``; raise ``TooManyRequests`` when over ``limit``."""
        if cost > limit:
            raise TooManyRequests(
                f"this request counts {cost} images but the key's limit is {limit} per "
                f"{self.window_s:g} s; send smaller batches",
                retry_after=math.ceil(self.window_s),
            )
        try:
            allowed, used, retry = self._script(
                keys=[f"{self.namespace}:{key_id}"],
                args=[self.window_s, limit, cost, uuid.uuid4().hex],
            )
        except Exception as exc:  # redis.RedisError and connection trouble: fail open
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            return
        if not int(allowed):
            raise TooManyRequests(
                f"rate limit exceeded: {int(used)} requests in the last {self.window_s:g} s; "
                f"the limit is {limit}",
                retry_after=max(1, math.ceil(float(retry))),
            )


class Backpressure:
    """Refuses new work while the stage-1 queue is deeper than ``max_depth``."""

    def __init__(
        self,
        client: Any,
        *,
        max_depth: int,
        queue: str = queues.STAGE1,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.max_depth = max_depth
        self.queue = queue
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._depth = 0
        self._read_at = -math.inf

    def depth(self) -> int:
        """The queue's length, read at most once per ``ttl_s`` (0 when Redis cannot be read)."""
        with self._lock:
            now = self.clock()
            if now - self._read_at >= self.ttl_s:
                try:
                    self._depth = int(self.client.llen(self.queue))
                except Exception as exc:
                    log.warning("queue depth unavailable, not applying backpressure: %s", exc)
                    self._depth = 0
                self._read_at = now
            return self._depth

    def check(self) -> None:
        depth = self.depth()
        if depth > self.max_depth:
            raise ServiceUnavailable(
                f"the moderation queue is full ({depth} images waiting, limit "
                f"{self.max_depth}); retry later",
                retry_after=BACKPRESSURE_RETRY_AFTER_S,
            )
