"""A bounded load test against a running stack: measure capacity, offer about twice that, count.

The load itself is Locust (``locustfile.py`` in its own process, ``services.bench.swarm``);
this module measures: every upload answer is recorded, afterwards every accepted (2xx) id is
followed in the database until it is final. ``lost`` is what was accepted and never reached a
final state: it must be 0.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select

from cascade.context import Context
from cascade.db.schema import FINAL_STATES, Submission


@dataclass(frozen=True)
class Sample:
    """One request: when it was sent (seconds into the phase), its answer and how long it took."""

    at: float
    status: int  # 0: no answer (connection refused, timeout)
    seconds: float
    submission_id: str | None = None
    retry_after: bool = False


@dataclass
class Phase:
    name: str
    offered_per_s: float
    duration_s: float
    started_at: float = 0.0  # epoch seconds of its first request
    samples: list[Sample] = field(default_factory=list)

    @property
    def accepted_ids(self) -> list[str]:
        return [s.submission_id for s in self.samples if s.submission_id]

    @property
    def refused(self) -> int:
        return sum(1 for s in self.samples if s.status in (429, 503))

    @property
    def refused_without_retry_after(self) -> int:
        return sum(1 for s in self.samples if s.status in (429, 503) and not s.retry_after)

    @property
    def failed(self) -> int:
        """Answers that are neither acceptance nor a polite refusal (5xx other than 503, none)."""
        return sum(
            1 for s in self.samples if s.status == 0 or (s.status >= 500 and s.status != 503)
        )

    def per_second(self) -> list[tuple[int, int, int]]:
        """(second, accepted, refused) for each whole second of the phase."""
        seconds = int(np.ceil(self.duration_s))
        acc, ref = np.zeros(seconds + 1, int), np.zeros(seconds + 1, int)
        for s in self.samples:
            i = min(int(s.at), seconds)
            if s.submission_id:
                acc[i] += 1
            elif s.status in (429, 503):
                ref[i] += 1
        return [(i, int(acc[i]), int(ref[i])) for i in range(seconds + 1)]

    def latency_ms(self, q: float) -> float:
        """Quantile ``q`` of the HTTP answer time of accepted uploads, in ms."""
        times = [s.seconds for s in self.samples if s.submission_id]
        return float(np.quantile(times, q) * 1000) if times else float("nan")


def png(seed: int, size: int = 64) -> bytes:
    """A distinct small PNG per seed (distinct bytes: no answer comes from the cache)."""
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class DepthProbe:
    """Samples a queue-depth function every ``every_s`` in a thread: (seconds, depth)."""

    def __init__(self, depth: Callable[[], int], every_s: float = 0.5) -> None:
        self.depth = depth
        self.every_s = every_s
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.points.append((time.perf_counter() - self._t0, int(self.depth())))
            except Exception:  # the broker may be restarting; a gap in the plot says so
                continue

    def __enter__(self) -> DepthProbe:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def count_final(ctx: Context, ids: list[str]) -> int:
    done = 0
    with ctx.sessions() as session:
        for i in range(0, len(ids), 500):
            done += int(
                session.scalar(
                    select(func.count())
                    .select_from(Submission)
                    .where(Submission.id.in_(ids[i : i + 500]), Submission.state.in_(FINAL_STATES))
                )
                or 0
            )
    return done


def wait_final(ctx: Context, ids: list[str], timeout_s: float) -> tuple[int, float]:
    """Wait until every id is final or ``timeout_s`` passes: (how many are final, seconds)."""
    started = time.perf_counter()
    done = count_final(ctx, ids)
    while done < len(ids) and time.perf_counter() - started < timeout_s:
        time.sleep(0.5)
        done = count_final(ctx, ids)
    return done, time.perf_counter() - started


def _epoch(t: datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def decision_times(ctx: Context, ids: list[str]) -> list[tuple[float, float]]:
    """(uploaded, machines done) epoch seconds of the final ones among ``ids``: the automatic
    decision, or for an image handed to a human, the moment stage 2 handed it over."""
    out: list[tuple[float, float]] = []
    with ctx.sessions() as session:
        for i in range(0, len(ids), 500):
            rows = session.execute(
                select(
                    Submission.created_at,
                    Submission.decided_at,
                    Submission.stage2_at,
                    Submission.stage1_at,
                ).where(Submission.id.in_(ids[i : i + 500]), Submission.state.in_(FINAL_STATES))
            )
            for created, *ends in rows:
                end = next((t for t in ends if t is not None), None)
                if created and end:
                    out.append((_epoch(created), _epoch(end)))
    return out


def capacity_per_s(times: list[tuple[float, float]]) -> float:
    """Images decided per second over a burst: count / (last decision - first upload)."""
    if len(times) < 2:
        raise ValueError("too few decisions to measure capacity")
    span = max(d for _, d in times) - min(c for c, _ in times)
    return len(times) / max(span, 1e-3)


def summary(phase: Phase) -> dict[str, Any]:
    return {
        "name": phase.name,
        "offered_per_s": round(phase.offered_per_s, 2),
        "duration_s": phase.duration_s,
        "offered": len(phase.samples),
        "accepted": len(phase.accepted_ids),
        "refused": phase.refused,
        "refused_without_retry_after": phase.refused_without_retry_after,
        "failed": phase.failed,
        "accepted_per_s": round(len(phase.accepted_ids) / phase.duration_s, 2),
        "http_p50_ms": round(phase.latency_ms(0.5), 1),
        "http_p99_ms": round(phase.latency_ms(0.99), 1),
    }


@dataclass
class LoadRun:
    """Everything one load test measured; ``lost`` must be 0 and ``recovered`` true."""

    capacity_per_s: float
    phases: list[Phase]
    depths: dict[str, list[tuple[float, int]]]  # name -> (seconds into the overload, depth)
    decided_at: list[float]  # seconds into the overload phase of each overload decision
    decision_p99_s: float
    accepted: int
    final: int
    drain_s: float
    faults: list[str]
    recovered: bool

    @property
    def lost(self) -> int:
        return self.accepted - self.final

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)


Launch = Callable[[str, float, float], Any]  # (phase name, rate/s, seconds) -> a started Swarm


def run_load_test(
    launch: Launch,
    ctx: Context,
    depths: dict[str, Callable[[], int]],
    *,
    duration_s: float = 60.0,
    factor: float = 2.0,
    probe_s: float = 10.0,
    probe_rate: float = 40.0,
    drain_timeout_s: float = 300.0,
    recovery_s: float = 10.0,
    fault: tuple[str, Callable[[], None]] | None = None,
) -> LoadRun:
    """Capacity probe, then ``factor``x capacity for ``duration_s`` (with ``fault`` run once in
    the middle, if given), then wait for every accepted image, then a gentle recovery phase.
    ``depths`` are sampled during the overload (e.g. the backlog and the stage-1 list)."""
    probe = launch("capacity", probe_rate, probe_s).wait()
    wait_final(ctx, probe.accepted_ids, drain_timeout_s)
    capacity = capacity_per_s(decision_times(ctx, probe.accepted_ids))
    faults: list[str] = []
    probes = {name: DepthProbe(fn) for name, fn in depths.items()}
    for p in probes.values():
        p.__enter__()
    try:
        swarm = launch("overload", factor * capacity, duration_s)
        if fault is not None:
            time.sleep(duration_s / 2)
            name, action = fault
            action()
            faults.append(name)
        overload = swarm.wait()
        ids = probe.accepted_ids + overload.accepted_ids
        final, drain_s = wait_final(ctx, ids, drain_timeout_s)
    finally:
        for p in probes.values():
            p.__exit__()
    times = decision_times(ctx, overload.accepted_ids)
    waits = [d - c for c, d in times]
    recovery = launch("recovery", max(1.0, capacity / 2), recovery_s).wait()
    rec_final, _ = wait_final(ctx, recovery.accepted_ids, drain_timeout_s)
    return LoadRun(
        capacity_per_s=capacity,
        phases=[probe, overload, recovery],
        depths={name: p.points for name, p in probes.items()},
        decided_at=[d - overload.started_at for _, d in times],
        decision_p99_s=float(np.quantile(waits, 0.99)) if waits else float("nan"),
        accepted=len(ids) + len(recovery.accepted_ids),
        final=final + rec_final,
        drain_s=drain_s,
        faults=faults,
        recovered=bool(recovery.accepted_ids) and recovery.refused == 0,
    )
