"""The app's rate limiter and stage-1 backlog gate, built once per app from its settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import cast

from flask import current_app

from cascade.ratelimit import Backlog, RateLimiter, redis_for
from services.web import context

_EXTENSION = "cascade_admission"


@dataclass
class Admission:
    """``None`` parts are off: the broker is not Redis (e.g. RabbitMQ) or there is no broker."""

    limiter: RateLimiter | None
    backlog: Backlog | None

    def charge(self, key_id: int, *, limit: int, cost: int = 1) -> None:
        if self.limiter is not None and cost > 0:
            self.limiter.hit(key_id, limit=limit, cost=cost)

    def check_queue(self) -> None:
        """Refuse at once when the stage-1 backlog is full (before the body is read)."""
        if self.backlog is not None:
            self.backlog.check()

    @contextmanager
    def reserve(self, count: int) -> Iterator[None]:
        """Room in the stage-1 backlog for ``count`` images during the request (atomic across
        API processes), or a 503 with Retry-After."""
        with self.backlog.reserve(count) if self.backlog is not None else nullcontext():
            yield

    def track(self, ids: Iterable[str]) -> None:
        """``ids`` went to stage 1: they count in the backlog until stage 1 has written them."""
        if self.backlog is not None:
            self.backlog.track(ids)


def admission() -> Admission:
    """This app's ``Admission`` (created on first use; shared by its request threads)."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        settings = context().settings
        client = redis_for(settings)
        found = Admission(
            limiter=RateLimiter(client) if client is not None else None,
            backlog=(
                Backlog(client, max_depth=settings.max_queue_depth) if client is not None else None
            ),
        )
        current_app.extensions[_EXTENSION] = found
    return cast(Admission, found)
