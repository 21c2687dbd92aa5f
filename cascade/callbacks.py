"""Decision callbacks: signed JSON POSTs to the upload service, retried with backoff.

Signature: ``X-Cascade-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` with
the shared callback secret, as Stripe-style webhooks do; receivers check the time too, which
stops replays. Delivery is at-least-once: ``X-Cascade-Delivery`` identifies a (submission,
decision) pair so a receiver can drop a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import requests
from sqlalchemy import update

from cascade.context import Context
from cascade.db.schema import Submission, utcnow
from cascade.netguard import check_callback_url


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300) -> bool:
    """Check a signature header (for receivers and tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def payload(sub: Submission) -> dict[str, Any]:
    return {
        "id": sub.id,
        "state": sub.state,
        "decision": sub.decision,
        "decided_by": sub.decided_by,
        "corrected": sub.auto_decision is not None and sub.decision != sub.auto_decision,
        "decided_at": sub.decided_at.isoformat() if sub.decided_at else None,
        "threshold_version": sub.threshold_version,
    }


def deliver(ctx: Context, submission_id: str) -> bool:
    """POST the decision if it has not been delivered yet. Returns True when it was sent now.

    Each attempt is claimed first (``callback_attempts`` moves on only if nobody else moved it
    since it was read), so copies of one message running together POST once. Raises on a
    failed delivery so the Celery task retries it with backoff.
    """
    with ctx.sessions() as session:
        sub = session.get(Submission, submission_id)
        if sub is None or not sub.callback_url or sub.callback_sent_at is not None:
            return False
        if sub.decision is None:
            return False
        check_callback_url(sub.callback_url, allow_private=ctx.settings.callback_allow_private)
        body = json.dumps(payload(sub), separators=(",", ":")).encode()
        decision, url = sub.decision, sub.callback_url
        # Claim this attempt: of two copies of one message that read the row together (Redis
        # hands a message out again once it is held past the visibility timeout), one POSTs.
        claim = session.execute(
            update(Submission)
            .where(
                Submission.id == submission_id,
                Submission.decision == decision,
                Submission.callback_sent_at.is_(None),
                Submission.callback_attempts == sub.callback_attempts,
            )
            .values(callback_attempts=sub.callback_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if claim.rowcount != 1:  # type: ignore[attr-defined]
            return False
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "cascade-callback/1",
        "X-Cascade-Signature": sign(ctx.settings.callback_secret, body, int(time.time())),
        "X-Cascade-Delivery": f"{submission_id}:{decision}",
    }
    response = requests.post(
        url, data=body, headers=headers, timeout=ctx.settings.callback_timeout_s,
        allow_redirects=False,
    )  # fmt: skip
    response.raise_for_status()
    try:
        record_delivery(ctx, submission_id, decision)
    except Exception as exc:  # the database went away between the POST and its record
        raise DeliveredNotRecorded(decision) from exc
    return True


class DeliveredNotRecorded(Exception):
    """The POST succeeded but could not be recorded: retry the record only, never the POST
    (a database blip would otherwise call the receiver twice)."""

    def __init__(self, decision: str) -> None:
        super().__init__(f"callback delivered ({decision}) but not recorded")
        self.decision = decision


def record_delivery(ctx: Context, submission_id: str, decision: str) -> None:
    """Mark ``decision``'s callback as delivered (a later, different decision is news again)."""
    with ctx.sessions() as session:
        session.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.decision == decision)
            .values(callback_sent_at=utcnow())  # (the attempt was counted by its claim)
        )
        session.commit()
