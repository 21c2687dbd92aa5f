"""`cascade demo`: the whole product, unattended, on synthetic traffic.

Trains (or reuses) the demo models, starts the embedded stack, pushes labelled synthetic images
through the HTTP API, plays the moderators from the ground truth, retunes the thresholds from
the audit labels, and prints what happened and what it cost.
"""

from __future__ import annotations

import random
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
from scipy import stats
from sqlalchemy import func, select

from cascade.apikeys import create_key
from cascade.config import Settings
from cascade.context import Context
from cascade.cost import compute_dollars
from cascade.db.schema import (
    PENDING_STATES,
    BatchRecord,
    Label,
    ReviewItem,
    ReviewState,
    Role,
    Submission,
    User,
    utcnow,
)
from cascade.db.session import session_scope
from cascade.dispatch import Dispatcher
from cascade.policy import ALLOW_CODE, BLOCK_CODE, REVIEW_CODE, ThresholdSet, route_arrays
from cascade.review import claim_next, record_label, resolve_conflict
from cascade.thresholds import load_active
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
    """Two simulated moderators label the queue from the ground truth (with some mistakes);
    a simulated admin then rules on the items where they disagreed, and a second one on those
    where the first ruled an audited automatic decision wrong over moderators who split
    (``cascade.review.resolve_conflict``). Every one of them is ``accuracy`` right. Without
    the rulings an item stays in ``conflict``, and the audit window the retune may trust ends
    at the oldest such item (a few conflicts in a round cut its audit sample to a fraction)."""
    rng = random.Random(seed)
    with session_scope(ctx.sessions) as session:
        users = []
        for name, role in (("demo-mod-1", Role.MODERATOR), ("demo-mod-2", Role.MODERATOR),
                           ("demo-supervisor", Role.ADMIN),
                           ("demo-supervisor-2", Role.ADMIN)):  # fmt: skip
            user = session.scalars(select(User).where(User.username == name)).first()
            if user is None:
                user = User(username=name, password_hash=hash_password(secrets.token_hex(16)),
                            role=role)  # fmt: skip
                session.add(user)
            users.append(user)
        session.flush()
        user_ids, admin_ids = [u.id for u in users[:2]], [u.id for u in users[2:]]
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
    for admin_id in admin_ids:  # the second admin sees only what waits for a second ruling
        for item_id, submission_id in conflicts(ctx):
            if submission_id not in truth:  # not this round's: not ours to rule on
                continue
            harmful = truth[submission_id]
            label = "block" if harmful == (rng.random() < accuracy) else "allow"
            with session_scope(ctx.sessions) as session:
                outcome = resolve_conflict(session, item_id=item_id, admin_id=admin_id,
                                           label=label, settings=ctx.settings,
                                           note="demo ruling")  # fmt: skip
            if outcome.callback_due:
                callbacks.append(outcome.submission_id)
            labelled += 1
    dispatcher.follow_up(callbacks=callbacks)
    return labelled


