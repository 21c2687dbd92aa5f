"""The queue: order, leases that keep two moderators apart, expiry, race-free claims."""

from __future__ import annotations

import threading
from datetime import timedelta

from cascade.db.schema import utcnow
from cascade.review import claim_next, record_label, try_lease
from tests.review.factories import login, make_item, make_user


def _claim(ctx, user_id, now=None, audit_every=5):
    with ctx.sessions() as db:
        item = claim_next(
            db,
            user_id=user_id,
            lease_s=ctx.settings.review_lease_s,
            now=now,
            audit_every=audit_every,
        )
        db.commit()
        return item.id if item is not None else None


def test_escalations_come_oldest_first_before_audits(context):
    uid = make_user(context, "mia")
    audit = make_item(context, seed=1, reason="audit", age_s=500)
    newer = make_item(context, seed=2, age_s=10)
    older = make_item(context, seed=3, age_s=100)
    order = []
    for _ in range(3):
        item_id = _claim(context, uid, audit_every=0)
        order.append(item_id)
        with context.sessions() as db:
            record_label(db, item_id=item_id, user_id=uid, label="allow", settings=context.settings)
            db.commit()
    assert order == [older.item_id, newer.item_id, audit.item_id]


def test_every_fifth_item_is_an_audit_when_one_waits(context):
    uid = make_user(context, "mia")
    escalations = [make_item(context, seed=i, age_s=100 - i).item_id for i in range(6)]
    audit = make_item(context, seed=50, reason="audit", age_s=1000).item_id
    order = []
    for _ in range(6):
        item_id = _claim(context, uid)
        order.append(item_id)
        with context.sessions() as db:
            record_label(db, item_id=item_id, user_id=uid, label="skip", settings=context.settings)
            db.commit()
    assert order[:4] == escalations[:4]
    assert order[4] == audit
    assert order[5] == escalations[4]


def test_a_leased_item_goes_to_nobody_else(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    first = make_item(context, seed=1, age_s=20)
    second = make_item(context, seed=2, age_s=10)
    assert _claim(context, a) == first.item_id
    assert _claim(context, b) == second.item_id
    assert _claim(context, make_user(context, "c")) is None


def test_reloading_returns_the_item_already_held(context):
    a = make_user(context, "a")
    first = make_item(context, seed=1, age_s=20)
    make_item(context, seed=2, age_s=10)
    assert _claim(context, a) == first.item_id
    assert _claim(context, a) == first.item_id


def test_an_expired_lease_returns_the_item_to_the_queue(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    made = make_item(context)
    assert _claim(context, a) == made.item_id
    later = utcnow() + timedelta(seconds=context.settings.review_lease_s + 1)
    assert _claim(context, b, now=later) == made.item_id
    # the first holder lost it: their label is refused
    with context.sessions() as db:
        try:
            record_label(
                db, item_id=made.item_id, user_id=a, label="allow", settings=context.settings
            )
        except Exception as exc:
            assert type(exc).__name__ == "Conflict"
        else:
            raise AssertionError("a label on a lost lease was accepted")


def test_conditional_lease_has_one_winner(context):
    a, b = make_user(context, "a"), make_user(context, "b")
    made = make_item(context)
    now = utcnow()
    with context.sessions() as db:
        assert try_lease(db, item_id=made.item_id, user_id=a, lease_s=60, now=now)
        db.commit()
    with context.sessions() as db:
        assert not try_lease(db, item_id=made.item_id, user_id=b, lease_s=60, now=now)


def test_concurrent_claims_never_share_an_item(context):
    users = [make_user(context, f"m{i}") for i in range(6)]
    for i in range(4):
        make_item(context, seed=i, age_s=10 - i)
    results: dict[int, int | None] = {}
    barrier = threading.Barrier(len(users))

    def worker(uid: int) -> None:
        barrier.wait()
        results[uid] = _claim(context, uid)

    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [r for r in results.values() if r is not None]
    assert len(results) == len(users)
    assert len(won) == 4
    assert len(set(won)) == 4


def test_second_browser_gets_another_item_or_none(app, context):
    make_item(context, seed=1, age_s=20)
    make_item(context, seed=2, age_s=10)
    make_user(context, "a")
    make_user(context, "b")
    make_user(context, "c")
    clients = [app.test_client() for _ in range(3)]
    targets = []
    for client, name in zip(clients, "abc", strict=True):
        token = login(client, name)
        response = client.post("/review/claim", data={"csrf_token": token})
        targets.append(response.headers["Location"])
    assert targets[0] != targets[1]
    assert all("/review/item/" in t for t in targets[:2])
    assert targets[2] == "/review/"
    # b cannot open a's item
    page = clients[1].get(targets[0])
    assert page.status_code == 302
