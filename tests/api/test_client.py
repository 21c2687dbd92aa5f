"""The Python client against a real HTTP server thread (werkzeug) on the real app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from cascade import errors
from cascade.apikeys import IssuedKey
from cascade.client import CascadeClient, RemoteError, SubmissionStatus, TransportError, WaitTimeout
from cascade.context import Context
from cascade.db.schema import State, Submission, utcnow
from tests.api.conftest import issue_key
from tests.web import serve

pytestmark = pytest.mark.integration

MakeImage = Callable[..., bytes]


@pytest.fixture
def server_url(api_app: Flask) -> Iterator[str]:
    with serve(api_app) as url:
        yield url


@pytest.fixture
def remote(server_url: str, key: IssuedKey) -> Iterator[CascadeClient]:
    with CascadeClient(server_url, key.key, timeout=10, max_retries=0) as c:
        yield c


def _decide(ctx: Context, submission_id: str, decision: str) -> None:
    with ctx.sessions() as session:
        sub = session.get(Submission, submission_id)
        assert sub is not None
        sub.state, sub.decision, sub.decided_by = State.DECIDED, decision, "stage1"
        sub.decided_at = utcnow()
        session.commit()


def test_submit_get_and_wait(
    remote: CascadeClient, make_image: MakeImage, api_context: Context, tmp_path: Path
) -> None:
    img = make_image("JPEG")
    queued = remote.submit(img, idempotency_key="k1")
    assert queued.status_code == 202 and queued.state == "queued" and not queued.done
    replay = remote.submit(img, idempotency_key="k1")
    assert replay.status_code == 200 and replay.id == queued.id
    assert remote.get(queued.id) == SubmissionStatus(queued.id, "queued")
    _decide(api_context, queued.id, "allow")
    done = remote.wait(queued.id, timeout=5)
    assert done.done and done.decision == "allow" and done.decided_by == "stage1"
    assert done.data["scores"] == {"stage1": None, "stage2": None}
    path = tmp_path / "photo.png"
    path.write_bytes(make_image("PNG"))
    assert remote.submit(path).status_code == 202


def test_submit_many_returns_each_result(remote: CascadeClient, make_image: MakeImage) -> None:
    results = remote.submit_many([make_image(), b"not an image", make_image()], batch_size=2)
    assert isinstance(results[0], SubmissionStatus) and results[0].status_code == 202
    assert isinstance(results[1], errors.InvalidImage) and "raster" in results[1].message
    assert isinstance(results[2], SubmissionStatus)


def test_errors_map_to_the_same_hierarchy(
    remote: CascadeClient, server_url: str, make_image: MakeImage
) -> None:
    with pytest.raises(errors.InvalidImage, match="empty"):
        remote.submit(b"")
    with pytest.raises(errors.PayloadTooLarge):
        remote.submit(b"\x89PNG" + b"\0" * 400_000)
    with pytest.raises(errors.BadRequest, match="private"):
        remote.submit(make_image(), callback_url="http://169.254.169.254/")
    with pytest.raises(errors.NotFound):
        remote.get("no-such-id")
    with pytest.raises(errors.Unauthorized):
        CascadeClient(server_url, "csk_bad_key", max_retries=0).get("x")
    first = remote.submit(make_image(), idempotency_key="dup")
    assert first.status_code == 202
    with pytest.raises(errors.Conflict):
        remote.submit(make_image(), idempotency_key="dup")
    with pytest.raises(TransportError):
        CascadeClient("http://127.0.0.1:1", "csk_a_b", timeout=2).get("x")


def test_unmapped_status_keeps_status_and_code(remote: CascadeClient) -> None:
    with pytest.raises(RemoteError) as info:
        remote._request("DELETE", "/v1/images")
    assert info.value.status == 405 and info.value.code == "method_not_allowed"


def test_rate_limited_requests_are_retried_after_retry_after(
    server_url: str, api_context: Context, make_image: MakeImage
) -> None:
    issued = issue_key(api_context, "tiny", rate_limit=1)
    waits: list[float] = []
    remote = CascadeClient(server_url, issued.key, max_retries=2, sleep=waits.append)
    remote.submit(make_image())
    with pytest.raises(errors.TooManyRequests) as info:
        remote.submit(make_image())
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    assert len(waits) == 2 and all(1 <= w <= 60 for w in waits)


def test_wait_times_out_with_backoff(remote: CascadeClient, make_image: MakeImage) -> None:
    sub = remote.submit(make_image())
    now = [0.0]
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    remote.sleep = fake_sleep
    with pytest.raises(WaitTimeout, match="still queued"):
        remote.wait(sub.id, timeout=2.0, initial_interval=0.1, clock=lambda: now[0])
    assert waits[:4] == [0.1, 0.2, 0.4, 0.8]
    assert sum(waits) == pytest.approx(2.0)


def test_client_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        CascadeClient("ftp://x", "csk_a_b")
    with pytest.raises(ValueError, match="keys create"):
        CascadeClient("http://x", "")
