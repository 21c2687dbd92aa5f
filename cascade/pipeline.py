"""One stage batch: claim → read inputs → predict → route → write, in bulk.

``StageRunner.run(ids)`` is what a batched Celery task calls. It is safe to run twice on the
same ids (redelivery after a crash): submissions already past this stage are skipped or, for
stage 1, handed on to stage 2 again (stage 2 skips what it already did).

Round trips per batch, whatever its size: the claim (one ``UPDATE … RETURNING``, committed on
its own so that the attempt is counted even if the batch kills the worker), one read of the
image rows, then one transaction for everything the batch decided (the submissions' updates
and the review items in bulk, the batch's cost; anything else a batch must record goes in
``_record``). Inputs are the derivatives intake stored (``cascade.derivative``), never the
originals.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from cascade import metrics, rollup
from cascade.context import Context
from cascade.cost import record_batch
from cascade.db.bulk import flush_by_shape
from cascade.db.schema import Image, ReviewReason, State, Submission, utcnow
from cascade.decisions import ReviewRequest, finalize, open_reviews
from cascade.derivative import stage_input
from cascade.policy import Decider, Outcome, Route, ThresholdSet, route_stage1, route_stage2
from cascade.review import labels_required_for
from cascade.thresholds import ThresholdCache

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # a submission whose batch crashed the worker this often is given up on

# A batch's statements, built once (their cache keys too): building them cost more CPU than
# SQLite took to run them, every batch.
_CLAIM = (
    update(Submission)
    .where(Submission.id.in_(bindparam("ids", expanding=True)))
    .values(attempts=Submission.attempts + 1)
    .returning(Submission)
)
_BLOB_KEYS = select(Image.__table__.c.sha256, Image.__table__.c.blob_key).where(
    Image.__table__.c.sha256.in_(bindparam("shas", expanding=True))
)


class EngineLike(Protocol):
    preprocess: Any

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class BatchOutcome:
    """What one batch did; the task uses it to enqueue follow-ups after the commit."""

    to_stage2: list[str] = field(default_factory=list)
    callbacks: list[str] = field(default_factory=list)
    decided: list[tuple[str, str]] = field(default_factory=list)  # (route, decider)
    reviews: list[ReviewRequest] = field(default_factory=list)  # opened in bulk before commit
    errors: int = 0
    skipped: int = 0
    originals: int = 0  # inputs read from the original (no usable derivative)
    device_seconds: float = 0.0
    decode_seconds: float = 0.0
    dollars: float = 0.0
    latencies: list[tuple[str, float]] = field(default_factory=list)  # (decider, seconds)


def _now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn`` run here and now, its outcome as a finished future (no reader threads)."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args, **kwargs))
    except Exception as exc:
        future.set_exception(exc)
    return future


class StageRunner:
    """Runs batches of one stage with one engine (loaded lazily, once per process)."""

    def __init__(
        self,
        stage: int,
        ctx: Context,
        engine_factory: Callable[[], EngineLike],
        thresholds: ThresholdCache,
        *,
        worker: str = "",
        rng: random.Random | None = None,
    ) -> None:
        if stage not in (1, 2):
            raise ValueError("stage must be 1 or 2")
        self.stage = stage
        self.name = f"stage{stage}"
        self.ctx = ctx
        self._engine_factory = engine_factory
        self._engine: EngineLike | None = None
        self.thresholds = thresholds
        self.worker = worker
        self.rng = rng or random.Random()
        threads = ctx.settings.decode_threads  # 0: read in the batch's own thread
        self._pool = ThreadPoolExecutor(threads, "decode") if threads > 0 else None

    @property
    def engine(self) -> EngineLike:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def warm_up(self) -> None:
        """Load the engine and run it once, so the first real batch is not slow."""
        size = int(self.engine.preprocess.size)
        self.engine.predict(np.zeros((1, 3, size, size), dtype=np.float32))

    # -- selection -------------------------------------------------------------------------
    def _wanted(self, sub: Submission) -> bool:
        # Audited images answered from the cache are scored by every stage all the same.
        audited_hit = bool(sub.audit and sub.decided_by == Decider.CACHE)
        if self.stage == 1:
            return sub.state == State.QUEUED or (audited_hit and sub.s1 is None)
        if sub.state == State.STAGE2:
            return True
        # Audit-sampled images decided at stage 1 still need their stage-2 score.
        early = sub.decided_by == Decider.STAGE1 or audited_hit or sub.state == State.REVIEW
        return bool(sub.audit and sub.s2 is None and early)

    def _claim(self, session: Session, ids: Sequence[str]) -> list[Submission]:
        """Count this attempt and load the batch in one statement, committed at once
        (poison-image protection: a batch that kills the worker is still counted)."""
        subs = list(
            session.scalars(
                _CLAIM, {"ids": list(ids)}, execution_options={"synchronize_session": False}
            )
        )
        session.commit()
        return subs

    def _blob_keys(self, session: Session, todo: list[Submission]) -> list[str]:
        """The originals' keys of ``todo`` in one read (plain values for the reader threads)."""
        shas = list({s.image_sha256 for s in todo})
        by_sha = {sha: key for sha, key in session.execute(_BLOB_KEYS, {"shas": shas})}
        return [by_sha[s.image_sha256] for s in todo]

    # -- the batch -------------------------------------------------------------------------
    def run(self, ids: Sequence[str]) -> BatchOutcome:
        out = BatchOutcome()
        started = time.perf_counter()
        with self.ctx.sessions() as session:
            subs = self._claim(session, list(dict.fromkeys(ids)))
            todo: list[Submission] = []
            for sub in subs:
                if self.stage == 1 and sub.state == State.STAGE2:
                    out.to_stage2.append(sub.id)  # redelivered: make sure stage 2 has it
                elif not self._wanted(sub):
                    out.skipped += 1
                elif sub.attempts > MAX_ATTEMPTS:
                    self._fail(sub, "gave up: this image's batches failed repeatedly", out)
                else:
                    todo.append(sub)
            if todo:
                self._score_and_route(session, todo, out)
            flush_by_shape(session, subs)
            if todo:
                self._record(session, todo, out)
            session.commit()
        self._observe(out, len(todo), time.perf_counter() - started)
        return out

    def _record(self, session: Session, todo: list[Submission], out: BatchOutcome) -> None:
        """What the batch writes besides the submissions and their review items, in the same
        transaction: its decisions into the roll-ups (one call; idempotent, so a redelivered
        batch adds nothing twice) and its cost."""
        rollup.apply(session, [sub.id for sub in todo])
        out.dollars = record_batch(
            session,
            stage=self.name,
            size=len(todo),
            device_seconds=out.device_seconds,
            decode_seconds=out.decode_seconds,
            settings=self.ctx.settings,
            worker=self.worker,
        )

    def _score_and_route(self, session: Session, todo: list[Submission], out: BatchOutcome) -> None:
        tensors, good = self._decode(session, todo, out)
        if not good:
            return
        batch = np.stack(tensors)
        scores = self._predict(batch, good, out)
        ts = self.thresholds.get()
        now = utcnow()
        far = self._far(batch, good, scores, ts, out)
        for sub, score in zip(good, scores, strict=True):
            if score is None:
                continue
            if sub.id in far:
                self._to_human(sub, float(score), ts, now, out)
            elif self.stage == 1:
                self._route1(sub, float(score), ts, now, out)
            else:
                self._route2(sub, float(score), ts, now, out)
        with session.no_autoflush:  # the submissions are written in bulk afterwards
            open_reviews(session, out.reviews, at=now)

    def _decode(
        self, session: Session, todo: list[Submission], out: BatchOutcome
    ) -> tuple[list[np.ndarray], list[Submission]]:
        """Each image's input tensor from its derivative, in the reader threads (they pay off
        when the blob store is far away: an object store's latency overlaps)."""
        t0 = time.perf_counter()
        cfg, limit = self.engine.preprocess, self.ctx.settings.max_pixels
        submit = self._pool.submit if self._pool is not None else _now
        futures = [
            submit(stage_input, self.ctx.blobs, sub.image_sha256, key, cfg, max_pixels=limit)
            for sub, key in zip(todo, self._blob_keys(session, todo), strict=True)
        ]
        tensors, good = [], []
        for sub, fut in zip(todo, futures, strict=True):
            try:
                tensor, original = fut.result()
            except Exception as exc:  # one bad image never takes its batch down
                self._fail(sub, f"could not decode the stored image: {exc}", out)
                continue
            tensors.append(tensor)
            good.append(sub)
            out.originals += original
        if out.originals:
            log.info("%s: %d of %d inputs read from the original (no usable derivative)",
                     self.name, out.originals, len(todo))  # fmt: skip
        out.decode_seconds = time.perf_counter() - t0
        return tensors, good

    def _predict(
        self, batch: np.ndarray, subs: list[Submission], out: BatchOutcome
    ) -> list[float | None]:
        t0 = time.perf_counter()
        try:
            scores: list[float | None] = [float(x) for x in self.engine.predict(batch)]
        except Exception:
            # Find the culprit: score one by one, fail only the images that fail alone.
            log.exception("%s batch failed; retrying its images one by one", self.name)
            scores = []
            for i, sub in enumerate(subs):
                try:
                    scores.append(float(self.engine.predict(batch[i : i + 1])[0]))
                except Exception as exc:
                    self._fail(sub, f"the {self.name} model failed on this image: {exc}", out)
                    scores.append(None)
        out.device_seconds = time.perf_counter() - t0
        return scores

    def _fail(self, sub: Submission, message: str, out: BatchOutcome) -> None:
        sub.state = State.ERROR
        sub.error = message[:2000]
        out.errors += 1
        metrics.IMAGE_ERRORS.labels(stage=self.name).inc()

    def _decide(
        self, sub: Submission, route: Route, decider: Decider, now: Any, out: BatchOutcome
    ) -> None:
        sub.route = route.value
        if finalize(sub, outcome=Outcome(route.value), decider=decider, at=now):
            out.callbacks.append(sub.id)
        out.decided.append((route.value, decider.value))
        out.latencies.append((decider.value, (now - sub.created_at).total_seconds()))

    def _route1(
        self,
        sub: Submission,
        s1: float,
        ts: ThresholdSet,
        now: Any,
        out: BatchOutcome,
    ) -> None:
        if sub.decided_by == Decider.CACHE:  # an audited cache answer: scored, not re-decided
            sub.s1, sub.stage1_at = s1, now
            out.to_stage2.append(sub.id)
            return
        sub.s1, sub.stage1_at, sub.threshold_version = s1, now, ts.version
        route = route_stage1(s1, ts)
        if route is Route.STAGE2:
            sub.state, sub.route = State.STAGE2, Route.STAGE2
            out.to_stage2.append(sub.id)
            return
        self._decide(sub, route, Decider.STAGE1, now, out)
        if sub.audit:
            out.to_stage2.append(sub.id)  # audit: every stage scores it, whatever the decision

    def _far(
        self, batch: np.ndarray, subs: list[Submission], scores: list[float | None],
        ts: ThresholdSet, out: BatchOutcome,
    ) -> set[str]:  # fmt: skip
        """Images this stage would decide automatically that look like nothing its model was
        trained on (the engine's OOD gate, models/ood.py): a human decides those instead. The
        gate's time is the stage's device time too (it is billed like the model's)."""
        check = getattr(self.engine, "far", None)
        route = route_stage1 if self.stage == 1 else route_stage2
        pick = [i for i, (sub, s) in enumerate(zip(subs, scores, strict=True))
                if s is not None and sub.decided_by is None
                and (self.stage == 1 or sub.state == State.STAGE2)
                and route(s, ts) in (Route.ALLOW, Route.BLOCK)]  # fmt: skip
        if check is None or not pick:
            return set()
        t0 = time.perf_counter()
        flags = check(batch[pick])
        out.device_seconds += time.perf_counter() - t0
        return {subs[i].id for i, f in zip(pick, flags, strict=True) if f}

    def _to_human(
        self, sub: Submission, score: float, ts: ThresholdSet, now: Any, out: BatchOutcome
    ) -> None:
        if self.stage == 1:
            sub.s1, sub.stage1_at = score, now
        else:
            sub.s2, sub.stage2_at = score, now
        sub.threshold_version, sub.route = ts.version, Route.REVIEW
        out.reviews.append(ReviewRequest(sub, ReviewReason.OOD, self._labels_required()))
        if self.stage == 1 and sub.audit:
            out.to_stage2.append(sub.id)  # audit: every stage scores it, whatever the route

    def _labels_required(self) -> int:
        return labels_required_for(self.rng.random(), self.ctx.settings.double_label_rate)

    def _route2(
        self,
        sub: Submission,
        s2: float,
        ts: ThresholdSet,
        now: Any,
        out: BatchOutcome,
    ) -> None:
        sub.s2, sub.stage2_at = s2, now
        if sub.state == State.STAGE2:
            sub.threshold_version = ts.version
            route = route_stage2(s2, ts)
            if route is Route.REVIEW:
                sub.route = Route.REVIEW
                out.reviews.append(
                    ReviewRequest(sub, ReviewReason.ESCALATION, self._labels_required())
                )
                return
            self._decide(sub, route, Decider.STAGE2, now, out)
        if sub.audit:
            out.reviews.append(ReviewRequest(sub, ReviewReason.AUDIT, self._labels_required()))

    def _observe(self, out: BatchOutcome, size: int, seconds: float) -> None:
        if size:
            metrics.observe_batch(
                stage=self.name, device=self._device(), size=size, wall_seconds=seconds,
                device_seconds=out.device_seconds, dollars=out.dollars,
            )  # fmt: skip
        for (route, decider), (_, latency) in zip(out.decided, out.latencies, strict=True):
            metrics.observe_decision(route=route, decider=decider, latency_seconds=latency)

    def _device(self) -> str:
        return self.ctx.settings.billed_as(self.name)
