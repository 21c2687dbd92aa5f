"""`cascade demo`: the whole product, unattended, on synthetic traffic.

Trains (or reuses) the demo models, starts the embedded stack, pushes labelled synthetic images
through the HTTP API, plays the moderators from the ground truth, retunes the thresholds from
the audit labels, and prints what happened and what it cost.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
import numpy as np
from sqlalchemy import func, select

from cascade.apikeys import create_key
from cascade.config import Settings
from cascade.context import Context
from cascade.cost import compute_dollars
from cascade.db.schema import PENDING_STATES, BatchRecord, Label, Role, Submission, User, utcnow
from cascade.db.session import session_scope
from cascade.dispatch import Dispatcher
from cascade.review import claim_next, record_label
from models.progress import Progress
from services.auth import hash_password
from services.stack import Stack


@dataclass
class Traffic:
    truth: dict[str, bool] = field(default_factory=dict)  # submission id -> harmful
    refused: int = 0
    seconds: float = 0.0


def push_traffic(url: str, api_key: str, *, n: int, harmful_rate: float, seed: int) -> Traffic:
    """Upload ``n`` synthetic images through the HTTP API with a few concurrent clients."""
    from cascade.client import CascadeClient, CascadeError
    from models.synthetic import generate_image

    rng = random.Random(seed)
    labels = [rng.random() < harmful_rate for _ in range(n)]
    traffic = Traffic()
    client = CascadeClient(url, api_key)

    def one(i: int) -> tuple[str | None, bool]:
        data, _meta = generate_image(np.random.default_rng(seed * 100_003 + i), harmful=labels[i])
        try:
            return client.submit(data).id, labels[i]
        except CascadeError:
            return None, labels[i]

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool, Progress(total=n, desc="uploading", unit="img") as bar:
        for sid, harmful in pool.map(one, range(n)):
            bar.update()
            if sid is None:
                traffic.refused += 1
            else:
                traffic.truth[sid] = harmful
    traffic.seconds = time.perf_counter() - started
    return traffic


def wait_for_cascade(ctx: Context, ids: list[str], *, timeout_s: float = 600) -> None:
    """Wait until no submission is still in the automatic stages."""
    with Progress(total=len(ids), desc="cascade", unit="img") as bar:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with ctx.sessions() as session:
                pending = (
                    session.scalar(select(func.count()).where(Submission.state.in_(PENDING_STATES)))
                    or 0
                )
            bar.set(len(ids) - pending)
            if pending == 0:
                return
            time.sleep(0.5)
    raise click.ClickException(f"{pending} images still undecided after {timeout_s}s")


def play_moderators(
    ctx: Context, dispatcher: Dispatcher, truth: dict[str, bool], *, accuracy: float, seed: int
) -> int:
    """Two simulated moderators label the queue from the ground truth (with some mistakes)."""
    rng = random.Random(seed)
    with session_scope(ctx.sessions) as session:
        users = []
        for name in ("demo-mod-1", "demo-mod-2"):
            user = session.scalars(select(User).where(User.username == name)).first()
            if user is None:
                user = User(username=name, password_hash=hash_password(secrets.token_hex(16)),
                            role=Role.MODERATOR)  # fmt: skip
                session.add(user)
            users.append(user)
        session.flush()
        user_ids = [u.id for u in users]
    labelled, idle = 0, 0
    callbacks: list[str] = []
    with Progress(total=None, desc="moderators", unit="label") as bar:
        while idle < len(user_ids):
            idle = 0
            for uid in user_ids:
                with session_scope(ctx.sessions) as session:
                    item = claim_next(session, user_id=uid, lease_s=ctx.settings.review_lease_s)
                    if item is None:
                        idle += 1
                        continue
                    harmful = truth.get(item.submission_id, False)
                    correct = rng.random() < accuracy
                    label = "block" if harmful == correct else "allow"
                    outcome = record_label(session, item_id=item.id, user_id=uid, label=label,
                                           settings=ctx.settings, seconds_spent=6.0)  # fmt: skip
                    if outcome.callback_due:
                        callbacks.append(outcome.submission_id)
                    labelled += 1
                    bar.update()
    dispatcher.follow_up(callbacks=callbacks)
    return labelled


def round_dollars(
    ctx: Context, session: Any, ids: list[str], since: datetime, misses: int, false_blocks: int
) -> dict[str, float]:
    """What one round cost: the stage batches run since it began (rounds run one after the
    other), its labels, and its true errors (known here from the ground truth)."""
    s = ctx.settings
    dollars = {"stage1": 0.0, "stage2": 0.0}
    for stage, seconds in session.execute(
        select(BatchRecord.stage, func.sum(BatchRecord.device_seconds))
        .where(BatchRecord.created_at >= since)
        .group_by(BatchRecord.stage)
    ):
        dollars[stage] = compute_dollars(float(seconds or 0.0), s.stage_price_per_hour(stage))
    labels = 0
    for chunk in range(0, len(ids), 500):
        labels += (
            session.scalar(
                select(func.count()).where(
                    Label.submission_id.in_(ids[chunk : chunk + 500]), Label.label != "skip"
                )
            )
            or 0
        )
    dollars["human"] = labels * s.human_review_cost
    dollars["error"] = misses * s.miss_cost + false_blocks * s.false_block_cost
    return dollars


def summarise(ctx: Context, traffic: Traffic, since: datetime) -> dict[str, Any]:
    """This round's decisions by decider, escalation share, errors against the truth, cost."""
    ids = list(traffic.truth)
    with ctx.sessions() as session:
        subs: list[Any] = []
        for chunk in range(0, len(ids), 500):
            subs += session.execute(
                select(Submission.id, Submission.state, Submission.decision,
                       Submission.decided_by, Submission.audit, Submission.s2)
                .where(Submission.id.in_(ids[chunk : chunk + 500]))
            ).all()  # fmt: skip
        misses = sum(bool(traffic.truth.get(s.id)) and s.decision == "allow" for s in subs)
        false_blocks = sum(
            s.id in traffic.truth and not traffic.truth[s.id] and s.decision == "block"
            for s in subs
        )
        dollars = round_dollars(ctx, session, ids, since, misses, false_blocks)
    n = len(subs)
    deciders = Counter(s.decided_by or s.state for s in subs)
    reached2 = sum(s.s2 is not None and not s.audit for s in subs)
    compute = dollars.get("stage1", 0.0) + dollars.get("stage2", 0.0)
    total = compute + dollars.get("human", 0.0) + dollars.get("error", 0.0)
    return {
        "images": n,
        "refused": traffic.refused,
        "upload_rate": len(traffic.truth) / traffic.seconds if traffic.seconds else 0.0,
        "deciders": dict(deciders),
        "escalated_to_stage2": reached2 / n if n else 0.0,
        "audited": sum(bool(s.audit) for s in subs),
        "misses": misses,
        "false_blocks": false_blocks,
        "dollars": dollars,
        "cost_per_image": total / n if n else 0.0,
        "compute_per_image": compute / n if n else 0.0,
    }


