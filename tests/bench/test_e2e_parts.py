"""The e2e benchmark's own parts: the CPU meter charges the right component, the flame graph and
its top frames come from the samples given."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from services.bench import flamegraph
from services.bench.cpu import CpuMeter, cpu_seconds, tree

BUSY = "s = 0\nfor i in range(30_000_000):\n    s += i\n"


def test_the_meter_charges_each_component_its_own_cpu() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.read()\n" + BUSY],
                            stdin=subprocess.PIPE)  # fmt: skip
    try:
        meter = CpuMeter({"busy": lambda: tree(busy.pid), "idle": lambda: [idle.pid]}).start()
        assert busy.stdin is not None
        busy.stdin.close()  # the work starts now, inside the window
        busy_seconds = 0.0
        while busy.poll() is None:
            busy_seconds = cpu_seconds(busy.pid) or busy_seconds
            meter._sample(baseline=False)  # the last sample before it exits
        totals = meter.stop()
    finally:
        idle.kill()
        busy.kill()
    assert totals["busy"] > 0.05  # thirty million additions are not free anywhere
    assert totals["idle"] < totals["busy"] / 5
    assert totals["busy"] <= busy_seconds + 0.05


def test_top_frames_are_self_time_by_function() -> None:
    lines = [
        "main (app.py:1);work (app.py:5);decode (img.py:10) 30",
        "main (app.py:1);work (app.py:5);decode (img.py:12) 10",
        "main (app.py:1);work (app.py:6) 60",
        "garbage line",
    ]
    stacks = flamegraph.parse(lines)
    assert sum(stacks.values()) == 100
    top = dict(flamegraph.top_self(stacks))
    assert top == {"work (app.py)": 0.6, "decode (img.py)": 0.4}


def test_the_flame_graph_has_a_box_per_frame() -> None:
    stacks: Counter[tuple[str, ...]] = Counter({("api", "f (a.py:1)", "g (a.py:2)"): 3,
                                                ("stage1", "h (b.py:1)"): 1})  # fmt: skip
    svg = flamegraph.svg(flamegraph.tree(stacks), "t")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for frame in ("api", "f (a.py:1)", "g (a.py:2)", "stage1", "h (b.py:1)"):
        assert f"<title>{frame} (" in svg


def test_waiting_frames_are_left_out_of_the_top() -> None:
    stacks = flamegraph.parse(
        ["run (w.py:1);_worker (thread.py:9) 70", "run (w.py:1);f (a.py:3) 30"]
    )
    assert dict(flamegraph.top_self(stacks, waits=frozenset({"_worker"}))) == {"f (a.py)": 1.0}


def test_the_ceiling_times_each_stage_gate_on_the_images_that_stage_gated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    import numpy as np
    from PIL import Image

    from models.testing import make_tiny_model_dir
    from services.bench.ceiling import Ceiling

    ceiling = Ceiling(make_tiny_model_dir(tmp_path / "models", size=32))
    images = []
    for i in range(5):
        buf = io.BytesIO()
        Image.new("RGB", (40 + i, 30), (i * 40, 0, 0)).save(buf, "PNG")
        images.append(buf.getvalue())
    assert (
        ceiling.gate_cpu_ms(images, ([True] * 5, [False] * 5), batch=2, max_pixels=10**6) is None
    )  # tiny models have no gates; fmt: skip

    class Gate:
        seen: list[int] = []  # noqa: RUF012

        def far(self, batch: np.ndarray) -> np.ndarray:
            Gate.seen.append(len(batch))
            return np.zeros(len(batch), dtype=bool)

    ceiling.gates = [Gate(), Gate()]
    gated = ([True, False, True, True, False], [False, True, False, False, False])
    ms = ceiling.gate_cpu_ms(images, gated, batch=2, max_pixels=10**6)
    assert ms is not None and ms >= 0
    assert Gate.seen == [2, 1, 1]  # stage 1: three images in batches of two; stage 2: one