def conflicts(ctx: Context) -> list[tuple[int, str]]:
    """Review items waiting for an admin's ruling: (item id, submission id)."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(ReviewItem.id, ReviewItem.submission_id)
            .where(ReviewItem.state == ReviewState.CONFLICT)
            .order_by(ReviewItem.id)
        ).all()
    return [(int(i), str(s)) for i, s in rows]


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


def audit_label_errors(session: Any, ids: list[str], truth: dict[str, bool]) -> dict[str, int]:
    """How the audit's final labels of ``ids`` compare with the ground truth: the retune
    certifies from these labels, so a benign image labelled harmful reads as a miss to it."""
    out = {"labelled": 0, "benign_labelled_harmful": 0, "harmful_labelled_benign": 0}
    for chunk in range(0, len(ids), 500):
        for sid, label in session.execute(
            select(ReviewItem.submission_id, ReviewItem.final_label).where(
                ReviewItem.submission_id.in_(ids[chunk : chunk + 500]),
                ReviewItem.final_label.in_(("allow", "block")),
            )
        ):
            out["labelled"] += 1
            harmful = truth[sid]
            out["benign_labelled_harmful"] += int(not harmful and label == "block")
            out["harmful_labelled_benign"] += int(harmful and label == "allow")
    return out


def share_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval of a share ``k / n``: what a round's size allows."""
    if n <= 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    lo = float(stats.beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def automatic_routes(subs: list[Any], ts: ThresholdSet) -> tuple[np.ndarray, np.ndarray]:
    """Where the thresholds in force sent each image (from its stored scores): audit and human
    corrections change decisions afterwards, not the route the cascade took."""
    s1 = np.asarray([s.s1 if s.s1 is not None else np.nan for s in subs], dtype=np.float64)
    s2 = np.asarray([s.s2 if s.s2 is not None else np.nan for s in subs], dtype=np.float64)
    return route_arrays(s1, s2, ts)


def summarise(ctx: Context, traffic: Traffic, since: datetime, ts: ThresholdSet) -> dict[str, Any]:
    """This round under threshold set ``ts``: routes (audit excluded: an audit labels an image,
    it does not decide it), errors of the automatic decisions against the truth, cost."""
    ids = list(traffic.truth)
    with ctx.sessions() as session:
        subs: list[Any] = []
        for chunk in range(0, len(ids), 500):
            subs += session.execute(
                select(Submission.id, Submission.s1, Submission.s2, Submission.audit)
                .where(Submission.id.in_(ids[chunk : chunk + 500]), Submission.s1.is_not(None))
            ).all()  # fmt: skip
        final, reached2 = automatic_routes(subs, ts)
        harmful = np.asarray([traffic.truth[s.id] for s in subs], dtype=bool)
        misses = int(np.sum(harmful & (final == ALLOW_CODE)))
        false_blocks = int(np.sum(~harmful & (final == BLOCK_CODE)))
        dollars = round_dollars(ctx, session, ids, since, misses, false_blocks)
        wrong = audit_label_errors(session, [s.id for s in subs if s.audit], traffic.truth)
    n, audited = len(subs), int(sum(bool(s.audit) for s in subs))
    counts = {
        "stage1": int(np.sum(~reached2)),
        "stage2": int(np.sum(reached2 & (final != REVIEW_CODE))),
        "human": int(np.sum(final == REVIEW_CODE)),
    }
    compute = dollars["stage1"] + dollars["stage2"]
    escalation_labels = counts["human"] * ctx.settings.human_review_cost
    return {
        "images": n,
        "harmful": int(harmful.sum()),
        "refused": traffic.refused,
        "upload_rate": len(traffic.truth) / traffic.seconds if traffic.seconds else 0.0,
        "counts": counts,
        "audited": audited,
        "audit_labels_wrong": wrong,
        "misses": misses,
        "false_blocks": false_blocks,
        "dollars": dollars,
        "thresholds": ts.as_dict(),
        "compute_per_image": compute / n if n else 0.0,
        # Without the audit's labels: those buy the certificate, whatever the thresholds.
        "cost_per_image": (compute + escalation_labels + dollars["error"]) / n if n else 0.0,
        "audit_per_image": max(dollars["human"] - escalation_labels, 0.0) / n if n else 0.0,
    }


EMBEDDED_STATE = ("cascade.db*", "blobs", "redis", "prometheus", "celerybeat-schedule*")


def forget_embedded_state(settings: Settings) -> list[Path]:
    """Delete the embedded run's state under ``var_dir`` (database, blobs, Redis, Prometheus,
    beat schedule) and return what was there; models, data, logs and secrets stay. Refused
    when the settings point at an outside database, blob store or broker: their data is not
    ours to delete."""
    outside = [name for name, value in (("CASCADE_DATABASE_URL", settings.database_url),
               ("CASCADE_BLOB_URL", settings.blob_url),
               ("CASCADE_BROKER_URL", settings.broker_url)) if value]  # fmt: skip
    if outside:
        raise click.ClickException(
            f"--fresh deletes only the embedded state under {settings.var_dir}/, and "
            f"{', '.join(outside)} points elsewhere: unset it, or reset that yourself"
        )
    removed = sorted(p for pattern in EMBEDDED_STATE for p in settings.var_dir.glob(pattern))
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def ensure_demo_models_verbose(settings: Settings) -> None:
    """Train or reuse the demo models (the quality gate refuses a bad one) and say how good
    they are on their held-out split, per difficulty band."""
    from models.artifact import ModelRefused
    from models.demo import ensure_demo_models

    try:
        summary = ensure_demo_models(settings.model_dir, settings.var_dir / "data")
    except ModelRefused as exc:  # never served: say why and stop
        raise click.ClickException(str(exc)) from exc
    if summary["data_generated"]:
        click.echo(f"  data: {summary['data_dir']} generated and decoded in "
                   f"{summary['data_seconds']:.0f} s")  # fmt: skip
    for stage in ("stage1", "stage2"):
        s = summary[stage]
        verb = "reused" if s["reused"] else f"trained, gated and exported in {s['seconds']:.0f} s"
        bands = ", ".join(f"{b} {v['accuracy']:.1%}" for b, v in (s["test_by_band"] or {}).items())
        click.echo(f"  {stage}: {s['model']} at {s['size']} px, {verb}; held-out accuracy "
                   f"{s['test_accuracy']:.1%} ({bands}); worst confident-error rate "
                   f"{s['max_confident_error_rate']}")  # fmt: skip


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
        with self.ctx.sessions() as session:
            ts = load_active(session)
        seed = self.seed * 1000 + self.rounds
        traffic = push_traffic(self.stack.url, self.key, n=n, harmful_rate=self.harmful_rate,
                               seed=seed)  # fmt: skip
        wait_for_cascade(self.ctx, list(traffic.truth))
        play_moderators(self.ctx, self.dispatcher, traffic.truth, accuracy=self.accuracy,
                        seed=seed)  # fmt: skip
        return summarise(self.ctx, traffic, since, ts) | {"name": name}

    def retune(self) -> Any:
        from feedback.retune import retune

        return retune(self.ctx, by="demo", reason="demo: audit labels of round 1",
                      auto_activate=True)  # fmt: skip

    def print_summary(
        self, before: dict[str, Any], after: dict[str, Any] | None, proposal: Any
    ) -> None:
        rounds = [r for r in (before, after) if r is not None]
        width = 30
        click.echo("\n" + "=" * 92)
        click.echo("Cascade demo (shares: 95 % Clopper-Pearson intervals for the round's size)")
        click.echo("=" * 92)
        click.echo(f"{'':32}" + "".join(f"{r['name']:>{width}}" for r in rounds))
        for label, fn in SUMMARY_ROWS:
            click.echo(f"{label:<32}" + "".join(f"{fn(r):>{width}}" for r in rounds))
        o = proposal.optimum
        alpha = self.ctx.settings.alpha
        click.echo("-" * 92)
        click.echo(f"retune → v{proposal.version}: {o.note}; activated: {proposal.activated}")
        click.echo(f"  audit sample n={o.n_samples}, certified miss-rate bound "
                   f"{o.miss_rate_bound:.4f} at alpha {alpha:g} = {alpha / self.harmful_rate:.0%} "
                   f"of the prevalence (looser than the 5 % of `cascade bench cascade`: a demo "
                   f"round's audit sample is small)")  # fmt: skip
        if after is not None:
            click.echo(f"  after the retune: human share {_delta(before, after, 'human')}, "
                       f"compute per image {_ratio(before, after, 'compute_per_image')}, "
                       f"total per image {_ratio(before, after, 'cost_per_image')}")  # fmt: skip
        url = self.stack.url
        click.echo("-" * 92)
        click.echo(f"app        {url}")
        click.echo(f"review UI  {url}/review   (login admin / {self.password})")
        click.echo(f"dashboard  {url}/dashboard")
        click.echo(f"API docs   {url}/v1/docs")


def _share(r: dict[str, Any], k: int) -> str:
    lo, hi = share_interval(k, r["images"])
    return f"{k / max(r['images'], 1):.1%} [{lo:.1%}, {hi:.1%}]"


def _wrong(w: dict[str, int]) -> str:
    n = max(w["labelled"], 1)
    return (f"{w['benign_labelled_harmful']} / {w['harmful_labelled_benign']} of "
            f"{w['labelled']} ({(w['benign_labelled_harmful'] + w['harmful_labelled_benign']) / n:.2%})")  # fmt: skip


def _delta(before: dict[str, Any], after: dict[str, Any], route: str) -> str:
    a, b = (r["counts"][route] / max(r["images"], 1) for r in (before, after))
    return f"{a:.1%} → {b:.1%}"


def _ratio(before: dict[str, Any], after: dict[str, Any], key: str) -> str:
    a, b = before[key], after[key]
    return f"x{b / a:.2f}" if a else "n/a"


SUMMARY_ROWS: list[tuple[str, Any]] = [
    ("images (harmful)", lambda r: f"{r['images']} ({r['harmful']})"),
    ("upload rate", lambda r: f"{r['upload_rate']:.1f} img/s"),
    ("thresholds t1 lo/hi, t2 lo/hi", lambda r: "{t1_lo:.3g}/{t1_hi:.3g}, {t2_lo:.3g}/{t2_hi:.3g}".format(**r["thresholds"])),
    ("decided at stage 1", lambda r: _share(r, r["counts"]["stage1"])),
    ("decided at stage 2", lambda r: _share(r, r["counts"]["stage2"])),
    ("sent to a human (no audit)", lambda r: _share(r, r["counts"]["human"])),
    ("audited (labelled anyway)", lambda r: str(r["audited"])),
    ("audit labels wrong (benign / harmful)", lambda r: _wrong(r["audit_labels_wrong"])),
    ("misses (harmful auto-allowed)", lambda r: _share(r, r["misses"])),
    ("false blocks", lambda r: _share(r, r["false_blocks"])),
    ("compute $/1,000 images", lambda r: f"${r['compute_per_image'] * 1000:.5f}"),
    ("humans+errors $/1,000", lambda r: f"${(r['cost_per_image'] - r['compute_per_image']) * 1000:.2f}"),
    ("total $/1,000 (no audit)", lambda r: f"${r['cost_per_image'] * 1000:.2f}"),
    ("audit labels $/1,000", lambda r: f"${r['audit_per_image'] * 1000:.2f}"),
]  # fmt: skip


def ensure_admin(session: Any, username: str, password: str) -> None:
    """An admin account for the person running the demo (its password reset each run)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        user = User(username=username, role=Role.ADMIN, password_hash="")
        session.add(user)
    user.password_hash = hash_password(password)
    user.active = True
