"""The review UI in a real headless Chromium: keyboard-only labelling, blur, leases, CSRF,
images. Serves the app on a real socket over a temporary database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from cascade.db.schema import Label, ReviewItem, ReviewState, Submission
from tests.review.factories import PASSWORD, make_item, make_user
from tests.web import ARTIFACTS, chromium, serve

pytestmark = pytest.mark.browser


@pytest.fixture
def server(app) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with chromium() as b:
        yield b


def _login(browser, base: str, name: str):  # type: ignore[no-untyped-def]
    """A fresh browser context logged in as ``name`` by keyboard only; returns its page."""
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.goto(f"{base}/review/login")
    # Type only once the autofocused field has the focus: keys sent earlier go nowhere.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.wait_for_function("document.activeElement && document.activeElement.name === 'password'")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/review/"
    # The queue page's autofocused "Start labelling" button (when there is work) takes the
    # focus some time after the navigation: an Enter pressed before that goes nowhere.
    page.wait_for_function(
        "() => { const b = document.querySelector('[autofocus]');"
        " return !b || document.activeElement === b; }"
    )
    return page


def _done(ctx) -> int:  # type: ignore[no-untyped-def]
    with ctx.sessions() as db:
        return int(db.scalar(select(func.count()).where(ReviewItem.state == ReviewState.DONE)) or 0)


def test_clear_a_queue_of_50_by_keyboard(context, server, browser):
    make_user(context, "mia")
    for i in range(50):
        reason = "audit" if i % 10 == 9 else "escalation"
        make_item(context, seed=i, reason=reason, s1=0.3 + i / 200, s2=0.4, age_s=600 - i)
    page = _login(browser, server, "mia")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"))

    started = time.perf_counter()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # the focused "Start labelling" button
    labelled = 0
    while "/review/item/" in page.url:
        if labelled == 0:
            page.keyboard.press("3")
            page.screenshot(path=str(ARTIFACTS / "review-item.png"))
        with page.expect_navigation():
            page.keyboard.press("b" if labelled % 3 == 0 else "a")
        labelled += 1
        assert labelled <= 50, "the queue handed out more items than it holds"
    elapsed = time.perf_counter() - started
    assert page.url == f"{server}/review/"
    assert "queue is empty" in page.content()
    assert labelled == 50
    with context.sessions() as db:
        disputed = db.execute(
            select(ReviewItem.reason, Submission.auto_decision, Label.label)
            .join(Submission, Submission.id == ReviewItem.submission_id)
            .join(Label, Label.review_item_id == ReviewItem.id)
            .where(ReviewItem.state == ReviewState.CONFLICT)
        ).all()
    # An audit label against the automatic decision waits for an admin; every other item is done.
    assert all(r == "audit" and auto != label for r, auto, label in disputed)
    assert _done(context) + len(disputed) == 50
    with context.sessions() as db:
        categories = db.scalars(select(Label.category).where(Label.category.is_not(None))).all()
    assert categories == ["hate"]
    print(f"\nkeyboard-only run: 50 labels in {elapsed:.1f} s = {50 / elapsed * 60:.0f} labels/min")


def _settles_on(page, part: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether the image's computed filter comes to contain ``part`` (after the transition)."""
    page.wait_for_function(
        "part => getComputedStyle(document.getElementById('photo')).filter.includes(part)",
        arg=part,
        timeout=5000,
    )
    return True


def test_blurred_until_revealed_grayscale_and_undo(context, server, browser):
    make_user(context, "mia")
    first = make_item(context, seed=1, age_s=20)
    make_item(context, seed=2, age_s=10)
    page = _login(browser, server, "mia")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/review/item/{first.item_id}")
    page.wait_for_function("document.getElementById('photo').complete")
    assert page.eval_on_selector("#photo", "el => el.naturalWidth") == 240
    assert "blur(28px)" in page.eval_on_selector("#photo", "el => getComputedStyle(el).filter")
    page.keyboard.press("r")
    assert _settles_on(page, "blur(0px)")
    page.keyboard.press("g")
    assert _settles_on(page, "grayscale(1)")
    page.click("#stage")
    assert _settles_on(page, "blur(28px) grayscale(1)")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert not page.url.endswith(f"/review/item/{first.item_id}")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert page.url.endswith(f"/review/item/{first.item_id}")
    assert _done(context) == 0


def test_lease_conflict_between_two_browsers(context, server, browser):
    make_user(context, "ann")
    make_user(context, "ben")
    made = make_item(context)
    ann = _login(browser, server, "ann")
    ben = _login(browser, server, "ben")
    with ann.expect_navigation():
        ann.keyboard.press("Enter")
    assert ann.url.endswith(f"/review/item/{made.item_id}")
    with ben.expect_navigation():
        ben.keyboard.press("Enter")
    assert ben.url == f"{server}/review/"
    assert "queue is empty" in ben.content()
    ben.goto(ann.url)
    assert ben.url == f"{server}/review/"
    assert "no longer yours" in ben.content()
    with ann.expect_navigation():
        ann.keyboard.press("a")
    assert _done(context) == 1


def test_csrf_and_anonymous_images_are_refused(context, server, browser):
    make_user(context, "mia")
    make_item(context)
    page = _login(browser, server, "mia")
    statuses = page.evaluate(
        """async () => {
            const missing = await fetch('/review/claim', {method: 'POST'});
            const wrong = await fetch('/review/claim', {method: 'POST',
                headers: {'X-CSRF-Token': 'forged'}});
            return [missing.status, wrong.status];
        }"""
    )
    assert statuses == [400, 403]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    src = page.get_attribute("#photo", "src")
    assert src and re.match(r"^/review/image/", src)
    stranger = browser.new_context().new_page()
    response = stranger.goto(server + src)
    assert response is not None and response.status == 401
    assert page.request.get(server + src).status == 200
