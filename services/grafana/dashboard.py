"""The Grafana dashboard, built in code from the metric names of ``cascade.metrics``.

Every panel queries through the ``datasource`` template variable, so the same JSON imports
into any Grafana whatever its Prometheus data source is called. ``UID`` carries the layout's
major version: a breaking change of the layout gets a new uid (and the old dashboard stays
until deleted), a compatible change keeps the uid and overwrites.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

LAYOUT_VERSION = 1
UID = f"cascade-cost-v{LAYOUT_VERSION}"
TITLE = "Cascade — cost per image"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"


def _rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{selector}{RATE}))"


ALL_IMAGES = _rate("cascade_images_total")
ESCALATED = '{decider=~"stage2|human"}'
AUDIT = '{reason="audit"}'
COMPUTE = '{bucket=~"stage1|stage2"}'

# (row title, [(panel title, kind, unit, [(legend, expr)])]) — kind: timeseries or stat.
Panel = tuple[str, str, str, list[tuple[str, str]]]
ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Cost",
        [
            (
                "Cost per image by part",
                "timeseries",
                "currencyUSD",
                [
                    (
                        "{{bucket}}",
                        f"{_rate('cascade_dollars_total', 'bucket')} / scalar({ALL_IMAGES})",
                    ),
                ],
            ),
            (
                "Cost per 1,000 images",
                "stat",
                "currencyUSD",
                [
                    (
                        "per 1,000",
                        "1000 * sum(increase(cascade_dollars_total[$__range]))"
                        " / sum(increase(cascade_images_total[$__range]))",
                    ),
                ],
            ),
            (
                "Monthly projection (last hour's rate)",
                "stat",
                "currencyUSD",
                [
                    ("30 days", "sum(rate(cascade_dollars_total[1h])) * 86400 * 30"),
                ],
            ),
            (
                "Spend rate by bucket ($/h)",
                "timeseries",
                "currencyUSD",
                [
                    ("{{bucket}}", f"{_rate('cascade_dollars_total', 'bucket')} * 3600"),
                ],
            ),
        ],
    ),
    (
        "Volume and routing",
        [
            (
                "Images per second by decider",
                "timeseries",
                "reqps",
                [
                    ("{{decider}}", _rate("cascade_images_total", "decider")),
                ],
            ),
            (
                "Images per second by route",
                "timeseries",
                "reqps",
                [
                    ("{{route}}", _rate("cascade_images_total", "route")),
                ],
            ),
            (
                "Share resolved at each stage",
                "timeseries",
                "percentunit",
                [
                    (
                        "{{decider}}",
                        f"{_rate('cascade_images_total', 'decider')}"
                        f" / ignoring(decider) group_left {ALL_IMAGES}",
                    ),
                ],
            ),
            (
                "Escalation, audit and cache-hit rates",
                "timeseries",
                "percentunit",
                [
                    (
                        "escalated",
                        f"{_rate('cascade_images_total', selector=ESCALATED)} / {ALL_IMAGES}",
                    ),
                    (
                        "audit",
                        f"{_rate('cascade_review_items_total', selector=AUDIT)} / {ALL_IMAGES}",
                    ),
                    ("cache hits", f"{_rate('cascade_cache_hits_total')} / {ALL_IMAGES}"),
                ],
            ),
            (
                "Uploads, refusals and image errors per second",
                "timeseries",
                "reqps",
                [
                    ("accepted {{tenant}}", _rate("cascade_submissions_total", "tenant")),
                    ("refused {{code}}", _rate("cascade_rejected_total", "code")),
                    ("error {{stage}}", _rate("cascade_image_errors_total", "stage")),
                ],
            ),
        ],
    ),
    (
        "Latency and batches",
        [
            (
                "Upload → decision latency",
                "timeseries",
                "s",
                [
                    (
                        f"p{q}",
                        f"histogram_quantile(0.{q}, {_rate('cascade_decision_seconds_bucket', 'le')})",
                    )
                    for q in (50, 95, 99)
                ],
            ),
            (
                "p95 latency by decider",
                "timeseries",
                "s",
                [
                    (
                        "{{decider}}",
                        "histogram_quantile(0.95, "
                        f"{_rate('cascade_decision_seconds_bucket', 'le, decider')})",
                    ),
                ],
            ),
            (
                "Stage batch wall time p95",
                "timeseries",
                "s",
                [
                    (
                        "{{stage}}",
                        f"histogram_quantile(0.95, {_rate('cascade_stage_seconds_bucket', 'le, stage')})",
                    ),
                ],
            ),
            (
                "Mean batch size",
                "timeseries",
                "none",
                [
                    (
                        "{{stage}}",
                        f"{_rate('cascade_batch_size_sum', 'stage')}"
                        f" / {_rate('cascade_batch_size_count', 'stage')}",
                    ),
                ],
            ),
        ],
    ),
    (
        "Devices",
        [
            (
                "Device busy (device-seconds per second)",
                "timeseries",
                "none",
                [
                    (
                        "{{stage}} on {{device}}",
                        _rate("cascade_device_seconds_total", "stage, device"),
                    ),
                ],
            ),
            (
                "Compute dollars per hour by stage",
                "timeseries",
                "currencyUSD",
                [
                    (
                        "{{bucket}}",
                        f"{_rate('cascade_dollars_total', 'bucket', COMPUTE)} * 3600",
                    ),
                ],
            ),
        ],
    ),
    (
        "Queues, review and thresholds",
        [
            (
                "Queue depth",
                "timeseries",
                "none",
                [("{{queue}}", "max by (queue) (cascade_queue_depth)")],
            ),
            (
                "Review backlog",
                "timeseries",
                "none",
                [
                    ("{{reason}}", "max by (reason) (cascade_review_backlog)"),
                ],
            ),
            (
                "Oldest waiting review",
                "stat",
                "s",
                [("age", "max(cascade_review_oldest_age_seconds)")],
            ),
            (
                "Human labels per second",
                "timeseries",
                "reqps",
                [
                    ("{{label}}", _rate("cascade_labels_total", "label")),
                ],
            ),
            (
                "Active threshold version",
                "stat",
                "none",
                [("version", "max(cascade_threshold_version)")],
            ),
        ],
    ),
]

THRESHOLD_ANNOTATION_EXPR = "changes(cascade_threshold_version[2m]) > 0"


def _panel(panel_id: int, spec: Panel, x: int, y: int) -> dict[str, Any]:
    title, kind, unit, targets = spec
    width = 8 if kind == "stat" else 12
    panel: dict[str, Any] = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "range": True,
                "instant": False,
            }
            for i, (legend, expr) in enumerate(targets)
        ],
    }
    if kind == "stat":
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    return panel


def _panels() -> Iterator[dict[str, Any]]:
    panel_id, y = 1, 0
    for row_title, specs in ROWS:
        yield {
            "id": panel_id,
            "type": "row",
            "title": row_title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
        panel_id, y, x = panel_id + 1, y + 1, 0
        for spec in specs:
            width = 8 if spec[1] == "stat" else 12
            if x + width > 24:
                x, y = 0, y + 8
            yield _panel(panel_id, spec, x, y)
            panel_id, x = panel_id + 1, x + width
        y += 8


def build_dashboard() -> dict[str, Any]:
    """The dashboard model as Grafana's import and ``POST /api/dashboards/db`` take it."""
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["cascade", "cost"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                    "includeAll": False,
                    "multi": False,
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Threshold changes",
                    "enable": True,
                    "iconColor": "purple",
                    "datasource": DATASOURCE,
                    "expr": THRESHOLD_ANNOTATION_EXPR,
                    "step": "30s",
                    "titleFormat": "threshold set changed",
                    "textFormat": "{{job}} {{instance}}",
                }
            ]
        },
        "panels": list(_panels()),
    }


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression the dashboard runs (panel targets and annotations)."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
