"""A CPU profile of a running stack: py-spy samples each component's processes while a load runs;
one flame graph (each component a root) and the top frames by self time.

py-spy reads the processes from outside (ptrace): nothing in the product changes for it. It is
a dev dependency; without it (or without the permission to trace) the benchmark says so and
goes on without a profile.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services.bench import flamegraph

RATE_HZ = 100  # samples per second per process: a few thousand samples a run
# Where a thread waits (an idle thread pool, a socket read, an event-loop poll): kept in the
# flame graph, left out of the top frames, which are about work.
WAITS = frozenset({"_worker", "wait", "poll", "select", "_read_from_socket", "recv", "accept",
                   "readinto", "_wait_for_tstate_lock", "get"})  # fmt: skip


@dataclass
class Profile:
    """What the profile found; ``svg`` is None when no profile could be taken (``note`` says
    why)."""

    svg: Path | None = None
    samples: dict[str, int] = field(default_factory=dict)
    top: list[tuple[str, float]] = field(default_factory=list)  # over all components
    top_by_component: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    note: str = ""


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, else on PATH."""
    import sys

    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


@contextmanager
def profiled(components: dict[str, int], svg_path: Path) -> Iterator[Callable[[], Profile]]:
    """Sample ``components`` (name → root pid; its forked children too) while the block runs;
    the yielded function, called after the block, gives the ``Profile``."""
    exe = py_spy()
    result = Profile(note="py-spy is not installed (pip install py-spy)" if exe is None else "")
    if exe is None:
        yield lambda: result
        return
    with tempfile.TemporaryDirectory(prefix="cascade-profile-") as tmp:
        procs = {name: _record(exe, pid, f"{tmp}/{name}.txt") for name, pid in components.items()}
        try:
            yield lambda: result
        finally:
            errors = _stop(procs)
            stacks: Counter[tuple[str, ...]] = Counter()
            for name in components:
                path = Path(tmp) / f"{name}.txt"
                lines = path.read_text().splitlines() if path.exists() else []
                own = flamegraph.parse(lines)
                result.samples[name] = sum(own.values())
                result.top_by_component[name] = flamegraph.top_self(own, 8, waits=WAITS)
                stacks.update({(name, *stack): n for stack, n in own.items()})
            if stacks:
                svg_path.parent.mkdir(parents=True, exist_ok=True)
                svg_path.write_text(flamegraph.svg(flamegraph.tree(stacks), "cascade bench e2e"))
                result.svg = svg_path
                result.top = flamegraph.top_self(stacks, 15, waits=WAITS)
            else:
                result.note = "py-spy took no samples: " + "; ".join(errors)[:500]


def _record(exe: str, pid: int, out: str) -> subprocess.Popen[bytes]:
    args = [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
            "--rate", str(RATE_HZ), "--format", "raw", "-o", out]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    """Ask every recorder to write its samples and finish (SIGINT); their complaints, if any."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    errors = []
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGINT) and err:
            errors.append(f"{name}: {err.decode(errors='replace').strip()[-200:]}")
    return errors
