"""A hostile corpus, built here: every bad input gets a clear 4xx JSON error, every odd but valid
image is accepted, and the server keeps answering afterwards."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from cascade.apikeys import IssuedKey
from cascade.context import Context
from cascade.db.schema import Submission
from services.bench.hostile import png_claiming
from tests.api.conftest import MAX_UPLOAD_BYTES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_context(module_context: Context) -> Context:
    """Every test here adds its own rows only, so the module shares one database."""
    return module_context


MakeImage = Callable[..., bytes]


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (24, 16), (i * 60, 20, 200 - i * 40)) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buf.getvalue()


def jpeg_with_exif(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def jpeg_with_garbage_exif(make_image: MakeImage) -> bytes:
    body = make_image("JPEG")
    app1 = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + b"\xff" * 40
    return body[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + body[2:]


def assert_error(r: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.get_data()[:300])
    assert r.mimetype == "application/json"
    error = r.json["error"]
    assert error["message"] and len(error["message"]) > 10
    if code is not None:
        assert error["code"] == code
    return dict(error)


def raw(api: FlaskClient, auth: dict[str, str], body: bytes, ctype: str = "image/png") -> Any:
    return api.post("/v1/images", data=body, headers=auth, content_type=ctype)


# (name, body builder, expected status, expected error code or None for accepted images)
REFUSED: list[tuple[str, Callable[[MakeImage], bytes], int, str]] = [
    ("zero bytes", lambda m: b"", 422, "invalid_image"),
    ("truncated jpeg", lambda m: m("JPEG", size=(64, 64))[:300], 422, "invalid_image"),
    ("truncated png", lambda m: m("PNG", size=(64, 64))[:60], 422, "invalid_image"),
    ("non-image bytes", lambda m: bytes(range(256)) * 8, 422, "invalid_image"),
    ("svg", lambda m: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', 422, "invalid_image"),
    ("html", lambda m: b"<!DOCTYPE html><html><body>hi</body></html>", 422, "invalid_image"),
    ("pdf", lambda m: b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF", 422, "invalid_image"),
    ("bomb header 100000x100000", lambda m: png_claiming(100_000, 100_000), 413, "payload_too_large"),
    ("just over max_pixels", lambda m: m("PNG", size=(2100, 2000)), 413, "payload_too_large"),
    ("over max_upload_bytes", lambda m: b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES, 413, "payload_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "build", "status", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_images_are_refused_clearly(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    name: str,
    build: Callable[[MakeImage], bytes],
    status: int,
    code: str,
) -> None:
    body = build(make_image)
    assert_error(raw(api, auth, body), status, code)
    # The same bytes as a multipart file get the same answer.
    r = api.post("/v1/images", data={"image": (io.BytesIO(body), "x.png")}, headers=auth)
    assert_error(r, status, code)


def test_text_formats_are_named_in_the_message(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    error = assert_error(raw(api, auth, b"<svg></svg>", "image/svg+xml"), 422)
    assert "SVG" in error["message"]
    assert "empty" in assert_error(raw(api, auth, b""), 422)["message"]


ACCEPTED: list[tuple[str, Callable[[MakeImage], bytes], tuple[int, int]]] = [
    ("animated gif", lambda m: animated("GIF"), (24, 16)),
    ("animated webp", lambda m: animated("WEBP"), (24, 16)),
    ("16-bit png", lambda m: m("PNG", size=(30, 10), mode="I;16"), (30, 10)),
    ("cmyk jpeg", lambda m: m("JPEG", size=(30, 10), mode="CMYK"), (30, 10)),
    ("grayscale png", lambda m: m("PNG", size=(30, 10), mode="L"), (30, 10)),
    ("rgba png", lambda m: m("PNG", size=(30, 10), mode="RGBA"), (30, 10)),
    ("bmp", lambda m: m("BMP", size=(30, 10)), (30, 10)),
    ("exif rotated 90", lambda m: jpeg_with_exif(6), (20, 40)),
    ("exif orientation out of range", lambda m: jpeg_with_exif(9), (40, 20)),
    ("corrupt exif block", jpeg_with_garbage_exif, (32, 24)),
]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(("name", "build", "size"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_odd_but_valid_images_are_accepted(
    api: FlaskClient,
    auth: dict[str, str],
    make_image: MakeImage,
    api_context: Context,
    name: str,
    build: Callable[[MakeImage], bytes],
    size: tuple[int, int],
) -> None:
    r = raw(api, auth, build(make_image), "application/octet-stream")
    assert r.status_code == 202, r.json
    with api_context.sessions() as session:
        sub = session.get(Submission, r.json["id"])
        assert sub is not None
        # The stored size is the decoded (first frame, EXIF-rotated) one.
        assert (sub.image.width, sub.image.height) == size


def test_the_bytes_decide_not_the_name_or_declared_type(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    jpeg = make_image("JPEG")
    assert raw(api, auth, jpeg, "image/png").status_code == 202
    r = api.post("/v1/images", data={"image": (io.BytesIO(make_image()), "evil.exe")}, headers=auth)
    assert r.status_code == 202
    r = api.post("/v1/images", data={"image": (io.BytesIO(b"MZ\x90\x00"), "cat.jpg")}, headers=auth)
    assert_error(r, 422, "invalid_image")


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "video/mp4", ""],
)
def test_wrong_content_types_get_415(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage, ctype: str
) -> None:
    r = api.post("/v1/images", data=make_image(), headers=auth | {"Content-Type": ctype})
    assert_error(r, 415, "unsupported_media_type")


def test_json_bodies_get_415_even_when_huge(api: FlaskClient, auth: dict[str, str]) -> None:
    assert_error(api.post("/v1/images", json={"url": "x"}, headers=auth), 415)
    huge = b'{"a": "' + b"x" * (3 * MAX_UPLOAD_BYTES) + b'"}'
    error = assert_error(raw(api, auth, huge, "application/json"), 415)
    assert "JSON" in error["message"]


def test_enormous_bodies_get_413_with_the_limits(
    api: FlaskClient, auth: dict[str, str], api_context: Context
) -> None:
    limit = api.application.config["MAX_CONTENT_LENGTH"]  # max_request_bytes
    body = b"\xff\xd8" + b"\0" * limit
    assert_error(raw(api, auth, body, "image/jpeg"), 413, "payload_too_large")
    r = api.post("/v1/images", data={"image": (io.BytesIO(body), "big.jpg")}, headers=auth)
    error = assert_error(r, 413, "payload_too_large")
    assert f"the limit is {limit} bytes" in error["message"]


MALFORMED_MULTIPART = [
    ("no boundary", "multipart/form-data", b"--x\r\n\r\nhello\r\n--x--\r\n"),
    ("wrong boundary", "multipart/form-data; boundary=abc", b"--xyz\r\nfoo\r\n--xyz--\r\n"),
    (
        "cut off",
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n\x89PNG',
    ),
    ("garbage", "multipart/form-data; boundary=b", bytes(range(256))),
    ("no file field", "multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--b--\r\n'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "ctype", "body"), MALFORMED_MULTIPART, ids=[m[0] for m in MALFORMED_MULTIPART]
)
def test_malformed_multipart_gets_400(
    api: FlaskClient, auth: dict[str, str], name: str, ctype: str, body: bytes
) -> None:
    r = api.post("/v1/images", data=body, headers=auth | {"Content-Type": ctype})
    assert_error(r, 400, "bad_request")


def test_image_and_images_together_is_ambiguous(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    data = {
        "image": (io.BytesIO(make_image()), "a.png"),
        "images": [(io.BytesIO(make_image()), "b.png")],
    }
    assert_error(api.post("/v1/images", data=data, headers=auth), 400)


def test_bad_headers_and_methods(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    long_key = auth | {"Idempotency-Key": "k" * 300}
    assert_error(raw(api, auth | long_key, make_image()), 400)
    r = api.put("/v1/images", data=make_image(), headers=auth)
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer csk_deadbeef_nope"},
        {"X-API-Key": "x" * 5000},
        {"X-API-Key": "csk__"},
    ],
)
def test_bad_credentials_get_401(
    api: FlaskClient, key: IssuedKey, make_image: MakeImage, headers: dict[str, str]
) -> None:
    assert_error(raw(api, headers, make_image()), 401, "unauthorized")
    assert_error(api.get("/v1/images/x", headers=headers), 401, "unauthorized")


def test_a_key_with_a_valid_prefix_and_wrong_secret_is_refused(
    api: FlaskClient, key: IssuedKey, make_image: MakeImage
) -> None:
    forged = f"csk_{key.prefix}_{'A' * 43}"
    assert_error(raw(api, {"X-API-Key": forged}, make_image()), 401)


def test_server_keeps_answering_after_the_corpus(
    api: FlaskClient, auth: dict[str, str], make_image: MakeImage
) -> None:
    for _, build, _, _ in REFUSED:
        raw(api, auth, build(make_image))
    for _, ctype, body in MALFORMED_MULTIPART:
        api.post("/v1/images", data=body, headers=auth | {"Content-Type": ctype})
    assert raw(api, auth, make_image()).status_code == 202
