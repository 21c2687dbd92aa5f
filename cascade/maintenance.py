"""Periodic upkeep that beat schedules: mirror state into gauges, sweep for stale work.

Kept apart from ``cascade.metrics`` (which only defines and records metrics and imports
nothing of ours) because these jobs read the database and talk to the broker.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select

from cascade import backlog, metrics, queues, rollup
from cascade.context import Context
from cascade.db.schema import PENDING_STATES, State, Submission, utcnow
from cascade.db.session import session_scope
from cascade.dispatch import Dispatcher
from cascade.stats import active_threshold_version, review_backlog
from cascade.tasknames import CALLBACK_TASK, stage_task

log = logging.getLogger(__name__)


EPOCH_KEY = "cascade:broker-epoch"  # lives exactly as long as the broker's data


class ListLengths(Protocol):
    """What ``refresh_gauges`` needs of a broker client: Redis' ``LLEN`` (redis-py has it)."""

    def llen(self, name: str) -> Any: ...


class MarkerStore(Protocol):
    """What ``requeue_after_broker_loss`` needs of a broker client: Redis' ``SET ... NX``."""

    def set(self, name: str, value: str, *, nx: bool = ...) -> Any: ...


class BrokerClient(ListLengths, MarkerStore, Protocol):
    """A Redis client on the broker."""


def broker_lists(broker_url: str | None) -> BrokerClient | None:
    """A Redis client on the broker (queues are Redis lists), or None for other brokers."""
    url = str(broker_url or "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    client: BrokerClient = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


def refresh_gauges(context: Context, broker_client: ListLengths | None) -> dict[str, Any]:
    """Set the gauges that mirror state (queue depths, review backlog and age, the active
    threshold version) and return what was set.

    Called periodically by the maintenance worker and at scrape time by the web app. Queue
    depth is Redis ``LLEN`` of each queue in ``cascade.queues`` (Celery's Redis transport keeps
    a queue in a list of the same name); with no broker client the queue gauges are left alone.
    """
    depths: dict[str, int] = {}
    if broker_client is not None:
        for name in queues.ALL:
            depths[name] = int(broker_client.llen(name) or 0)
    with context.sessions() as session:
        backlog, oldest = review_backlog(session)
        version = active_threshold_version(session)
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    metrics.set_state_gauges(depths, backlog, age, version)
    return {
        "queues": depths,
        "review_backlog": backlog,
        "review_oldest_age_s": age,
        "threshold_version": version,
    }


def requeue_stale(context: Context, dispatcher: Dispatcher, older_than_s: int) -> int:
    """Re-enqueue what a lost message left behind: undecided submissions and decisions whose
    callback was never delivered. Everything downstream is idempotent, so a duplicate is
    harmless; the age cut-off keeps the sweep away from work still in the queues."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with context.sessions() as session:
        rows = session.execute(
            select(Submission.id, Submission.state).where(
                Submission.state.in_(PENDING_STATES), Submission.created_at < cutoff
            )
        ).all()
        undelivered = session.scalars(
            select(Submission.id).where(
                Submission.state == State.DECIDED,
                Submission.callback_url.is_not(None),
                Submission.callback_sent_at.is_(None),
                Submission.decided_at < cutoff,
            )
        ).all()
    sends = [(stage_task(2 if state == State.STAGE2 else 1), (sid,)) for sid, state in rows]
    sends += [(CALLBACK_TASK, (sid,)) for sid in undelivered]
    dispatcher.send_after_commit(sends)
    if sends:
        log.warning("requeued %d stale submissions, %d undelivered callbacks",
                    len(rows), len(undelivered))  # fmt: skip
    return len(sends)


def roll_up(context: Context, *, limit: int = 20_000) -> int:
    """Roll up the decisions the stage workers did not (human labels, cache hits, corrections;
    ``cascade.rollup.catch_up``), ``limit`` rows a transaction, until none is left; fold the
    review backlog's log (``cascade.backlog.compact``)."""
    with session_scope(context.sessions) as session:
        backlog.compact(session)
    total = 0
    while True:
        with session_scope(context.sessions) as session:
            n = rollup.catch_up(session, limit=limit)
        total += n
        if n < limit:
            return total


def requeue_after_broker_loss(
    context: Context, dispatcher: Dispatcher, broker_client: MarkerStore | None
) -> int:
    """A broker that came back without its data (Redis restarted without AOF, a failover to an
    empty replica, a flush) lost every message it held; the database still knows what is
    unfinished. A marker key that lives only as long as the broker's data tells: when it is
    gone, everything pending is sent again now rather than after ``stale_after_s``. (On a
    fresh broker nothing is pending yet; a duplicate of a message that did survive is
    harmless.) Returns how many messages were sent."""
    if broker_client is None:
        return 0
    if not broker_client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True):
        return 0  # the marker survived: so did the messages
    sent = requeue_stale(context, dispatcher, 0)
    if sent:
        log.warning("the broker lost its data; sent %d unfinished items again", sent)
    return sent
