"""Admission control at the API door: a per-key rate limit and queue-depth backpressure.

Both live in the broker's Redis, so every API process shares one view:

* ``RateLimiter`` is a sliding-window log (a sorted set of request times per key, trimmed and
  checked atomically in a Lua script on Redis's own clock). Unlike a fixed window it never
  lets through twice the limit across a window boundary, and its Retry-After is exact: the
  time until enough old requests leave the window.
* ``Backlog`` holds the stage-1 backlog to ``Settings.max_queue_depth`` images *atomically*
  across every API process: a request reserves room for its images in one Lua call (refused
  when they would not fit), the ids it hands to stage 1 take the place of the reservation, and
  the stage-1 worker removes them once their batch is written. The backlog is therefore what
  was admitted and not yet screened — waiting in the list, prefetched or buffered by a worker,
  or coming back after a worker died — so neither a burst of parallel uploads (the old gate
  read a cached ``LLEN``) nor the redelivery of a killed worker's messages pushes it over.

Redis trouble fails open (logged): refusing every upload because the limiter is unreachable
would turn a metrics-grade outage into a full one; the enqueue itself still needs the broker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cascade import queues
from cascade.config import Settings
from cascade.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger(__name__)

WINDOW_S = 60.0
BACKPRESSURE_RETRY_AFTER_S = 5
BACKLOG_KEY = "cascade:backlog:stage1"  # sorted set: admitted ids (and reservations) by time
# An entry older than this is forgotten (an image lost to a broker without persistence would
# otherwise hold its place for ever; the stale sweep owns it by then).
BACKLOG_HORIZON_S = 900

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


# KEYS: backlog, stage-1 list. ARGV: horizon s, limit, count, reservation id.
# Returns {admitted (0/1), depth before}. The depth is the backlog, or the list's length when
# that is longer (messages sent to the queue directly, not through the API).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local depth = math.max(redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2]))
local n = tonumber(ARGV[3])
if depth + n > tonumber(ARGV[2]) then
  return {0, depth}
end
for i = 1, n do
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
end
return {1, depth}
"""


class Backlog:
    """The stage-1 backlog, held to ``max_depth`` images across every API process."""

    def __init__(
        self,
        client: Any,
        *,
        max_depth: int,
        queue: str = queues.STAGE1,
        key: str = BACKLOG_KEY,
        horizon_s: int = BACKLOG_HORIZON_S,
    ) -> None:
        self.client = client
        self.max_depth = max_depth
        self.queue = queue
        self.key = key
        self.horizon_s = horizon_s
        self._reserve = client.register_script(_RESERVE)
        self._held = threading.local()  # this request's reservation entries (one per thread)

    def depth(self) -> int:
        """Images admitted and not yet screened (0 when Redis cannot be read)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self.key).llen(self.queue)
            backlog, listed = pipe.execute()
        except Exception as exc:
            log.warning("queue depth unavailable, not applying backpressure: %s", exc)
            return 0
        return max(int(backlog), int(listed))

    def check(self) -> None:
        """Refuse at once when the backlog is full (before a request body is read)."""
        depth = self.depth()
        if depth >= self.max_depth:
            raise self._full(depth)

    @contextmanager
    def reserve(self, count: int) -> Iterator[None]:
        """Room for ``count`` images for the length of a request (this thread), or
        ``ServiceUnavailable``. The ids it hands to stage 1 go to ``track``, which swaps them
        for reservation entries; what is left of the reservation ends with the block."""
        token = f"reserved:{uuid.uuid4().hex}"
        try:
            admitted, depth = self._reserve(
                keys=[self.key, self.queue], args=[self.horizon_s, self.max_depth, count, token]
            )
        except Exception as exc:  # Redis trouble: fail open, the enqueue still needs the broker
            log.warning("backlog unavailable, not applying backpressure: %s", exc)
            yield
            return
        if not int(admitted):
            raise self._full(int(depth))
        self._held.entries = [f"{token}:{i}" for i in range(1, count + 1)]
        try:
            yield
        finally:
            left, self._held.entries = self._held.entries, []
            self._forget(left)

    def track(self, ids: Iterable[str]) -> None:
        """``ids`` were sent to stage 1: they count until their batch is written. They take the
        place of this thread's reservation entries in one transaction, so the backlog never
        shows a request twice (or not at all)."""
        ids = list(ids)
        if not ids:
            return
        held: list[str] = getattr(self._held, "entries", [])
        swap, self._held.entries = held[: len(ids)], held[len(ids) :]
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(self.key, dict.fromkeys(ids, time.time()))
            if swap:
                pipe.zrem(self.key, *swap)
            pipe.execute()
        except Exception as exc:
            log.warning("could not count %d images in the backlog: %s", len(ids), exc)

    def release(self, ids: Iterable[str]) -> None:
        """Stage 1 has written ``ids``' batch: they leave the backlog."""
        self._forget(list(ids))

    def _forget(self, members: list[str]) -> None:
        if not members:
            return
        try:
            self.client.zrem(self.key, *members)
        except Exception as exc:  # they expire after the horizon
            log.warning("could not release %d backlog entries: %s", len(members), exc)

    def _full(self, depth: int) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the moderation queue is full ({depth} images waiting, limit "
            f"{self.max_depth}); retry later",
            retry_after=BACKPRESSURE_RETRY_AFTER_S,
        )
