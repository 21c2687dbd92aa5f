"""One soak run and the stack it runs against: Locust traffic, the fault half-way, the count.

See ``services.bench.soak`` for what the figures mean.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cascade.apikeys import create_key
from cascade.config import Settings, get_settings, settings_env, with_local_secrets
from cascade.context import Context
from cascade.db.schema import (
    FINAL_STATES,
    State,
    Submission,
    ThresholdSetRow,
    ThresholdStatus,
)
from cascade.db.session import session_scope, upgrade
from services.bench.faults import CallbackCounter, CascadeUp, ThrowawayPostgres
from services.bench.loadgen import wait_final
from services.bench.swarm import Swarm
from services.stack import Stack

STALL_S = 60.0  # an image decided later than this after max(upload, fault end) stalled
DRAIN_S = 240.0  # then an image still not final is lost
CALLBACKS_S = 60.0  # how long delivered callbacks may trail the last decision


@dataclass
class RunResult:
    accepted: int
    refused: int
    failed: int
    lost: int
    duplicated_callbacks: int
    stalls: int
    errors: int
    recovery_s: float | None  # None: something accepted before the fault end never finished
    missing_callbacks: int = 0
    lost_trace: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        rec = "n/a" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        return (
            f"accepted {self.accepted}, refused {self.refused}, lost {self.lost}, duplicated "
            f"callbacks {self.duplicated_callbacks}, stalls {self.stalls}, errors {self.errors},"
            f" recovery {rec}"
        )


@dataclass
class SoakTarget:
    """A running stack (or ``cascade up``) with a context on its database and an API key."""

    settings: Settings
    ctx: Context
    api_key: str
    url: str
    workdir: Path
    postgres: ThrowawayPostgres | None = None
    _stack: Stack | None = None
    _up: CascadeUp | None = None

    def stack(self) -> Stack:
        assert self._stack is not None, "this scenario runs cascade up, not a Stack"
        return self._stack

    def restart_up(self) -> None:
        """SIGTERM the whole ``cascade up`` and start it again on the same var/ and port."""
        assert self._up is not None, "this scenario runs a Stack, not cascade up"
        code = self._up.terminate()
        if code != 0:
            raise RuntimeError(f"cascade up exited {code} on SIGTERM; see {self._up.log_path}")
        self._up.start()


def soak_settings(workdir: Path, models: Path, database_url: str | None) -> Settings:
    return get_settings().model_copy(
        update={
            "env": "test",
            "var_dir": workdir,
            "database_url": database_url,
            "blob_url": None,
            "broker_url": None,
            "model_dir": models,
            "engine": "onnx",
            "stage1_batch_size": 8,
            "stage2_batch_size": 8,
            "stage1_flush_interval_s": 0.2,
            "stage2_flush_interval_s": 0.2,
            "audit_rate": 0.0,
            "threshold_refresh_s": 1.0,
            "broker_visibility_timeout_s": 10,
            "callback_allow_private": True,
            "callback_max_retries": 10,
            "rate_limit_per_minute": 10_000_000,
            "max_queue_depth": 100_000,
            "secret_key": "",  # this stack's own (var/secrets.json)
            "callback_secret": "",
        }
    )


def _prepare(ctx: Context) -> str:
    """Every image runs both stages (stage 1 decides nothing, stage 2 decides by its score);
    returns a fresh API key."""
    with session_scope(ctx.sessions) as session:
        for row in session.scalars(
            select(ThresholdSetRow).where(ThresholdSetRow.status == ThresholdStatus.ACTIVE)
        ):
            row.status = ThresholdStatus.RETIRED
        session.add(
            ThresholdSetRow(
                version=1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5,
                status=ThresholdStatus.ACTIVE, created_by="soak", activated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        return create_key(session, tenant_name="soak").key


@contextmanager
def start_target(
    workdir: Path,
    models: Path,
    *,
    database_url: str | None,
    redis_persist: bool,
    as_cascade_up: bool,
) -> Iterator[SoakTarget]:
    workdir.mkdir(parents=True, exist_ok=True)
    settings = with_local_secrets(soak_settings(workdir, models, database_url))
    if as_cascade_up:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASCADE_")}
        env.update(settings_env(settings))
        up = CascadeUp(env, workdir / "up.log").start()
        try:
            with Context.opened(settings) as ctx:
                yield SoakTarget(settings, ctx, _prepare(ctx), up.url, workdir, _up=up)
        finally:
            if up.process is not None and up.process.poll() is None:
                up.terminate()
        return
    upgrade(settings.database)
    with Context.opened(settings) as ctx:
        key = _prepare(ctx)
        with Stack(settings, redis_persist=redis_persist) as stack:
            yield SoakTarget(settings, ctx, key, stack.url, workdir, _stack=stack)


def measure(
    target: SoakTarget,
    counter: CallbackCounter,
    fault: Callable[[], None],
    *,
    rate: float,
    run_s: float,
    seed: int,
    name: str,
) -> RunResult:
    """One run: Locust for ``run_s`` with ``fault`` half-way, then follow every accepted id."""
    swarm = Swarm(name, target.url, target.api_key, rate, run_s, target.workdir / "locust",
                  seed=seed, callback_url=counter.url).start()  # fmt: skip
    time.sleep(run_s / 2)
    fault()
    fault_end = datetime.now(UTC)
    phase = swarm.wait()
    ids = phase.accepted_ids
    wait_final(target.ctx, ids, DRAIN_S)
    rows = _rows(target.ctx, ids)
    decided = [r for r in rows.values() if r.state == State.DECIDED]
    deadline = time.monotonic() + CALLBACKS_S
    while time.monotonic() < deadline and any(counter.counts[r.id] < 1 for r in decided):
        time.sleep(0.5)
    lost = [i for i in ids if i not in rows or rows[i].state not in FINAL_STATES]
    return RunResult(
        accepted=len(ids),
        refused=phase.refused,
        failed=phase.failed,
        lost=len(lost),
        duplicated_callbacks=sum(1 for i in ids if counter.counts[i] > 1),
        stalls=sum(1 for i in ids if _stalled(rows.get(i), fault_end)),
        errors=sum(1 for r in rows.values() if r.state == State.ERROR),
        recovery_s=_recovery_s(rows, fault_end),
        missing_callbacks=sum(1 for r in decided if counter.counts[r.id] < 1),
        lost_trace=[_trace(target, rows.get(i), i) for i in lost[:5]],
    )


def _rows(ctx: Context, ids: list[str]) -> dict[str, Submission]:
    out: dict[str, Submission] = {}
    with ctx.sessions() as session:
        for i in range(0, len(ids), 500):
            query = select(Submission).where(Submission.id.in_(ids[i : i + 500]))
            out.update({s.id: s for s in session.scalars(query)})
    return out


def _finished_at(sub: Submission) -> datetime | None:
    if sub.state == State.DECIDED:
        return sub.decided_at
    if sub.state == State.REVIEW:
        return sub.stage2_at
    return None


def _stalled(sub: Submission | None, fault_end: datetime) -> bool:
    if sub is None or sub.state == State.ERROR:
        return sub is None
    done = _finished_at(sub)
    if done is None:
        return True
    return (done - max(sub.created_at, fault_end)).total_seconds() > STALL_S


def _recovery_s(rows: dict[str, Submission], fault_end: datetime) -> float | None:
    before = [s for s in rows.values() if s.created_at <= fault_end and s.state != State.ERROR]
    ends = [_finished_at(s) for s in before]
    if any(e is None for e in ends):
        return None
    return max([0.0] + [(e - fault_end).total_seconds() for e in ends if e is not None])


def _trace(target: SoakTarget, sub: Submission | None, sid: str) -> dict[str, Any]:
    """Where a lost image is: its row, and every Redis list or hash that mentions it."""
    trace: dict[str, Any] = {"id": sid, "row": None, "redis": []}
    if sub is not None:
        trace["row"] = {"state": str(sub.state), "attempts": sub.attempts, "s1": sub.s1,
                        "created_at": sub.created_at.isoformat()}  # fmt: skip
    if target._stack is not None and target._stack.redis is not None:
        import redis

        client = redis.Redis.from_url(target._stack.broker_url)
        for key in client.keys("*"):
            kind = client.type(key)
            if (kind == b"list" and any(sid.encode() in x for x in client.lrange(key, 0, -1))) or (
                kind == b"hash" and any(sid.encode() in v for v in client.hvals(key))
            ):
                trace["redis"].append(
                    key.decode(errors="replace") if isinstance(key, bytes) else key
                )
        client.close()
    return trace


def summarise(results: list[RunResult]) -> dict[str, Any]:
    """A scenario's figures over its runs (the keys of issue 15, then the rest)."""
    recoveries = [r.recovery_s for r in results if r.recovery_s is not None]
    return {
        "runs": len(results),
        "lost": sum(r.lost for r in results),
        "duplicated_callbacks": sum(r.duplicated_callbacks for r in results),
        "stalls": sum(r.stalls for r in results),
        "max_recovery_s": round(max(recoveries), 1) if recoveries else None,
        "accepted": sum(r.accepted for r in results),
        "refused": sum(r.refused for r in results),
        "failed_requests": sum(r.failed for r in results),
        "errors": sum(r.errors for r in results),
        "missing_callbacks": sum(r.missing_callbacks for r in results),
        "runs_not_recovered": sum(1 for r in results if r.recovery_s is None),
    }