def ensure_demo_models_verbose(settings: Settings) -> None:
    """Train or reuse the demo models and say how good they are."""
    from models.demo import ensure_demo_models

    summary = ensure_demo_models(settings.model_dir, settings.var_dir / "data")
    for stage in ("stage1", "stage2"):
        s = summary[stage]
        verb = "reused" if s["reused"] else f"trained in {s['seconds']:.0f} s"
        acc = s.get("test_accuracy")
        click.echo(f"  {stage}: {s['model']} at {s['size']} px, {verb}, held-out accuracy "
                   f"{acc:.1%}" if acc is not None else f"  {stage}: {s['model']}, {verb}")  # fmt: skip


class DemoRun:
    """Rounds of synthetic traffic against a running stack, and what they cost."""

    def __init__(self, stack: Stack, *, harmful_rate: float, accuracy: float, seed: int) -> None:
        self.stack = stack
        settings = stack.settings.model_copy(update={"broker_url": stack.broker_url})
        self.ctx = Context.from_settings(settings)
        self.dispatcher = Dispatcher(settings)
        self.harmful_rate, self.accuracy, self.seed = harmful_rate, accuracy, seed
        self.password = secrets.token_urlsafe(9)
        with session_scope(self.ctx.sessions) as session:
            self.key = create_key(session, tenant_name="demo").key
            ensure_admin(session, "admin", self.password)
        self.rounds = 0

    def round(self, n: int, name: str) -> dict[str, Any]:
        """Upload ``n`` images, let the cascade and the moderators decide, summarise."""
        self.rounds += 1
        since = utcnow()
        seed = self.seed * 1000 + self.rounds
        traffic = push_traffic(self.stack.url, self.key, n=n, harmful_rate=self.harmful_rate,
                               seed=seed)  # fmt: skip
        wait_for_cascade(self.ctx, list(traffic.truth))
        play_moderators(self.ctx, self.dispatcher, traffic.truth, accuracy=self.accuracy,
                        seed=seed)  # fmt: skip
        return summarise(self.ctx, traffic, since) | {"name": name}

    def retune(self) -> Any:
        from feedback.retune import retune

        return retune(self.ctx, by="demo", reason="demo: audit labels of round 1",
                      auto_activate=True)  # fmt: skip

    def print_summary(
        self, before: dict[str, Any], after: dict[str, Any] | None, proposal: Any
    ) -> None:
        rounds = [r for r in (before, after) if r is not None]
        click.echo("\n" + "=" * 72)
        click.echo("Cascade demo")
        click.echo("=" * 72)
        click.echo(f"{'':28}" + "".join(f"{r['name']:>22}" for r in rounds))
        for label, fn in SUMMARY_ROWS:
            click.echo(f"{label:<28}" + "".join(f"{fn(r):>22}" for r in rounds))
        o = proposal.optimum
        click.echo("-" * 72)
        click.echo(f"retune → v{proposal.version}: {o.note}")
        click.echo(f"  audit sample n={o.n_samples}, miss-rate bound {o.miss_rate_bound:.4f} "
                   f"(alpha {self.ctx.settings.alpha}), activated: {proposal.activated}")  # fmt: skip
        url = self.stack.url
        click.echo("-" * 72)
        click.echo(f"app        {url}")
        click.echo(f"review UI  {url}/review   (login admin / {self.password})")
        click.echo(f"dashboard  {url}/dashboard")
        click.echo(f"API docs   {url}/v1/docs")


