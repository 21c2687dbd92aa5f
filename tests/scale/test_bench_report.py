"""`cascade bench scale` rerun for one database keeps the other's figures (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

from services.bench.scale import _kept

PARAMS = {"n": 1000, "days": 3.0, "seed": 0, "audit_rate": 0.22}


def _report(path: Path, params: dict[str, object]) -> None:
    result = {"data": {"params": params}, "review_next_ms": 1.0}
    path.write_text(json.dumps({"meta": {}, "targets": {}, "sqlite": result,
                                "postgresql": result}))  # fmt: skip


def test_a_rerun_of_one_database_keeps_the_other_measured_on_the_same_data(tmp_path: Path) -> None:
    _report(tmp_path / "scale.json", PARAMS)
    kept = _kept(tmp_path, dict(PARAMS), ("postgresql",))
    assert list(kept) == ["sqlite"]
    assert kept["sqlite"]["review_next_ms"] == 1.0


def test_figures_of_other_data_or_of_the_databases_measured_now_are_not_kept(
    tmp_path: Path,
) -> None:
    assert _kept(tmp_path, PARAMS, ("sqlite",)) == {}  # no report yet
    _report(tmp_path / "scale.json", {**PARAMS, "audit_rate": 0.2})
    assert _kept(tmp_path, PARAMS, ("sqlite",)) == {}
    _report(tmp_path / "scale.json", PARAMS)
    assert _kept(tmp_path, PARAMS, ("sqlite", "postgresql")) == {}
