"""Content-addressed blob store over fsspec: a local folder by default, any fsspec URL in production."""

from __future__ import annotations

import hashlib
import re

import fsspec

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Stores bytes under their SHA-256. Keys are derived, never taken from users, so they
    cannot escape the store."""

    def __init__(self, url: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.url = url
        self.fs.makedirs(self.root, exist_ok=True)

    @staticmethod
    def key_for(sha: str) -> str:
        if not _SHA256.match(sha):
            raise ValueError("blob keys are lower-case SHA-256 hex digests")
        return f"{sha[:2]}/{sha[2:4]}/{sha}"

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if len(parts) != 3 or not _SHA256.match(parts[2]) or key != self.key_for(parts[2]):
            raise ValueError(f"not a blob key: {key!r}")
        return f"{self.root.rstrip('/')}/{key}"

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; returns ``(sha256, key)``. Idempotent: the same bytes, the same key."""
        sha = sha256_hex(data)
        key = self.key_for(sha)
        path = self._path(key)
        if not self.fs.exists(path):
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            tmp = f"{path}.tmp-{id(data)}"
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, path)
        return sha, key

    def get(self, key: str) -> bytes:
        with self.fs.open(self._path(key), "rb") as f:
            return bytes(f.read())

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))
