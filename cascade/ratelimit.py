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

An upload's admission is one round trip: ``Backlog.reserve`` and ``Backlog.check`` take the
request's rate-limit ``Charge`` into the same Lua call (charged first; a request refused with 429
reserves nothing; one refused with 503 has been charged, as when they were two calls). A request
that knows the ids its submissions will have reserves under those ids, so handing them to stage 1
(``track``) is no further round trip: the entry is already the id's, added before its message
was sent, so the worker's ``release`` can never come first.

Redis trouble fails open (logged): refusing every upload because the limiter is unreachable
would turn a metrics-grade outage into a full one; the enqueue itself still needs the broker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

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

# Lua functions shared by the scripts below: each script is one atomic call on Redis's clock.
# charge(log key, window s, limit, cost, member id, now) -> {allowed (0/1), used, retry s (text)}
_CHARGE = """
local function charge(key, window, limit, cost, member, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local used = redis.call('ZCARD', key)
  if used + cost > limit then
    local k = used + cost - limit
    local row = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')
    local retry = window
    if row[2] then retry = tonumber(row[2]) + window - now end
    return {0, used, tostring(retry)}
  end
  for i = 1, cost do
    redis.call('ZADD', key, now, member .. ':' .. i)
  end
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return {1, used + cost, '0'}
end
"""
# reserve(backlog, stage-1 list, horizon s, limit, members, now) -> {admitted (0/1), depth
# before}. The depth is the backlog, or the list's length when that is longer (messages sent to
# the queue directly, not through the API).
_RESERVE = """
local function reserve(backlog, list, horizon, limit, members, now)
  redis.call('ZREMRANGEBYSCORE', backlog, '-inf', now - horizon)
  local depth = math.max(redis.call('ZCARD', backlog), redis.call('LLEN', list))
  if depth + #members > limit then
    return {0, depth}
  end
  for _, member in ipairs(members) do
    redis.call('ZADD', backlog, now, member)
  end
  return {1, depth}
end
"""
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
# KEYS: the key's log. ARGV: window s, limit, cost, member id.
_SLIDING_WINDOW = (
    _CHARGE
    + _NOW
    + """
return charge(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], now)
"""
)
# KEYS: backlog, stage-1 list, then (with a charge) the key's log. ARGV: horizon s, limit,
# 'reserve' or 'check', charged (0/1), window s, rate limit, cost, member id, then the members
# to reserve. 'check' reserves nothing: not admitted when the depth is at the limit already.
# Returns {admitted, depth, allowed, used, retry}; refused by the rate limit: allowed 0 and
# nothing reserved.
_ADMIT = (
    _CHARGE
    + _RESERVE
    + _NOW
    + """
local charged = {1, 0, '0'}
if ARGV[4] == '1' then
  charged = charge(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], now)
  if charged[1] == 0 then return {0, -1, 0, charged[2], charged[3]} end
end
local limit = tonumber(ARGV[2])
local result
if ARGV[3] == 'check' then
  local depth = math.max(redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2]))
  result = {depth < limit and 1 or 0, depth}
else
  local members = {}
  for i = 9, #ARGV do members[#members + 1] = ARGV[i] end
  result = reserve(KEYS[1], KEYS[2], tonumber(ARGV[1]), limit, members, now)
end
return {result[1], result[2], 1, charged[2], charged[3]}
"""
)


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
        self.check_cost(limit=limit, cost=cost)
        try:
            allowed, used, retry = self._script(
                keys=[self.key_for(key_id)],
                args=[self.window_s, limit, cost, uuid.uuid4().hex],
            )
        except Exception as exc:  # redis.RedisError and connection trouble: fail open
            log.warning("rate limiter unavailable, letting the request through: %s", exc)
            return
        if not int(allowed):
            raise self.refusal(used=int(used), retry=float(retry), limit=limit)

    def key_for(self, key_id: int | str) -> str:
        return f"{self.namespace}:{key_id}"

    def check_cost(self, *, limit: int, cost: int) -> None:
        """A request that could never fit the limit is refused without counting."""
        if cost > limit:
            raise TooManyRequests(
                f"this request counts {cost} images but the key's limit is {limit} per "
                f"{self.window_s:g} s; send smaller batches",
                retry_after=math.ceil(self.window_s),
            )

    def refusal(self, *, used: int, retry: float, limit: int) -> TooManyRequests:
        return TooManyRequests(
            f"rate limit exceeded: {used} requests in the last {self.window_s:g} s; "
            f"the limit is {limit}",
            retry_after=max(1, math.ceil(retry)),
        )


