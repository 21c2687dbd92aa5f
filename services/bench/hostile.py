"""A small hostile-upload corpus the load benchmark sends after its run: each must get a clear
4xx JSON error (and the API must keep accepting afterwards). ``tests/api/test_hostile.py`` has
the full corpus; this is the part that needs no test fixtures."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import requests


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


# (name, content type, body)
CORPUS: list[tuple[str, str, Callable[[], bytes]]] = [
    ("zero bytes", "image/png", lambda: b""),
    ("truncated png", "image/png", lambda: png_claiming(64, 64)[:40]),
    ("non-image bytes", "image/png", lambda: bytes(range(256)) * 8),
    ("svg", "image/svg+xml", lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'),
    ("html", "application/octet-stream", lambda: b"<!DOCTYPE html><html><body>hi</body></html>"),
    ("pdf", "application/octet-stream", lambda: b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF"),
    ("bomb header 100000x100000", "image/png", lambda: png_claiming(100_000, 100_000)),
    ("json body", "application/json", lambda: b'{"url": "x"}'),
    ("multipart without boundary", "multipart/form-data", lambda: b"--x\r\n\r\nhi\r\n--x--\r\n"),
    ("multipart garbage", "multipart/form-data; boundary=b", lambda: bytes(range(256))),
]  # fmt: skip


def send_corpus(url: str, api_key: str, *, timeout_s: float = 30) -> dict[str, int]:
    """Send every case once: how many were tried and how many got a 4xx JSON error."""
    refused = 0
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {api_key}"
        for _, ctype, body in CORPUS:
            r = http.post(f"{url}/v1/images", data=body(), headers={"Content-Type": ctype},
                          timeout=timeout_s)  # fmt: skip
            error = (
                r.json().get("error")
                if r.headers.get("Content-Type") == "application/json"
                else None
            )
            refused += int(400 <= r.status_code < 500 and isinstance(error, dict))
    return {"tried": len(CORPUS), "refused_cleanly": refused}
