"""`cascade retune` and `cascade thresholds`: the feedback service from the command line.

Both talk to the database named by the settings (CASCADE_DATABASE_URL), like the workers do;
someone with a shell there is trusted as an admin.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy.orm import Session

from cascade.context import Context
from cascade.db.session import session_scope
from cascade.errors import CascadeError
from feedback import rollout
from feedback.retune import proposal_as_dict
from feedback.retune import retune as run_retune

T = TypeVar("T")


def _default_by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


BY = click.option("--by", default=_default_by, show_default="cli:$USER", help="Who is acting.")


def _in_session(work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction; our errors become clean CLI errors."""
    with Context.opened() as ctx:
        try:
            with session_scope(ctx.sessions) as session:
                return work(session)
        except CascadeError as exc:
            raise click.ClickException(exc.message) from None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def format_proposal(p: dict[str, Any]) -> str:
    """A proposal as a readable table (what ``cascade retune`` prints)."""
    t = p["thresholds"]
    head = "certified" if p["certified"] else "FALLBACK — nothing certified"
    lines = [
        f"threshold set v{p['version']}: {head}; "
        + ("ACTIVATED" if p["activated"] else "proposed (not active)"),
        *([f"  {p['note']}"] if p["note"] != "certified" else []),
        f"  t1_lo={t['t1_lo']:.4g}  t1_hi={t['t1_hi']:.4g}  "
        f"t2_lo={t['t2_lo']:.4g}  t2_hi={t['t2_hi']:.4g}",
        f"  audit images: {p['n_samples']} ({p['n_bound_samples']} equal-probability for the bound)",
        f"  miss-rate bound: {_pct(p['miss_rate_bound'])} at confidence "
        f"{100 * (1 - p['delta']):.0f}% (alpha {_pct(p['alpha'])})",
    ]
    e = p["estimate"]
    if e is None:
        return "\n".join([*lines, "  no audit sample: nothing to estimate"])
    se = e["se"]
    rows = [
        ("cost per image", f"${e['cost']:.6f}", f"${se['cost']:.6f}"),
        ("miss rate", _pct(e["miss_rate"]), _pct(se["miss_rate"])),
        ("false-block rate", _pct(e["false_block_rate"]), _pct(se["false_block_rate"])),
        ("decided at stage 1", _pct(e["stage1_share"]), _pct(se["stage1_share"])),
        ("decided at stage 2", _pct(e["stage2_share"]), _pct(se["stage2_share"])),
        ("sent to humans", _pct(e["human_share"]), _pct(se["human_share"])),
    ]
    lines.append(f"  {'':<20}{'estimate':>14}{'std. error':>14}")
    lines += [f"  {name:<20}{value:>14}{err:>14}" for name, value, err in rows]
    cert = p.get("certificate") or {}
    for name, key in (("miss rate", "miss_interval"), ("false-block rate", "false_block_interval")):
        if cert.get(key):
            lo, hi = cert[key]
            lines.append(
                f"  {name}: {100 * (1 - p['delta']):.0f}% interval [{_pct(lo)}, {_pct(hi)}]"
            )
    if cert.get("false_block_bound") is not None:
        lines.append(
            f"  false-block bound: {_pct(cert['false_block_bound'])} (beta {_pct(cert['beta'])})"
        )
    if p.get("traffic_per_hour"):
        reviews = e["human_share"] * p["traffic_per_hour"]
        lines.append(f"  reviews per hour at {p['traffic_per_hour']:.0f} images/h: {reviews:.1f}")
    return "\n".join(lines)


@click.command()
@click.option(
    "--activate/--no-activate",
    default=None,
    help="Activate a certified result now (default: CASCADE_AUTO_ACTIVATE).",
)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Bound on the miss rate (default: CASCADE_ALPHA).")  # fmt: skip
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Allowed chance that the bound is wrong (default: CASCADE_DELTA).")  # fmt: skip
@click.option("--reason", default="requested from the CLI", show_default=True)
@click.option("--tighten-only", is_flag=True, help="Never allow more than the active set does.")
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
@BY
def retune(
    activate: bool | None,
    alpha: float | None,
    delta: float | None,
    reason: str,
    tighten_only: bool,
    as_json: bool,
    by: str,
) -> None:
    """Find the cheapest thresholds whose miss rate is certified <= alpha on the audit sample,
    store them as a proposed set and print what they are expected to do."""
    with Context.opened() as ctx:
        proposal = run_retune(ctx, by=by, reason=reason, auto_activate=activate, alpha=alpha,
                              delta=delta, tighten_only=tighten_only)  # fmt: skip
    p = proposal_as_dict(proposal)
    click.echo(json.dumps(p, indent=2) if as_json else format_proposal(p))


@click.group()
def thresholds() -> None:
    """List, show, activate, reject and roll back threshold sets."""


@thresholds.command("list")
def list_sets() -> None:
    """Every threshold set, newest first ('*' marks the one in force)."""

    def work(session: Session) -> list[dict[str, Any]]:
        return [rollout.row_as_dict(r) for r in rollout.list_rows(session)]

    rows = [*_in_session(work), rollout.default_as_dict()]
    in_force = next((r["version"] for r in rows if r["status"] == "active"), 0)
    click.echo(f"  {'ver':>4} {'status':<9} {'t1_lo':>7} {'t1_hi':>7} {'t2_lo':>7} {'t2_hi':>7} "
               f"{'$/image':>10} {'bound':>8} {'n':>7}  by / reason")  # fmt: skip
    for r in rows:
        t = r["thresholds"]
        cost = "—" if r.get("expected_cost") is None else f"{r['expected_cost']:.6f}"
        mark = "*" if r["version"] == in_force else " "
        status = "default" if r["version"] == 0 else r["status"]
        click.echo(
            f"{mark} {r['version']:>4} {status:<9} {t['t1_lo']:>7.4g} {t['t1_hi']:>7.4g} "
            f"{t['t2_lo']:>7.4g} {t['t2_hi']:>7.4g} {cost:>10} {_pct(r.get('miss_rate_bound')):>8} "
            f"{r.get('n_samples') or '—':>7}  {r['created_by']}: {r['reason']}"
        )


@thresholds.command()
@click.argument("version", type=int, required=False)
def show(version: int | None) -> None:
    """One set with its full provenance as JSON (default: the one in force)."""

    def work(session: Session) -> dict[str, Any]:
        row = rollout.active_row(session) if version is None else rollout.get_row(session, version)
        return rollout.row_as_dict(row) if row else rollout.default_as_dict()

    click.echo(json.dumps(_in_session(work), indent=2))


@thresholds.command()
@click.argument("version", type=int)
@BY
def activate(version: int, by: str) -> None:
    """Put VERSION in force (0: the built-in defaults); workers pick it up within seconds."""
    ts = _in_session(lambda s: rollout.activate(s, version, by=by))
    click.echo(f"version {ts.version} is active: {ts.as_dict()}")


@thresholds.command()
@BY
def rollback(by: str) -> None:
    """Re-activate the set in force before the current one (the current one is rejected)."""
    ts = _in_session(lambda s: rollout.rollback(s, by=by))
    click.echo(f"rolled back; version {ts.version} is active: {ts.as_dict()}")


@thresholds.command()
@click.argument("version", type=int)
@BY
def reject(version: int, by: str) -> None:
    """Mark a proposed set VERSION as not to be used."""
    _in_session(lambda s: rollout.reject(s, version, by=by))
    click.echo(f"version {version} rejected")
