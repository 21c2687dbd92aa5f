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
from tqdm import tqdm

from cascade.config import Settings
from cascade.context import Context
from cascade.cost import ledger_totals
from cascade.db.schema import Role, State, Submission, User
from cascade.review import claim_next, record_label
from services.auth import hash_password
from services.stack import Stack

PENDING = (State.QUEUED, State.STAGE1, State.STAGE2)


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
    with ThreadPoolExecutor(8) as pool, tqdm(total=n, desc="uploading", unit="img") as bar:
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
    with tqdm(total=len(ids), desc="cascade", unit="img") as bar:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with ctx.sessions() as session:
                pending = (
                    session.scalar(select(func.count()).where(Submission.state.in_(PENDING))) or 0
                )
            bar.n = len(ids) - pending
            bar.refresh()
            if pending == 0:
                return
            time.sleep(0.5)
    raise click.ClickException(f"{pending} images still undecided after {timeout_s}s")


def play_moderators(ctx: Context, truth: dict[str, bool], *, accuracy: float, seed: int) -> int:
    """Two simulated moderators label the queue from the ground truth (with some mistakes)."""
    rng = random.Random(seed)
    with ctx.sessions() as session:
        users = []
        for name in ("demo-mod-1", "demo-mod-2"):
            user = session.scalars(select(User).where(User.username == name)).first()
            if user is None:
                user = User(username=name, password_hash=hash_password(secrets.token_hex(16)),
                            role=Role.MODERATOR)  # fmt: skip
                session.add(user)
            users.append(user)
        session.commit()
        user_ids = [u.id for u in users]
    labelled, idle = 0, 0
    callbacks: list[str] = []
    with tqdm(desc="moderators", unit="label") as bar:
        while idle < len(user_ids):
            idle = 0
            for uid in user_ids:
                with ctx.sessions() as session:
                    item = claim_next(session, user_id=uid, lease_s=ctx.settings.review_lease_s)
                    if item is None:
                        idle += 1
                        session.commit()
                        continue
                    harmful = truth.get(item.submission_id, False)
                    correct = rng.random() < accuracy
                    label = "block" if harmful == correct else "allow"
                    outcome = record_label(session, item_id=item.id, user_id=uid, label=label,
                                           settings=ctx.settings, seconds_spent=6.0)  # fmt: skip
                    session.commit()
                    if outcome.callback_due:
                        callbacks.append(outcome.submission_id)
                    labelled += 1
                    bar.update()
    if callbacks:
        ctx.send_callbacks(callbacks)
    return labelled


def summarise(ctx: Context, traffic: Traffic, since: datetime) -> dict[str, Any]:
    """This run's decisions by decider, escalation share, errors against the truth, cost."""
    ids = list(traffic.truth)
    with ctx.sessions() as session:
        subs: list[Any] = []
        for chunk in range(0, len(ids), 500):
            subs += session.execute(
                select(Submission.id, Submission.state, Submission.decision,
                       Submission.decided_by, Submission.audit, Submission.s2)
                .where(Submission.id.in_(ids[chunk : chunk + 500]))
            ).all()  # fmt: skip
        dollars = ledger_totals(session, since=since)
    n = len(subs)
    deciders = Counter(s.decided_by or s.state for s in subs)
    reached2 = sum(s.s2 is not None and not s.audit for s in subs)
    misses = sum(bool(traffic.truth.get(s.id)) and s.decision == "allow" for s in subs)
    false_blocks = sum(
        s.id in traffic.truth and not traffic.truth[s.id] and s.decision == "block" for s in subs
    )
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


def print_summary(
    summary: dict[str, Any], stack: Stack, login: tuple[str, str], retune: Any
) -> None:
    n = summary["images"]
    click.echo("\n" + "=" * 64)
    click.echo(f"Cascade demo — {n} images ({summary['refused']} refused at upload)")
    click.echo("=" * 64)
    click.echo(f"upload rate        {summary['upload_rate']:.1f} images/s")
    click.echo("decided by:")
    for decider, count in sorted(summary["deciders"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  {decider:<16} {count:>6}  ({count / max(n, 1):6.1%})")
    click.echo(f"escalated to stage 2 {summary['escalated_to_stage2']:6.1%}   "
               f"audited {summary['audited']}")  # fmt: skip
    click.echo(
        f"misses (harmful allowed) {summary['misses']}   false blocks {summary['false_blocks']}"
    )
    d = summary["dollars"]
    click.echo("cost: " + ", ".join(f"{k} ${v:.4f}" for k, v in sorted(d.items())))
    click.echo(f"cost per image     ${summary['cost_per_image']:.5f} "
               f"(compute ${summary['compute_per_image']:.6f}) — "
               f"${summary['cost_per_image'] * 1000:.2f} per 1,000 images")  # fmt: skip
    if retune is not None:
        o = retune.optimum
        click.echo(f"retune → proposal v{retune.version}: {o.note} (n={o.n_samples}, "
                   f"miss-rate bound {o.miss_rate_bound:.4f}, activated={retune.activated})")  # fmt: skip
    click.echo("-" * 64)
    click.echo(f"app        {stack.url}")
    click.echo(f"review UI  {stack.url}/review   (login {login[0]} / {login[1]})")
    click.echo(f"dashboard  {stack.url}/dashboard")
    click.echo(f"API docs   {stack.url}/v1/docs")


def demo_settings(settings: Settings, audit_rate: float) -> Settings:
    return settings.model_copy(update={"audit_rate": audit_rate})


def ensure_admin(session: Any, username: str, password: str) -> None:
    """An admin account for the person running the demo (its password reset each run)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        user = User(username=username, role=Role.ADMIN, password_hash="")
        session.add(user)
    user.password_hash = hash_password(password)
    user.active = True