@dataclass(frozen=True)
class Charge:
    """A request's rate-limit charge, made in the same round trip as its backlog check or
    reservation (``Backlog.check``, ``Backlog.reserve``)."""

    limiter: RateLimiter
    key_id: int | str
    limit: int
    cost: int = 1

    NONE: ClassVar[tuple[list[str], list[Any]]] = ([], [0, 0, 0, 0, ""])  # no charge

    def args(self) -> tuple[list[str], list[Any]]:
        """The admission script's charge: its extra key, and its arguments."""
        if self.cost <= 0:
            return Charge.NONE
        self.limiter.check_cost(limit=self.limit, cost=self.cost)
        key = self.limiter.key_for(self.key_id)
        return [key], [1, self.limiter.window_s, self.limit, self.cost, uuid.uuid4().hex]


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
        self._admit = client.register_script(_ADMIT)
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

    def check(self, charge: Charge | None = None) -> None:
        """Refuse at once when the backlog is full (before a request body is read); with
        ``charge``, the rate limit is charged first in the same round trip (429 over it)."""
        if charge is None:
            depth = self.depth()
            if depth >= self.max_depth:
                raise self._full(depth)
            return
        self._call(charge, "check", [])

    @contextmanager
    def reserve(
        self, count: int = 0, *, ids: Sequence[str] = (), charge: Charge | None = None
    ) -> Iterator[None]:
        """Room for ``count`` images, or for one image per id of ``ids`` (the ids the
        request's submissions will have), for the length of a request (this thread), or
        ``ServiceUnavailable``; with ``charge``, the rate limit is charged first in the same
        round trip (``TooManyRequests`` over it, and then nothing is reserved). The ids handed
        to stage 1 go to ``track``; what is left of the reservation ends with the block."""
        token = f"reserved:{uuid.uuid4().hex}"
        members = list(ids) or [f"{token}:{i}" for i in range(1, count + 1)]
        if not self._call(charge, "reserve", members):
            yield
            return
        self._held.entries = members
        try:
            yield
        finally:
            left, self._held.entries = self._held.entries, []
            self._forget(left)

    def _call(self, charge: Charge | None, mode: str, members: list[str]) -> bool:
        """One admission call: charge, then reserve ``members`` (``mode`` 'reserve') or check
        the depth ('check'). Raises the refusal; False when Redis could not be asked (fail
        open)."""
        keys, charged = charge.args() if charge is not None else Charge.NONE
        try:
            admitted, depth, allowed, used, retry = self._admit(
                keys=[self.key, self.queue, *keys],
                args=[self.horizon_s, self.max_depth, mode, *charged, *members],
            )
        except Exception as exc:  # Redis trouble: fail open, the enqueue still needs the broker
            log.warning("backlog unavailable, not applying backpressure: %s", exc)
            return False
        if not int(allowed):
            assert charge is not None
            raise charge.limiter.refusal(used=int(used), retry=float(retry), limit=charge.limit)
        if not int(admitted):
            raise self._full(int(depth))
        return True

    def track(self, ids: Iterable[str]) -> None:
        """``ids`` were sent to stage 1: they count until their batch is written. Ids reserved
        under their own names already are their entries (no round trip); any others take the
        place of this thread's reservation entries in one transaction, so the backlog never
        shows a request twice (or not at all)."""
        ids = list(ids)
        held: list[str] = getattr(self._held, "entries", [])
        named = set(ids).intersection(held)  # kept: no longer this request's to forget
        held = [h for h in held if h not in named]
        ids = [i for i in ids if i not in named]
        self._held.entries = held
        if not ids:
            return
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
