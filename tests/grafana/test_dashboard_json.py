"""The dashboard JSON is what Grafana's import takes: structure, unique ids, a grid that fits,
every data source reference going through the template variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from cascade import metrics
from services.cli.grafana import grafana
from services.grafana.dashboard import UID, build_dashboard, expressions

METRIC_NAME = re.compile(r"\b(cascade_[a-z_]+)")


def test_top_level_fields_and_template_variable() -> None:
    d = build_dashboard()
    assert d["uid"] == UID and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"])
    assert d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    json.loads(json.dumps(d))  # plain JSON, nothing Python-only


def test_panel_ids_unique_and_grid_fits() -> None:
    panels = build_dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    # No two panels overlap.
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_every_datasource_reference_is_the_template_variable() -> None:
    d = build_dashboard()
    refs = [p["datasource"] for p in d["panels"] if p["type"] != "row"]
    refs += [t["datasource"] for p in d["panels"] for t in p.get("targets", [])]
    refs += [a["datasource"] for a in d["annotations"]["list"]]
    assert refs and all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs)
    for p in d["panels"]:
        if p["type"] != "row":
            ref_ids = [t["refId"] for t in p["targets"]]
            assert p["targets"] and len(ref_ids) == len(set(ref_ids)), p["title"]


def test_queries_use_only_metrics_that_exist() -> None:
    from prometheus_client import REGISTRY

    known: set[str] = set()
    for collector in REGISTRY._collector_to_names:  # every metric cascade.metrics defines
        for family in collector.describe() if hasattr(collector, "describe") else []:
            known |= {s.name for s in family.samples} | {family.name, family.name + "_total"}
    for name in ("IMAGES", "DOLLARS", "QUEUE_DEPTH", "REVIEW_ITEMS", "LABELS"):
        assert hasattr(metrics, name)
    histograms = {"cascade_decision_seconds", "cascade_stage_seconds", "cascade_batch_size"}
    for expr in expressions(build_dashboard()):
        for name in METRIC_NAME.findall(expr):
            base = (
                re.sub(r"_(bucket|sum|count)$", "", name)
                if name.rsplit("_", 1)[0] in histograms
                else name
            )
            assert base in known, f"{name} in {expr!r} is not a metric of cascade.metrics"


def test_export_command_writes_the_dashboard(tmp_path: Path) -> None:
    out = tmp_path / "grafana" / "cascade.json"
    result = CliRunner().invoke(grafana, ["export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == json.loads(json.dumps(build_dashboard()))