def _share(r: dict[str, Any], decider: str) -> str:
    n = max(r["images"], 1)
    return f"{r['deciders'].get(decider, 0) / n:.1%}"


SUMMARY_ROWS: list[tuple[str, Any]] = [
    ("images", lambda r: f"{r['images']} ({r['refused']} refused)"),
    ("upload rate", lambda r: f"{r['upload_rate']:.1f} img/s"),
    ("decided at stage 1", lambda r: _share(r, "stage1")),
    ("decided at stage 2", lambda r: _share(r, "stage2")),
    ("decided by a human", lambda r: _share(r, "human")),
    ("answered from the cache", lambda r: _share(r, "cache")),
    ("escalated to stage 2", lambda r: f"{r['escalated_to_stage2']:.1%}"),
    ("audited", lambda r: str(r["audited"])),
    ("misses (harmful allowed)", lambda r: str(r["misses"])),
    ("false blocks", lambda r: str(r["false_blocks"])),
    ("compute $/1,000 images", lambda r: f"${r['compute_per_image'] * 1000:.5f}"),
    ("human $/1,000 images", lambda r: f"${r['dollars']['human'] / r['images'] * 1000:.2f}"),
    ("error $/1,000 images", lambda r: f"${r['dollars']['error'] / r['images'] * 1000:.2f}"),
    ("total $/1,000 images", lambda r: f"${r['cost_per_image'] * 1000:.2f}"),
]


def ensure_admin(session: Any, username: str, password: str) -> None:
    """An admin account for the person running the demo (its password reset each run)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        user = User(username=username, role=Role.ADMIN, password_hash="")
        session.add(user)
    user.password_hash = hash_password(password)
    user.active = True
