"""Who may go where, and what cannot leave the blob store. (Tenant isolation, ops' read-only
role, CSRF and SSRF are tested next to their views; these are the gaps between them.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cascade.blobs import BlobStore
from cascade.context import Context
from tests.integration.conftest import png_bytes
from tests.review.factories import login, make_item, make_user

SESSION_PAGES = [
    "/review/",
    "/review/admin",
    "/review/stats",
    "/dashboard/",
    "/dashboard/api/cost",
    "/v1/thresholds",
]


@pytest.mark.parametrize("role", ["moderator", "ops", "admin"])
def test_a_review_session_cannot_use_the_upload_api(
    context: Context, client: FlaskClient, role: str
) -> None:
    made = make_item(context)
    make_user(context, f"user-{role}", role=role)
    token = login(client, f"user-{role}")
    headers = {"X-CSRF-Token": token, "Content-Type": "image/png"}
    upload = client.post("/v1/images", data=png_bytes(1), headers=headers)
    assert upload.status_code == 401, upload.get_json()
    read = client.get(f"/v1/images/{made.submission_id}")
    assert read.status_code == 401
    assert "decision" not in read.get_data(as_text=True)


def test_an_api_key_cannot_open_the_review_ui_or_the_dashboard(
    client: FlaskClient, api_key: str
) -> None:
    for header in ({"Authorization": f"Bearer {api_key}"}, {"X-API-Key": api_key}):
        for path in SESSION_PAGES:
            response = client.get(path, headers=header | {"Accept": "application/json"})
            assert response.status_code == 401, (path, response.status_code)
        activate = client.post("/v1/thresholds/1/activate", headers=header, json={})
        assert activate.status_code == 401


TRAVERSALS = [
    "../../../etc/passwd",
    "/etc/passwd",
    "aa/bb/../../../../etc/passwd",
    "..",
    "",
    "ab/cd/" + "a" * 64,  # a digest in the wrong folder
    "AB/CD/" + "AB" * 32,  # upper case
    "ab/cd/ab" + "0" * 62 + "/../../x",
    "ab/cd/ab" + "0" * 62 + "\x00.png",
    "ab%2F..%2F..%2Fetc%2Fpasswd",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("key", TRAVERSALS)
def test_blob_keys_cannot_escape_the_store(tmp_path: Path, key: str) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    (tmp_path / "secret").write_bytes(b"outside the store")
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.exists(key)


def test_blob_keys_are_derived_from_content_only(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    sha, key = store.put(b"bytes")
    assert store.get(key) == b"bytes"
    stored = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert stored == [tmp_path / "blobs" / key]
    for bad in ("../" + sha, sha.upper(), sha[:-1], sha + "0"):
        with pytest.raises(ValueError):
            BlobStore.key_for(bad)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images/..%2F..%2Fetc%2Fpasswd",
        "/v1/images/%2E%2E%2F%2E%2E%2Fvar%2Fblobs",
        "/v1/images/' OR '1'='1",
        "/review/image/..%2F..%2Fetc%2Fpasswd",
        "/review/image/%2E%2E",
        "/review/item/..%2F1",
    ],
)
def test_urls_taking_an_id_refuse_traversal(
    context: Context, client: FlaskClient, api_key: str, path: str
) -> None:
    make_item(context)
    make_user(context, "mia")
    login(client, "mia")
    response = client.get(path, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code in (400, 403, 404), (path, response.status_code)
    assert b"root:" not in response.data and b"PNG" not in response.data
