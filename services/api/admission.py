"""The app's rate limiter and backpressure gate, built once per app from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from flask import current_app

from cascade.ratelimit import Backpressure, RateLimiter, redis_for
from services.web import context

_EXTENSION = "cascade_admission"


@dataclass
class Admission:
    """``None`` parts are off: the broker is not Redis (e.g. RabbitMQ) or there is no broker."""

    limiter: RateLimiter | None
    backpressure: Backpressure | None

    def charge(self, key_id: int, *, limit: int, cost: int = 1) -> None:
        if self.limiter is not None and cost > 0:
            self.limiter.hit(key_id, limit=limit, cost=cost)

    def check_queue(self) -> None:
        if self.backpressure is not None:
            self.backpressure.check()


def admission() -> Admission:
    """This app's ``Admission`` (created on first use; shared by its request threads)."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        settings = context().settings
        client = redis_for(settings)
        found = Admission(
            limiter=RateLimiter(client) if client is not None else None,
            backpressure=(
                Backpressure(client, max_depth=settings.max_queue_depth)
                if client is not None
                else None
            ),
        )
        current_app.extensions[_EXTENSION] = found
    return cast(Admission, found)
