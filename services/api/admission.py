"""The app's rate limiter and stage-1 backlog gate, built once per app from its settings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from flask import current_app

from cascade.ratelimit import Backlog, Charge, RateLimiter, redis_for
from services.web import context

_EXTENSION = "cascade_admission"


@dataclass
class Admission:
    """``None`` parts are off: the broker is not Redis (e.g. RabbitMQ) or there is no broker.

    An upload's charge goes into the same Redis call as its backlog check or reservation
    (``cascade.ratelimit.Charge``): one round trip where there were three."""

    limiter: RateLimiter | None
    backlog: Backlog | None

    def charge(self, key_id: int, *, limit: int, cost: int = 1) -> None:
        if self.limiter is not None and cost > 0:
            self.limiter.hit(key_id, limit=limit, cost=cost)

    def check_queue(self, key_id: int, *, limit: int, cost: int = 1) -> None:
        """Charge ``cost`` to the key (429 over its limit), then refuse at once when the
        stage-1 backlog is full (503; before the body is read)."""
        if self.backlog is None:
            self.charge(key_id, limit=limit, cost=cost)
            return
        self.backlog.check(self._charge(key_id, limit, cost))

    @contextmanager
    def reserve(
        self, ids: Sequence[str], *, key_id: int, limit: int, cost: int = 0
    ) -> Iterator[None]:
        """Charge ``cost`` to the key, then room in the stage-1 backlog for ``ids`` (the ids
        the request's submissions will have) during the request, atomic across API processes:
        429 or 503 with Retry-After otherwise."""
        if self.backlog is None:
            self.charge(key_id, limit=limit, cost=cost)
            yield
            return
        with self.backlog.reserve(ids=ids, charge=self._charge(key_id, limit, cost)):
            yield

    def track(self, ids: Iterable[str]) -> None:
        """``ids`` went to stage 1: they count in the backlog until stage 1 has written them."""
        if self.backlog is not None:
            self.backlog.track(ids)

    def _charge(self, key_id: int, limit: int, cost: int) -> Charge | None:
        if self.limiter is None or cost <= 0:
            return None
        return Charge(self.limiter, key_id, limit, cost)


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
