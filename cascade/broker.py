"""Celery's Redis transport with an atomic hand-over of each message to its consumer.

Why: kombu's Redis transport takes a message with ``BRPOP`` and only then, in a second command,
records it as unacknowledged (``HSET unacked``). Between the two the message exists only in the
consumer's socket: Redis answered the ``BRPOP`` and no longer has it. A worker SIGKILLed (or an
evicted pod) in that moment loses the message for good — neither the queue nor the unacked hash
holds it, so no visibility timeout ever brings it back. The moment is not short: a stage worker
sends its next ``BRPOP`` and then runs a whole batch from the flush timer before it reads the
answer, and when its prefetch is full it leaves the answer unread on purpose. That is how one
image in ``cascade bench load`` was accepted and never decided.

Here a message never leaves Redis on its own: it is *moved* (``BLMOVE``, or ``BRPOPLPUSH`` on
Redis < 6.2, or an atomic Lua claim when a consumer reads several queues) from its queue to an
in-flight list of that consumer, and the step that records it as unacknowledged removes it from
the in-flight list in the same ``MULTI``. Each consumer keeps an ``alive`` key with a TTL of the
visibility timeout; every consumer's periodic restore pass puts the in-flight lists of consumers
whose key has expired back on their queues, exactly as kombu's pass already does for unacked
messages held longer than the visibility timeout. Redelivery is harmless: every write
downstream is idempotent.

Each queue is one Redis list (``priority_steps = [0]``): Cascade sends no priorities, and one key
per queue is what makes the move a single command (and ``LLEN queue`` the whole depth).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

REGISTRY_KEY = "_cascade.inflight"  # hash: in-flight list -> [queue list, consumer's alive key]
MULTI_QUEUE_WAIT_S = 0.2  # a consumer of several queues blocks on one at a time, briefly

# KEYS: queue_1, inflight_1, queue_2, inflight_2, ..., then the unacknowledged hash and its
# index. ARGV: the most messages to take, the time now. Takes up to that many waiting messages
# of the first queue that has any and records each as unacknowledged on the spot, exactly as
# ``QoS.append`` would (hash: delivery tag -> [message, exchange, routing key]; index: tag -> time),
# so a message is always in its queue or in the unacknowledged hash, never only in a socket. One
# round trip for what took two per message (the move, then the record). A message it cannot read
# a delivery tag from goes to the in-flight list instead and is recorded by ``QoS.append``.
# Returns {queue number, messages, recorded (1/0 each)} or false.
_CLAIM = """
local n = #KEYS - 2
local hash, index = KEYS[n + 1], KEYS[n + 2]
local most = tonumber(ARGV[1])
for i = 1, n, 2 do
  local items, recorded = {}, {}
  while #items < most do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, msg = pcall(cjson.decode, item)
    local props = ok and type(msg) == 'table' and msg['properties']
    local tag = type(props) == 'table' and props['delivery_tag']
    local info = type(props) == 'table' and props['delivery_info']
    if type(tag) == 'string' and type(info) == 'table' and type(info['exchange']) == 'string'
        and type(info['routing_key']) == 'string' then
      redis.call('HSET', hash, tag, '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ','
                 .. cjson.encode(info['routing_key']) .. ']')
      redis.call('ZADD', index, ARGV[2], tag)
      recorded[#recorded + 1] = 1
    else
      redis.call('LPUSH', KEYS[i + 1], item)
      recorded[#recorded + 1] = 0
    end
    items[#items + 1] = item
  end
  if #items > 0 then
    return {(i + 1) / 2, items, recorded}
  end
end
return false
"""
CLAIM_MOST = 64  # messages per claim at most (the prefetch limit applies below that)

# KEYS: alive, inflight, queue, registry. ARGV: registry field, "if-dead" or "always".
_RESTORE = """
if ARGV[2] == 'if-dead' and redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local n = 0
while true do
  local item = redis.call('RPOP', KEYS[2])
  if not item then break end
  redis.call('RPUSH', KEYS[3], item)
  n = n + 1
end
redis.call('HDEL', KEYS[4], ARGV[1])
return n
"""


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """Records a claimed message as unacknowledged and drops it from the in-flight list in one
    ``MULTI``; the periodic restore pass also returns dead consumers' in-flight messages."""

    _ack_pipe: Any = None  # set while acknowledgements are batched (``batched_acks``)
    _ack_tags: list[str]

    def append(self, message: Any, delivery_tag: str) -> None:
        claimed = self.channel._claimed
        if claimed is None:  # not from our poll (e.g. a message rejected back by kombu)
            super().append(message, delivery_tag)
            return
        inflight, raw, recorded = claimed
        if not recorded:
            delivery = message.delivery_info
            record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: time()}).hset(
                    self.unacked_key, delivery_tag, record
                ).lrem(inflight, 1, raw).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self._ack_pipe is None:
            super().ack(delivery_tag)
            return
        self._remove_from_indices(delivery_tag, self._ack_pipe)
        self._ack_tags.append(delivery_tag)

    @contextmanager
    def batched_acks(self) -> Iterator[None]:
        """Acknowledgements made inside the block go to Redis in one round trip at its end (a
        stage batch acknowledges all its messages at once, after its commit), not one each.
        Should that round trip fail, the messages stay unacknowledged and come back after the
        visibility timeout, as when a single acknowledgement fails (every step is
        idempotent)."""
        if self._ack_pipe is not None:  # nested: the outer block sends them
            yield
            return
        with self.channel.conn_or_acquire() as client:
            self._ack_pipe, self._ack_tags = client.pipeline(), []
            try:
                yield
            finally:
                pipe, tags = self._ack_pipe, self._ack_tags
                self._ack_pipe, self._ack_tags = None, []
                if tags:
                    try:
                        pipe.execute()
                    except Exception as exc:
                        log.warning("could not acknowledge %d messages (they come back after "
                                    "the visibility timeout): %s", len(tags), exc)  # fmt: skip
                    else:
                        for tag in tags:
                            virtual.QoS.ack(self, tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        self.channel.keep_alive(force=True)
        self.channel.restore_orphans()
        super().restore_visible(start=start, num=num, interval=interval)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel whose poll moves a message into this consumer's in-flight list."""

    QoS = QoS
    priority_steps = [0]  # noqa: RUF012 (kombu's class attribute)
    _in_poll: Any = False
    _brpop_sent_at: Any = None
    _pool_client: tuple[Any, Any] | None = None  # (connection pool, a client on it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.consumer_id = uuid.uuid4().hex
        # (in-flight list, message, recorded as unacknowledged already) of the message being
        # delivered now
        self._claimed: tuple[str, bytes, bool] | None = None
        # (command, queues it reads) of each poll sent and not yet answered, oldest first: a
        # reconnect inside redis-py can leave two on one connection; answers come in order.
        self._polls: deque[tuple[str, list[str]]] = deque()
        self._claim_next = True  # try the non-blocking claim (several at once) before blocking
        self._alive_due = 0.0
        self._registered_inflight: set[str] = set()
        self._orphaned = False  # our in-flight lists hold messages whose answer was lost
        self._blmove: bool | None = None
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError("cascade.broker does not support global_keyprefix")

    # -- keys --------------------------------------------------------------------------------
    @property
    def alive_key(self) -> str:
        return f"_cascade.alive{self.sep}{self.consumer_id}"

    def inflight_key(self, queue: str) -> str:
        return f"_cascade.inflight{self.sep}{queue}{self.sep}{self.consumer_id}"

    @property
    def alive_ttl_s(self) -> int:
        return max(5, int(self.visibility_timeout))

    # -- liveness and restore ----------------------------------------------------------------
    def keep_alive(self, *, force: bool = False) -> None:
        """Refresh this consumer's ``alive`` key and register its in-flight lists: at once for a
        queue not registered yet (before its first poll), else every third of the TTL."""
        queues = list(self.active_queues)
        fresh = {self.inflight_key(q) for q in queues} - self._registered_inflight
        if not (force or fresh or monotonic() >= self._alive_due):
            return
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
            pipe.set(self.alive_key, "1", ex=self.alive_ttl_s)
            for queue in queues:
                value = dumps([self._q_for_pri(queue, 0), self.alive_key])
                pipe.hset(REGISTRY_KEY, self.inflight_key(queue), value)
            pipe.execute()
        self._registered_inflight.update(self.inflight_key(q) for q in queues)
        self._alive_due = monotonic() + self.alive_ttl_s / 3

    def restore_orphans(self) -> int:
        """Put the in-flight messages of consumers that are no longer alive back on their
        queues. Returns how many were restored."""
        restored = 0
        with self.conn_or_acquire() as client:
            for field, value in (client.hgetall(REGISTRY_KEY) or {}).items():
                inflight = bytes_to_str(field)
                queue, alive = loads(bytes_to_str(value))
                n = int(client.eval(_RESTORE, 4, alive, inflight, queue, REGISTRY_KEY,
                                    inflight, "if-dead"))  # fmt: skip
                if n > 0:
                    log.warning("restored %d in-flight message(s) of a dead consumer to %s",
                                n, queue)  # fmt: skip
                    restored += n
        return restored

    def release_inflight(self) -> int:
        """Put this consumer's own in-flight messages back (their answers will never be read:
        the channel closes, or the connection that carried them was lost)."""
        restored = 0
        with self.conn_or_acquire() as client:
            for inflight in list(self._registered_inflight):
                queue = self._q_for_pri(inflight.split(self.sep)[1], 0)
                restored += max(0, int(client.eval(_RESTORE, 4, self.alive_key, inflight, queue,
                                                   REGISTRY_KEY, inflight, "always")))  # fmt: skip
                self._registered_inflight.discard(inflight)  # unregistered: register again
        return restored

    # -- the poll ----------------------------------------------------------------------------
    def _uses_blmove(self) -> bool:
        if self._blmove is None:
            with self.conn_or_acquire() as client:
                version = str(client.info("server").get("redis_version", "0"))
            major, minor = (int(x) for x in [*version.split("."), "0"][:2])
            self._blmove = (major, minor) >= (6, 2)
        return self._blmove

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if self._orphaned or monotonic() >= self._alive_due:
            # No poll is outstanding here, so whatever our in-flight lists hold is an answer
            # that will never be read (a lost connection): put it back.
            self.release_inflight()
            self._orphaned = False
        self.keep_alive()
        command = self._poll_command(queues, timeout)
        connection = self.client.connection
        self._brpop_sent_at = monotonic()
        connection.send_command(*command)
        # Only now: redis-py may have reconnected inside send_command (its health check), and
        # kombu's disconnect hook clears the poll state it finds.
        self._polls.append((str(command[0]), [queues[0]] if command[0] != "EVAL" else queues))
        self._in_poll = connection

    def _poll_command(self, queues: list[str], timeout: float | None) -> list[Any]:
        if self._claim_next:
            keys: list[str] = []
            for queue in queues:
                keys += [self._q_for_pri(queue, 0), self.inflight_key(queue)]
            keys += [self.unacked_key, self.unacked_index_key]
            return ["EVAL", _CLAIM, len(keys), *keys, self._claim_most(), time()]
        queue = queues[0]
        wait = self.brpop_timeout if timeout is None else timeout
        if len(queues) > 1:
            wait = min(wait or MULTI_QUEUE_WAIT_S, MULTI_QUEUE_WAIT_S)
        src, dst = self._q_for_pri(queue, 0), self.inflight_key(queue)
        if self._uses_blmove():
            return ["BLMOVE", src, dst, "RIGHT", "LEFT", wait or 0]
        return ["BRPOPLPUSH", src, dst, int(max(1, wait or 0))]

    def _claim_most(self) -> int:
        """How many messages one claim may take: what the prefetch limit still allows."""
        room = self.qos.can_consume_max_estimate()
        return max(1, min(CLAIM_MOST, room if room is not None else CLAIM_MOST))

    def _brpop_read(self, **options: Any) -> bool:
        try:
            command, queues = self._polls.popleft()
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            queue, items = self._messages_of(command, queues, reply)
            if not items:
                # Nothing waiting: block next time (a claim cannot); after a blocking wait,
                # claim again.
                self._claim_next = command != "EVAL"
                if command != "EVAL":
                    self._queue_cycle.rotate(queue)
                raise kombu_redis.Empty()
            self._claim_next = True
            self._queue_cycle.rotate(queue)
            self._deliver_all(queue, items)
            return True
        finally:
            self._in_poll = self.client.connection if self._polls else None
            self._flush_brpop_reauth()

    def _deliver_all(self, queue: str, items: list[tuple[bytes, bool]]) -> None:
        """Hand each message to its consumer. Should a hand-over fail, the messages after it
        (recorded as unacknowledged, never delivered here) are put back on their queue at once
        instead of waiting out the visibility timeout."""
        inflight = self.inflight_key(queue)
        for n, (item, recorded) in enumerate(items):
            self._claimed = (inflight, item, recorded)
            try:
                self.connection._deliver(loads(bytes_to_str(item)), queue)
            except BaseException:
                self._restore_undelivered(items[n + 1 :])
                raise
            finally:
                self._claimed = None

    def _restore_undelivered(self, items: list[tuple[bytes, bool]]) -> None:
        for item, recorded in items:
            if recorded:
                try:
                    tag = loads(bytes_to_str(item))["properties"]["delivery_tag"]
                    self.qos.restore_by_tag(tag, leftmost=True)
                except Exception:  # still unacknowledged: back after the visibility timeout
                    log.warning("could not put back a claimed message", exc_info=True)

    @staticmethod
    def _messages_of(
        command: str, queues: list[str], reply: Any
    ) -> tuple[str, list[tuple[bytes, bool]]]:
        """(queue, [(message, recorded as unacknowledged already)]) of a poll's reply."""
        if command == "EVAL":
            if not reply:
                return queues[0], []
            index, items, recorded = reply
            return queues[int(index) - 1], [
                (item, bool(int(r))) for item, r in zip(items, recorded, strict=True)
            ]
        return queues[0], [(reply, False)] if reply else []

    def _poll_error(self, type: str, **options: Any) -> None:
        if type == "BRPOP":
            self._orphaned = True  # whatever the answer carried stays in our in-flight list
            self._polls.clear()
        super()._poll_error(type, **options)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """kombu's, without a new client object for every command: kombu makes one for each
        publish and each acknowledgement, and redis-py builds ~170 response callbacks for every
        one (about a fifth of a millisecond of an upload's CPU). A client is a handle on the
        connection pool (safe to share between threads for plain commands; a pipeline is its
        own object), so one per pool does; a new pool (after a fork) gets a new one."""
        if client:
            yield client
            return
        pool = self.pool
        cached = self._pool_client
        if cached is None or cached[0] is not pool:
            cached = self._pool_client = (pool, self._create_client())
        yield cached[1]

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._polls and self._in_poll is connection:
            self._orphaned = True
            self._polls.clear()
        super()._on_connection_disconnect(connection)

    def close(self) -> None:
        if not self.closed and self._registered_inflight:
            self._return_inflight()
        super().close()

    def _return_inflight(self) -> None:
        """At close: read what is still on its way (kombu requeues it with the unacknowledged
        messages), then put back what our in-flight lists hold and drop our alive key."""
        self._closing = True
        while self._polls:
            try:
                self._brpop_read()
            except kombu_redis.Empty:
                pass
            except self.connection_errors:
                break
        try:
            self.release_inflight()
            with self.conn_or_acquire() as client:
                client.delete(self.alive_key)
        except self.connection_errors:
            log.warning("could not return in-flight messages at close; another consumer's "
                        "restore pass will, after the visibility timeout")  # fmt: skip


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with ``cascade.broker.Channel``."""

    Channel = Channel
