"""Where the CPU goes: CPU seconds per component of a running stack, from ``/proc/<pid>/stat``.

A component is a set of process trees (a stack child and everything it forked: gunicorn's
workers, say) or, for PostgreSQL, the server backends serving the benchmark's own database
(found in ``pg_stat_activity``, sampled during the run because a pooled connection may come and
go). CPU is user + system time. What a process spent before the window is taken off; a process
born inside it counts from zero; one that exited inside it is counted up to its last sample.
SQLite has no process: its work is inside the API's and the workers' time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _parents() -> dict[int, int]:
    """pid → parent pid of every process now running."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        out[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def tree(root: int, parents: dict[int, int] | None = None) -> set[int]:
    """``root`` and all its descendants now running."""
    parents = parents if parents is not None else _parents()
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in found]
        found.update(children)
        frontier.extend(children)
    return found


PidSource = Callable[[], Iterable[int]]


@dataclass
class CpuMeter:
    """Samples the CPU of named components from ``start()`` to ``stop()``.

    ``components``: name → a function giving the component's pids now (called at every
    sample, so processes started meanwhile are seen)."""

    components: dict[str, PidSource]
    every_s: float = 0.5
    _first: dict[tuple[str, int], float] = field(default_factory=dict)
    _last: dict[tuple[str, int], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self, *, baseline: bool) -> None:
        for name, pids in self.components.items():
            try:
                current = list(pids())
            except Exception:  # a source that cannot answer now (the database away)
                continue
            for pid in current:
                seconds = cpu_seconds(pid)
                if seconds is None:
                    continue
                key = (name, pid)
                if key not in self._first:
                    self._first[key] = seconds if baseline else 0.0
                self._last[key] = seconds

    def start(self) -> CpuMeter:
        self._sample(baseline=True)
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample(baseline=False)

    def stop(self) -> dict[str, float]:
        """CPU seconds per component over the window."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(baseline=False)
        totals = dict.fromkeys(self.components, 0.0)
        for (name, pid), last in self._last.items():
            totals[name] += max(0.0, last - self._first[(name, pid)])
        return totals


class PostgresBackends:
    """A pid source: the server processes serving database ``url``'s connections (the ones of
    this source's own query excluded)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.database = make_url(url).database
        self.engine = create_engine(url, pool_size=1, max_overflow=0)

    def __call__(self) -> list[int]:
        from sqlalchemy import text

        query = text(
            "SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        )
        with self.engine.connect() as conn:
            return [int(r[0]) for r in conn.execute(query, {"name": self.database})]

    def close(self) -> None:
        self.engine.dispose()
