"""``POST /v1/images`` (single and batch) and ``GET /v1/images/<id>``.

Status codes: 202 queued; 200 answered at once (cache hit) or an Idempotency-Key replay;
207 for the batch form, whose body lists each image's own status (202/200 or its error).
A batch item's idempotency key is ``<Idempotency-Key>:<index>``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from cascade.context import Context
from cascade.db.schema import State, Submission
from cascade.errors import (
    CascadeError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from cascade.intake import Accepted, accept, new_submission_id
from cascade.metrics import CACHE_HITS, REJECTED, SUBMISSIONS
from cascade.netguard import check_callback_url
from services.api import bp
from services.api.admission import admission
from services.api.auth import require_api_key, require_api_key_for_upload
from services.api.bodies import UploadRequest, is_raw_upload, read_upload_request
from services.web import context, db, dispatcher, rejected_response

log = logging.getLogger(__name__)

_PATHS = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@~+-]+){2,}")
ENQUEUE_RETRY_AFTER_S = 2
_TIMINGS = ("created_at", "stage1_at", "stage2_at", "decided_at")


def summary_view(sub: Submission) -> dict[str, Any]:
    """What a submitter sees right after an upload."""
    body: dict[str, Any] = {
        "id": sub.id,
        "state": sub.state,
        "links": {"self": f"{bp.url_prefix}/images/{sub.id}"},
    }
    if sub.decision is not None:
        body["decision"] = sub.decision
        body["decided_by"] = sub.decided_by
    return body


def detail_view(sub: Submission) -> dict[str, Any]:
    """Everything a submitter may know about its submission; no storage keys or paths."""
    times = {name: getattr(sub, name) for name in _TIMINGS}
    timings: dict[str, Any] = {k: v.isoformat() if v else None for k, v in times.items()}
    if sub.decided_at and sub.created_at:
        timings["seconds_to_decision"] = (sub.decided_at - sub.created_at).total_seconds()
    return summary_view(sub) | {
        "decision": sub.decision,
        "decided_by": sub.decided_by,
        "scores": {"stage1": sub.s1, "stage2": sub.s2},
        "threshold_version": sub.threshold_version,
        "timings": timings,
        "error": _PATHS.sub("<path>", sub.error)[:500] if sub.error else None,
    }


def enqueue(submission_ids: list[str]) -> None:
    """Hand committed submissions to stage 1 (one pipelined send), or withdraw them and raise
    503.

    A 2xx promises the image will be decided. When the broker cannot take the messages (Redis
    restarting, say), the submissions are deleted again and the client told to retry, rather
    than left ``queued`` until the slow ``cascade.maintenance.requeue_stale`` sweep finds them.
    Should the delete fail too (database gone as well), the rows stay and that sweep decides
    them (a message that did go out is harmless twice: every step is idempotent).
    """
    if not submission_ids:
        return
    try:
        dispatcher().stage1(*submission_ids)
        admission().track(submission_ids)  # in the backlog until stage 1 has written them
        return
    except Exception as exc:
        log.warning("could not enqueue %d submissions: %s", len(submission_ids),
                    type(exc).__name__)  # fmt: skip
    try:
        session = db()
        session.execute(
            delete(Submission).where(
                Submission.id.in_(submission_ids), Submission.state == State.QUEUED
            )
        )
        session.commit()
    except Exception:
        log.exception("could not withdraw submissions %s; the stale sweep will requeue them",
                      submission_ids)  # fmt: skip
    raise ServiceUnavailable(
        "the moderation queue is unreachable for a moment; the image was not accepted, retry",
        retry_after=ENQUEUE_RETRY_AFTER_S,
    )


Outcome = Accepted | CascadeError  # one item's answer from intake


def accept_all(ctx: Context, req: UploadRequest, ids: Sequence[str]) -> list[Outcome]:
    """Every item of the request through intake, in one transaction (one commit per request);
    a new submission of item ``i`` gets id ``ids[i]`` (the id its backlog place was reserved
    under).

    A refused item (a 4xx) has written nothing, so it rides along without harm. Two requests
    with the same Idempotency-Key (or the same new image) can both pass the look-ups and then
    collide on a unique constraint; the loser rolls back and runs once more, and then finds the
    winner's rows, so it answers as a replay instead of a 500.
    """
    session = db()
    for attempt in (1, 2):
        try:
            outcomes = [_accept_item(ctx, req, i, ids[i]) for i in range(len(req.items))]
            session.commit()
            return outcomes
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise Conflict("a concurrent request collided with this one; retry") from None
    raise AssertionError("unreachable")


def _accept_item(ctx: Context, req: UploadRequest, index: int, submission_id: str) -> Outcome:
    item = req.items[index]
    if item.refused is not None:
        return item.refused
    try:
        return accept(
            ctx,
            db(),
            tenant_id=g.tenant_id,
            data=item.data,
            idempotency_key=req.item_key(index),
            callback_url=req.callback_url,
            submission_id=submission_id,
        )
    except CascadeError as exc:  # raised before intake wrote anything for this item
        return exc


def dispatch_accepted(outcomes: list[Outcome]) -> list[Outcome]:
    """After the commit: stage 1 for what was queued, callbacks of answers from the cache.
    Queued items the broker would not take become 503s (their rows withdrawn)."""
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    # An audited cache answer is scored by every stage all the same.
    queued = [
        a.submission.id for a in accepted if a.created and (not a.cached or a.submission.audit)
    ]
    try:
        enqueue(queued)
    except ServiceUnavailable as exc:
        withdrawn = set(queued)
        outcomes = [
            exc if isinstance(o, Accepted) and o.submission.id in withdrawn else o for o in outcomes
        ]
    due = [a.submission.id for a in accepted if a.callback_due]
    if due:  # answered from the cache: its callback goes out now, not at a sweep
        dispatcher().follow_up(callbacks=due)
    for o in outcomes:
        if isinstance(o, Accepted) and o.created:
            SUBMISSIONS.labels(tenant=str(g.tenant_id)).inc()
        if isinstance(o, Accepted) and o.cached:
            CACHE_HITS.labels(kind="api").inc()
    return outcomes


def answer(outcome: Accepted) -> tuple[dict[str, Any], int]:
    """(body, status) of an accepted item: 202 queued, 200 answered at once or replayed."""
    status = 202 if outcome.created and not outcome.cached else 200
    return summary_view(outcome.submission), status


def _batch_item(req: UploadRequest, index: int, outcome: Outcome) -> dict[str, Any]:
    head: dict[str, Any] = {"index": index, "filename": req.items[index].filename}
    if isinstance(outcome, CascadeError):
        REJECTED.labels(code=outcome.code).inc()
        return head | {"status": outcome.status,
                       "error": {"code": outcome.code, "message": outcome.message}}  # fmt: skip
    body, status = answer(outcome)
    return head | {"status": status} | body


@bp.post("/images")
@require_api_key_for_upload
def submit_images() -> tuple[Response, int]:
    """Admission is one Redis round trip for a raw body (charge and reserve its one place before
    the body is read); two for multipart, whose count is known only once it is parsed (charge
    one and refuse a full backlog at once, then charge the rest and reserve them all)."""
    gate, key = admission(), {"key_id": g.api_key_id, "limit": g.rate_limit_per_minute}
    if is_raw_upload():
        ids = [new_submission_id()]
        with gate.reserve(ids, cost=1, **key):  # atomic across API processes: no overshoot
            return _submit(read_upload_request(context().settings), ids)
    gate.check_queue(cost=1, **key)
    req = read_upload_request(context().settings)
    ids = [new_submission_id() for _ in req.items]
    with gate.reserve(ids, cost=len(ids) - 1, **key):
        return _submit(req, ids)


def _submit(req: UploadRequest, ids: list[str]) -> tuple[Response, int]:
    ctx = context()
    if req.callback_url:  # once for the whole request, before any image is stored
        check_callback_url(req.callback_url, allow_private=ctx.settings.callback_allow_private)
    outcomes = dispatch_accepted(accept_all(ctx, req, ids))
    if req.batch:
        items = [_batch_item(req, i, o) for i, o in enumerate(outcomes)]
        return jsonify({"items": items}), 207
    (outcome,) = outcomes
    if isinstance(outcome, CascadeError):
        raise outcome
    body, status = answer(outcome)
    response = jsonify(body)
    if not outcome.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response, status


@bp.get("/images/<submission_id>")
@require_api_key
def get_image(submission_id: str) -> Response:
    sub = None
    if len(submission_id) <= 36:
        sub = (
            db()
            .scalars(
                select(Submission).where(
                    Submission.id == submission_id, Submission.tenant_id == g.tenant_id
                )
            )
            .first()
        )
    if sub is None:  # another tenant's id reads exactly like a missing one
        raise NotFound(f"no submission {submission_id[:40]!r} for this API key's tenant")
    return jsonify(detail_view(sub))


@bp.errorhandler(CascadeError)
def _counted_error(exc: CascadeError) -> Response:
    return rejected_response(exc)


@bp.errorhandler(RequestEntityTooLarge)
def _body_too_large(exc: RequestEntityTooLarge) -> Response:
    ctx = context()
    limit = request.max_content_length
    length = request.content_length
    if length is not None and limit is not None and length > limit:
        message = (
            f"the request body is {length} bytes; the limit is {limit} bytes per request "
            f"and {ctx.settings.max_upload_bytes} bytes per image"
        )
    else:
        message = "a form field or the number of multipart parts is over the server's limits"
    return rejected_response(PayloadTooLarge(message))
