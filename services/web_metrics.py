"""`/metrics` (Prometheus exposition, multiprocess-aware) and `/healthz`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cascade import metrics as m
from cascade.maintenance import broker_lists, refresh_gauges
from services.web import context

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)


@bp.get("/metrics")
def metrics() -> Response:
    ctx = context()
    try:  # state gauges are read at scrape time; a failure must not hide the other metrics
        refresh_gauges(ctx, broker_lists(ctx.settings.broker_url))
    except Exception:
        log.warning("could not refresh the state gauges", exc_info=True)
    return Response(generate_latest(m.exposition_registry()), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
