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
