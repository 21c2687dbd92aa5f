"""Rows for feedback tests, inserted in bulk (thousands of audited submissions in a second)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert

from cascade.apikeys import IssuedKey, create_key
from cascade.context import Context
from cascade.db.schema import Image, ReviewItem, Submission, utcnow


def issue_key(ctx: Context, tenant: str = "feedback-test") -> IssuedKey:
    with ctx.sessions() as db:
        key = create_key(db, tenant_name=tenant)
        db.commit()
        return key


def add_submissions(
    ctx: Context,
    *,
    s1: np.ndarray,
    s2: np.ndarray | None = None,
    label: np.ndarray | None = None,
    p: float = 0.02,
    audit: bool = True,
    tenant_id: int | None = None,
    created_at: datetime | None = None,
    decision: str | None = None,
    review_state: str = "done",
) -> list[str]:
    """Decided submissions with scores; audited ones get a done review item with ``label``."""
    tenant_id = (
        tenant_id
        if tenant_id is not None
        else issue_key(ctx, f"t-{uuid.uuid4().hex[:6]}").tenant_id
    )
    at = created_at or utcnow() - timedelta(hours=1)
    n = len(s1)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    shas = [hashlib.sha256(i.encode()).hexdigest() for i in ids]
    images = [
        {"sha256": h, "phash": 0, "size_bytes": 1, "width": 1, "height": 1, "format": "png",
         "blob_key": h} for h in shas
    ]  # fmt: skip
    subs = []
    for k in range(n):
        harmful = label is not None and label[k] == 1
        subs.append({
            "id": ids[k], "tenant_id": tenant_id, "image_sha256": shas[k], "state": "decided",
            "s1": float(s1[k]), "s2": None if s2 is None else float(s2[k]),
            "decision": decision or ("block" if harmful else "allow"), "decided_by": "stage1",
            "audit": audit, "audit_p": p if audit else 0.0, "created_at": at, "decided_at": at,
            "threshold_version": 0,
        })  # fmt: skip
    with ctx.sessions() as db:
        db.execute(insert(Image), images)
        db.execute(insert(Submission), subs)
        if audit and label is not None:
            items = [
                {"submission_id": ids[k], "reason": "audit", "state": review_state,
                 "final_label": "block" if label[k] == 1 else "allow", "created_at": at}
                for k in range(n)
            ]  # fmt: skip
            db.execute(insert(ReviewItem), items)
        db.commit()
    return ids
