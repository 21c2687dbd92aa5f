"""The Celery application: queues, routing and the reliability settings, built from Settings.

This module only configures. The tasks are module-level (``cascade.tasks``, ``feedback.tasks``)
and attach to every app when their module is imported; the worker entry point imports them.
The app carries the ``Settings`` it was built from (``app.conf.cascade_settings``): the tasks'
base class reads batch sizes from it and builds its per-process runtime from it.

Reliability: ``acks_late`` + ``task_reject_on_worker_lost`` mean a message is acknowledged only
after its batch was written; a worker killed mid-batch leaves its messages unacknowledged, and
Redis hands them out again after ``visibility_timeout``. On a Redis broker the transport is
``cascade.broker`` (kombu's, with an atomic hand-over: a worker killed while a message is on its
way to it cannot lose it). Every write is idempotent (state checks, unique constraints), so a
redelivered image is never decided twice.

GPU workers: CUDA cannot be initialised before a prefork fork. Stage workers therefore run the
``solo`` pool (one process per GPU, batching gives the parallelism) and load their engine lazily
in the process that uses it.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from cascade import queues
from cascade.config import Settings
from cascade.tasknames import ROUTES

REDIS_SCHEMES = ("redis://", "rediss://")


def create_celery(settings: Settings) -> Celery:
    """A configured Celery app for ``settings`` (producers and workers alike)."""
    if not settings.broker_url:
        raise ValueError(
            "CASCADE_BROKER_URL is not set; `cascade up` starts a local Redis and sets it for you"
        )
    app = Celery("cascade", broker=settings.broker_url, backend=settings.result_backend)
    if settings.broker_url.startswith(REDIS_SCHEMES):
        app.conf.broker_transport = "cascade.broker:Transport"
    batch_max = max(settings.stage1_batch_size, settings.stage2_batch_size)
    restore_every = max(1, min(10, settings.broker_visibility_timeout_s // 5))
    app.conf.update(
        task_queues=[Queue(name) for name in queues.ALL],
        task_default_queue=queues.MAINTENANCE,
        task_routes=ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # celery-batches buffers messages in the worker: it must be allowed to hold a full
        # batch (and the next one) unacknowledged, or batches never fill.
        worker_prefetch_multiplier=2 * batch_max,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # Sweep for unacknowledged messages of dead workers often enough that they come
            # back soon after the visibility timeout (kombu's default sweep is ~100 s apart).
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
            # The sweep holds a Redis lock that outlives a SIGKILLed holder by this long
            # (kombu's default, 300 s, stalls every redelivery for five minutes).
            "unacked_mutex_expire": 3 * restore_every + 5,
            "socket_keepalive": True,
            "retry_on_timeout": True,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # No remote control (pidbox): it is a pub/sub connection in every worker, and when the
        # broker restarts redis-py can reconnect it silently inside a read, which then blocks
        # the worker's event loop for good (a stage worker that never consumes again and logs
        # nothing). Nothing in Cascade sends control commands.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
        cascade_settings=settings,
    )
    return app
