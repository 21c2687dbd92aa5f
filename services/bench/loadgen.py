"""A bounded load test against a running stack: measure capacity, offer about twice that, count.

Why not Locust: Locust's runners live on gevent and monkey-patch ``socket`` and ``threading``
at import, which fights the ``Stack`` child-process management and pytest in the same process.
This generator is a plain open-loop one instead (threads firing at fixed times, so a slow
server does not slow the offered rate down): loopback only, a fixed duration, it stops by itself.

Every answer is recorded; afterwards every accepted (2xx) id is followed in the database until
it is final. ``lost`` is what was accepted and never reached a final state: it must be 0.
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
import requests
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


class LoadGenerator:
    """Fires uploads at ``rate`` per second for ``duration_s`` (open loop, ``threads`` senders)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        threads: int = 16,
        first_seed: int = 0,
        timeout_s: float = 30,
    ) -> None:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"load tests run on loopback only, not against {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.threads = threads
        self.timeout_s = timeout_s
        self._seed = first_seed
        self._lock = threading.Lock()

    def _next_seed(self) -> int:
        with self._lock:
            self._seed += 1
            return self._seed

    def _send(self, http: requests.Session, started: float) -> Sample:
        data = png(self._next_seed())
        at = time.perf_counter()
        try:
            r = http.post(
                f"{self.url}/v1/images",
                data=data,
                headers={"Content-Type": "image/png"},
                timeout=self.timeout_s,
            )
        except requests.RequestException:
            return Sample(at - started, 0, time.perf_counter() - at)
        took = time.perf_counter() - at
        sid = r.json().get("id") if r.status_code in (200, 202) else None
        return Sample(at - started, r.status_code, took, sid, "Retry-After" in r.headers)

    def run(self, name: str, rate: float, duration_s: float) -> Phase:
        """Offer ``rate`` uploads/s for ``duration_s``; returns every answer."""
        phase = Phase(name, rate, duration_s)
        started = time.perf_counter()
        total = int(rate * duration_s)
        slots = iter(range(total))
        slot_lock = threading.Lock()

        def sender() -> None:
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {self.api_key}"
            while True:
                with slot_lock:
                    n = next(slots, None)
                if n is None:
                    break
                wait = started + n / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sample = self._send(http, started)
                with slot_lock:
                    phase.samples.append(sample)
            http.close()

        workers = [threading.Thread(target=sender, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=duration_s + self.timeout_s + 30)
        return phase


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
    depth: list[tuple[float, int]]  # (seconds into the overload phase, stage-1 queue depth)
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


def run_load_test(
    gen: LoadGenerator,
    ctx: Context,
    depth: Callable[[], int],
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
    the middle, if given), then wait for every accepted image, then a gentle recovery phase."""
    probe = gen.run("capacity", probe_rate, probe_s)
    wait_final(ctx, probe.accepted_ids, drain_timeout_s)
    capacity = capacity_per_s(decision_times(ctx, probe.accepted_ids))
    faults: list[str] = []
    timer = None
    if fault is not None:
        name, action = fault

        def inject() -> None:
            action()
            faults.append(name)

        timer = threading.Timer(duration_s / 2, inject)
    t0 = time.time()
    with DepthProbe(depth) as probe_depth:
        if timer is not None:
            timer.start()
        overload = gen.run("overload", factor * capacity, duration_s)
        if timer is not None:
            timer.join(timeout=300)
        ids = probe.accepted_ids + overload.accepted_ids
        final, drain_s = wait_final(ctx, ids, drain_timeout_s)
    times = decision_times(ctx, overload.accepted_ids)
    waits = [d - c for c, d in times]
    recovery = gen.run("recovery", max(1.0, capacity / 2), recovery_s)
    rec_final, _ = wait_final(ctx, recovery.accepted_ids, drain_timeout_s)
    return LoadRun(
        capacity_per_s=capacity,
        phases=[probe, overload, recovery],
        depth=probe_depth.points,
        decided_at=[d - t0 for _, d in times],
        decision_p99_s=float(np.quantile(waits, 0.99)) if waits else float("nan"),
        accepted=len(ids) + len(recovery.accepted_ids),
        final=final + rec_final,
        drain_s=drain_s,
        faults=faults,
        recovered=bool(recovery.accepted_ids) and recovery.refused == 0,
    )
