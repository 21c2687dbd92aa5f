"""Labels: decisions for escalations, findings for audits, double labelling, rulings, undo."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cascade.db.schema import (
    CostLedger,
    Label,
    LabelledError,
    ReviewItem,
    ReviewState,
    State,
    Submission,
    utcnow,
)
from cascade.errors import Conflict, Forbidden
from cascade.review import claim_next, record_label, resolve_conflict, undo_last
from tests.review.factories import make_item, make_user


def _take(ctx, uid):
    with ctx.sessions() as db:
        item = claim_next(db, user_id=uid, lease_s=ctx.settings.review_lease_s)
        db.commit()
        return item.id if item else None


def _label(ctx, uid, item_id, label, **kw):
    with ctx.sessions() as db:
        out = record_label(
            db, item_id=item_id, user_id=uid, label=label, settings=ctx.settings, **kw
        )
        db.commit()
        return out


def _sub(ctx, sid) -> Submission:
    with ctx.sessions() as db:
        return db.get(Submission, sid)


def _human_labels_in_ledger(ctx) -> int:
    with ctx.sessions() as db:
        return int(
            db.scalar(select(func.sum(CostLedger.images)).where(CostLedger.bucket == "human")) or 0
        )


def test_escalation_label_is_the_decision(context):
    uid = make_user(context, "mia")
    made = make_item(context, callback_url="https://example.test/cb")
    assert _take(context, uid) == made.item_id
    out = _label(
        context, uid, made.item_id, "block", category="violence", note="knife", seconds_spent=3.5
    )
    assert out.state == ReviewState.DONE
    assert out.callback_due
    sub = _sub(context, made.submission_id)
    assert (sub.state, sub.decision, sub.decided_by) == (State.DECIDED, "block", "human")
    assert _human_labels_in_ledger(context) == 1
    with context.sessions() as db:
        label = db.scalars(select(Label)).one()
    assert (label.category, label.note, label.seconds_spent) == ("violence", "knife", 3.5)


def test_no_callback_without_callback_url(context):
    uid = make_user(context, "mia")
    made = make_item(context)
    _take(context, uid)
    assert not _label(context, uid, made.item_id, "allow").callback_due


def test_label_without_lease_is_refused(context):
    uid = make_user(context, "mia")
    made = make_item(context)
    with pytest.raises(Conflict):
        _label(context, uid, made.item_id, "allow")


def _rule(ctx, admin, item_id, label):
    with ctx.sessions() as db:
        out = resolve_conflict(
            db, item_id=item_id, admin_id=admin, label=label, settings=ctx.settings
        )
        db.commit()
        return out


def _errors(ctx) -> int:
    with ctx.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(LabelledError)) or 0)


def test_audit_label_contradicting_the_automatic_decision_is_an_error_once_an_admin_confirms(
    context,
):
    uid, boss = make_user(context, "mia"), make_user(context, "boss", role="admin")
    made = make_item(context, reason="audit", auto="allow", s1=0.02, s2=0.1)
    assert _take(context, uid) == made.item_id
    assert _label(context, uid, made.item_id, "block").state == ReviewState.CONFLICT
    assert _errors(context) == 0  # not yet: one moderator's word against the cascade's
    assert _sub(context, made.submission_id).decision == "allow"
    assert _rule(context, boss, made.item_id, "block").state == ReviewState.DONE
    with context.sessions() as db:
        error = db.scalars(select(LabelledError)).one()
    assert (error.submission_id, error.kind, error.source) == (made.submission_id, "miss", "audit")
    sub = _sub(context, made.submission_id)
    assert (sub.decision, sub.auto_decision, sub.decided_by) == ("block", "allow", "human")


def test_an_admin_who_overrules_the_moderators_keeps_the_automatic_decision(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    boss = make_user(context, "boss", role="admin")
    made = make_item(context, reason="audit", auto="allow", labels_required=2)
    for uid in (a, b):
        _take(context, uid)
        _label(context, uid, made.item_id, "block")
    assert _rule(context, boss, made.item_id, "allow").state == ReviewState.DONE
    assert _errors(context) == 0
    with context.sessions() as db:
        item = db.get(ReviewItem, made.item_id)
        assert item is not None and item.final_label == "allow"
    assert _sub(context, made.submission_id).decision == "allow"


def _split_audit(ctx):
    a, b = make_user(ctx, "a"), make_user(ctx, "b")
    made = make_item(ctx, reason="audit", auto="allow", labels_required=2)
    for uid, label in ((a, "allow"), (b, "block")):
        _take(ctx, uid)
        _label(ctx, uid, made.item_id, label)
    return made


def test_one_admin_against_the_cascade_over_a_split_waits_for_a_second_admin(context):
    made = _split_audit(context)
    boss, other = make_user(context, "boss", role="admin"), make_user(context, "o", role="admin")
    assert _rule(context, boss, made.item_id, "block").state == ReviewState.CONFLICT
    assert _errors(context) == 0  # two votes against one: not yet an error
    assert _sub(context, made.submission_id).decision == "allow"
    with pytest.raises(Forbidden):
        _rule(context, boss, made.item_id, "block")  # not the same admin twice
    out = _rule(context, other, made.item_id, "block")
    assert (out.state, _errors(context)) == (ReviewState.DONE, 1)
    sub = _sub(context, made.submission_id)
    assert (sub.decision, sub.auto_decision, sub.decided_by) == ("block", "allow", "human")
    assert _human_labels_in_ledger(context) == 4


def test_a_second_admin_who_disagrees_keeps_the_automatic_decision(context):
    made = _split_audit(context)
    boss, other = make_user(context, "boss", role="admin"), make_user(context, "o", role="admin")
    _rule(context, boss, made.item_id, "block")
    assert _rule(context, other, made.item_id, "allow").state == ReviewState.DONE
    assert _errors(context) == 0
    with context.sessions() as db:
        assert db.get(ReviewItem, made.item_id).final_label == "allow"
    assert _sub(context, made.submission_id).decision == "allow"


def test_a_ruling_for_the_cascade_over_a_split_is_final_at_once(context):
    made = _split_audit(context)
    boss = make_user(context, "boss", role="admin")
    assert _rule(context, boss, made.item_id, "allow").state == ReviewState.DONE
    assert _errors(context) == 0


def test_an_admin_takes_back_a_first_ruling_and_the_item_stays_a_conflict(context):
    made = _split_audit(context)
    boss, other = make_user(context, "boss", role="admin"), make_user(context, "o", role="admin")
    _rule(context, boss, made.item_id, "block")
    with context.sessions() as db:
        out = undo_last(db, user_id=boss, settings=context.settings)
        db.commit()
    assert out.state == ReviewState.CONFLICT
    assert _human_labels_in_ledger(context) == 2
    assert _rule(context, boss, made.item_id, "allow").state == ReviewState.DONE
    with pytest.raises(Conflict):
        _rule(context, other, made.item_id, "block")


def test_a_team_of_one_admin_may_let_a_single_ruling_decide(context):
    context.settings = context.settings.model_copy(update={"audit_dispute_margin": 1})
    made = _split_audit(context)
    boss = make_user(context, "boss", role="admin")
    assert _rule(context, boss, made.item_id, "block").state == ReviewState.DONE
    assert _errors(context) == 1


def test_audit_label_agreeing_changes_nothing(context):
    uid = make_user(context, "mia")
    made = make_item(context, reason="audit", auto="block")
    _take(context, uid)
    _label(context, uid, made.item_id, "block")
    with context.sessions() as db:
        assert db.scalar(select(func.count()).select_from(LabelledError)) == 0
    sub = _sub(context, made.submission_id)
    assert (sub.decision, sub.decided_by) == ("block", "stage2")


def test_double_labelling_needs_two_people_and_agreement_finalises(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    made = make_item(context, labels_required=2)
    _take(context, a)
    assert _label(context, a, made.item_id, "allow").state == ReviewState.PENDING
    assert _sub(context, made.submission_id).state == State.REVIEW
    assert _take(context, a) is None  # the same person never gets it twice
    assert _take(context, b) == made.item_id
    assert _label(context, b, made.item_id, "allow").state == ReviewState.DONE
    assert _sub(context, made.submission_id).decision == "allow"


def test_disagreement_goes_to_an_admin(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    boss = make_user(context, "boss", role="admin")
    made = make_item(context, labels_required=2)
    _take(context, a)
    _label(context, a, made.item_id, "allow")
    _take(context, b)
    assert _label(context, b, made.item_id, "block").state == ReviewState.CONFLICT
    assert _sub(context, made.submission_id).state == State.REVIEW
    with context.sessions() as db, pytest.raises(Forbidden):
        resolve_conflict(
            db, item_id=made.item_id, admin_id=a, label="block", settings=context.settings
        )
    with context.sessions() as db:
        out = resolve_conflict(
            db, item_id=made.item_id, admin_id=boss, label="block", settings=context.settings
        )
        db.commit()
    assert out.state == ReviewState.DONE
    assert _sub(context, made.submission_id).decision == "block"
    with context.sessions() as db, pytest.raises(Conflict):
        resolve_conflict(
            db, item_id=made.item_id, admin_id=boss, label="allow", settings=context.settings
        )


def test_skip_passes_the_item_to_someone_else(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    made = make_item(context)
    _take(context, a)
    assert _label(context, a, made.item_id, "skip").state == ReviewState.PENDING
    assert _take(context, a) is None
    assert _take(context, b) == made.item_id
    assert _human_labels_in_ledger(context) == 0


def test_undo_reopens_an_escalation_for_a_new_label(context):
    uid = make_user(context, "mia")
    made = make_item(context)
    _take(context, uid)
    _label(context, uid, made.item_id, "allow")
    with context.sessions() as db:
        out = undo_last(db, user_id=uid, settings=context.settings)
        db.commit()
    assert out.item_id == made.item_id
    with context.sessions() as db:
        item = db.get(ReviewItem, made.item_id)
        assert (item.state, item.lease_owner, item.final_label) == (ReviewState.PENDING, uid, None)
        assert db.scalar(select(func.count()).select_from(Label)) == 0
    assert _human_labels_in_ledger(context) == 0
    assert _take(context, uid) == made.item_id
    _label(context, uid, made.item_id, "block")
    assert _sub(context, made.submission_id).decision == "block"


def test_undo_of_an_audit_finding_restores_the_automatic_decision(context):
    uid, boss = make_user(context, "mia"), make_user(context, "boss", role="admin")
    made = make_item(context, reason="audit", auto="allow")
    _take(context, uid)
    _label(context, uid, made.item_id, "block")
    _rule(context, boss, made.item_id, "block")
    assert _errors(context) == 1
    with context.sessions() as db:
        undo_last(db, user_id=boss, settings=context.settings)
        db.commit()
        assert db.scalar(select(func.count()).select_from(LabelledError)) == 0
        errors = db.scalar(select(func.sum(CostLedger.images)).where(CostLedger.bucket == "error"))
        assert errors == 0
    sub = _sub(context, made.submission_id)
    assert (sub.decision, sub.auto_decision) == ("allow", "allow")


def test_undo_is_refused_after_the_window_or_once_someone_else_labelled(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    made = make_item(context, labels_required=2)
    _take(context, a)
    _label(context, a, made.item_id, "allow")
    later = utcnow() + timedelta(seconds=61)
    with context.sessions() as db, pytest.raises(Conflict, match="nothing to undo"):
        undo_last(db, user_id=a, settings=context.settings, now=later)
    _take(context, b)
    with context.sessions() as db, pytest.raises(Conflict, match="holds this item"):
        undo_last(db, user_id=a, settings=context.settings)
    _label(context, b, made.item_id, "allow")
    with context.sessions() as db, pytest.raises(Conflict, match="after you"):
        undo_last(db, user_id=a, settings=context.settings)


def test_label_and_next_item_through_the_web(context, client):
    from tests.review.factories import login

    make_user(context, "mia")
    first = make_item(context, seed=1, age_s=20)
    second = make_item(context, seed=2, age_s=10)
    token = login(client, "mia")
    claim = client.post("/review/claim", data={"csrf_token": token})
    assert claim.headers["Location"] == f"/review/item/{first.item_id}"
    page = client.get(claim.headers["Location"])
    assert b"Screener s1" in page.data
    response = client.post(
        f"/review/item/{first.item_id}/label",
        json={"label": "block", "seconds": 2.0},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert response.get_json() == {"state": "done", "next": f"/review/item/{second.item_id}"}
    undo = client.post(
        "/review/undo", headers={"X-CSRF-Token": token, "Accept": "application/json"}
    )
    assert undo.get_json() == {"next": f"/review/item/{first.item_id}"}
    bad = client.post(
        f"/review/item/{first.item_id}/label",
        json={"label": "maybe"},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert bad.status_code == 400


def test_audit_items_hide_scores_until_labelled(context, client):
    from tests.review.factories import login

    make_user(context, "mia")
    audit = make_item(context, seed=1, reason="audit", auto="block", s1=0.987, s2=0.876)
    token = login(client, "mia")
    page = client.get(client.post("/review/claim", data={"csrf_token": token}).headers["Location"])
    assert b"0.987" not in page.data and b"0.876" not in page.data
    assert b"hidden for this item" in page.data
    make_item(context, seed=2)
    nxt = client.post(
        f"/review/item/{audit.item_id}/label",
        json={"label": "allow"},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    ).get_json()["next"]
    page = client.get(nxt)
    assert b"Your last label" in page.data and b"0.987" in page.data
