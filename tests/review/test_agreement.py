"""Cohen's kappa on known inputs, the pairs it is computed from, and the pages showing it."""

from __future__ import annotations

import pytest

from cascade.db.schema import utcnow
from cascade.review import claim_next, cohens_kappa, labels_required_for, record_label
from services.review.stats import label_pairs, moderator_stats
from tests.review.factories import login, make_item, make_user


def test_kappa_textbook_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 → p_o 0.7, p_e 0.5, κ 0.4
    pairs = (
        [("block", "block")] * 20
        + [("block", "allow")] * 5
        + [("allow", "block")] * 10
        + [("allow", "allow")] * 15
    )
    assert cohens_kappa(pairs) == pytest.approx(0.4)


def test_kappa_bounds_and_undefined_cases():
    assert cohens_kappa([("allow", "allow"), ("block", "block")]) == pytest.approx(1.0)
    assert cohens_kappa([("allow", "block"), ("block", "allow")]) == pytest.approx(-1.0)
    assert cohens_kappa([]) is None
    assert cohens_kappa([("allow", "allow")] * 3) is None  # one label only: chance agreement 1


def test_labels_required_follows_the_double_label_rate():
    assert labels_required_for(0.05, 0.1) == 2
    assert labels_required_for(0.1, 0.1) == 1
    assert labels_required_for(0.0, 0.0) == 1


def _double(ctx, a, b, la, lb, seed):
    made = make_item(ctx, seed=seed, labels_required=2)
    for uid, label in ((a, la), (b, lb)):
        with ctx.sessions() as db:
            item = claim_next(db, user_id=uid, lease_s=60)
            assert item is not None and item.id == made.item_id
            record_label(
                db,
                item_id=item.id,
                user_id=uid,
                label=label,
                settings=ctx.settings,
                seconds_spent=6.0,
            )
            db.commit()
    return made


def test_pairs_kappa_and_pages(context, app, client):
    a, b = make_user(context, "ann"), make_user(context, "ben")
    make_user(context, "boss", role="admin")
    votes = [("allow", "allow"), ("block", "block"), ("allow", "block"), ("block", "block")]
    for seed, (la, lb) in enumerate(votes):
        _double(context, a, b, la, lb, seed)
    with context.sessions() as db:
        pairs = label_pairs(db)
        stats = moderator_stats(db, a, utcnow())
    assert [(p.label_a, p.label_b) for p in pairs] == votes
    expected = cohens_kappa(votes)
    assert expected == pytest.approx(0.5)
    assert stats.labels == 4
    assert stats.agreement_rate == pytest.approx(0.75)
    assert stats.items_per_hour == pytest.approx(600.0)

    login(client, "boss")
    page = client.get("/review/admin")
    assert page.status_code == 200
    assert b'<strong id="kappa">0.500</strong>' in page.data
    assert b"Conflicts (1)" in page.data

    moderator = app.test_client()
    login(moderator, "ann")
    mine = moderator.get("/review/stats")
    assert b'<dd id="s-rate">600</dd>' in mine.data
    assert b"75%" in mine.data


def test_admin_rules_on_a_conflict_through_the_page(context, client):
    a, b = make_user(context, "ann"), make_user(context, "ben")
    make_user(context, "boss", role="admin")
    made = _double(context, a, b, "allow", "block", 1)
    token = login(client, "boss")
    response = client.post(
        f"/review/admin/conflict/{made.item_id}", data={"label": "block", "csrf_token": token}
    )
    assert response.status_code == 302
    page = client.get("/review/admin")
    assert b"Conflicts (0)" in page.data


def test_a_first_ruling_against_an_audited_decision_asks_the_page_for_a_second(
    context, app, client
):
    a, b = make_user(context, "ann"), make_user(context, "ben")
    make_user(context, "boss", role="admin"), make_user(context, "chief", role="admin")
    made = make_item(context, reason="audit", auto="allow", labels_required=2)
    for uid, label in ((a, "allow"), (b, "block")):
        with context.sessions() as db:
            item = claim_next(db, user_id=uid, lease_s=60)
            assert item is not None and item.id == made.item_id
            record_label(db, item_id=item.id, user_id=uid, label=label, settings=context.settings)
            db.commit()
    token = login(client, "boss")
    client.post(
        f"/review/admin/conflict/{made.item_id}", data={"label": "block", "csrf_token": token}
    )
    page = client.get("/review/admin")
    assert b"a second admin confirms it" in page.data  # the flash
    assert b"Conflicts (1)" in page.data
    assert b"You labelled this item" in page.data
    chief = app.test_client()
    token = login(chief, "chief")
    page = chief.get("/review/admin")
    assert b"a second admin confirms the error or keeps the automatic decision" in page.data
    chief.post(
        f"/review/admin/conflict/{made.item_id}", data={"label": "block", "csrf_token": token}
    )
    assert b"Conflicts (0)" in chief.get("/review/admin").data
