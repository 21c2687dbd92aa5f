"""`/metrics` (Prometheus exposition, multiprocess-aware) and `/healthz`."""

from __future__ import annotations

import logging
from typing import cast

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cascade import metrics as m
from cascade.context import Context

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)


@bp.get("/metrics")
def metrics() -> Response:
    ctx = cast(Context, current_app.extensions["cascade"])
    try:  # state gauges are read at scrape time; a failure must not hide the other metrics
        from cascade.tasks import broker_lists

        m.refresh_gauges(ctx, broker_lists(ctx.celery) if ctx.settings.broker_url else None)
    except Exception:
        log.warning("could not refresh the state gauges", exc_info=True)
    return Response(generate_latest(m.exposition_registry()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
