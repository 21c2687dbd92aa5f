"""Content-addressed blob store over fsspec: a local folder by default, any fsspec URL in production.

Two kinds of blob: an upload's original bytes under their SHA-256 (``aa/bb/<sha>``), kept for
the review UI, and its normalised derivative (``d/aa/bb/<sha>``, ``cascade.derivative``), the
pixels every stage worker reads. The derivative is named after the original it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DERIVED = "d"  # the folder of derivatives


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Stores bytes under their SHA-256. Keys are derived, never taken from users, so they
    cannot escape the store."""

    def __init__(self, url: str) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.url = url
        self.fs.makedirs(self.root, exist_ok=True)
        # A local folder is written and read with plain os calls: through fsspec, an upload's
        # two writes cost ~10 file-system calls each (exists, makedirs of both levels, open,
        # rename, each behind its own path handling), about a tenth of the API's CPU.
        self._local = isinstance(self.fs, LocalFileSystem)

    @staticmethod
    def key_for(sha: str) -> str:
        if not _SHA256.match(sha):
            raise ValueError("blob keys are lower-case SHA-256 hex digests")
        return f"{sha[:2]}/{sha[2:4]}/{sha}"

    @classmethod
    def derivative_key_for(cls, sha: str) -> str:
        """The key of the derivative made from the original whose SHA-256 is ``sha``."""
        return f"{DERIVED}/{cls.key_for(sha)}"

    def _path(self, key: str) -> str:
        parts = key.split("/")
        base = parts[-1] if len(parts) in (3, 4) else ""
        if not _SHA256.match(base) or key not in (
            self.key_for(base),
            self.derivative_key_for(base),
        ):
            raise ValueError(f"not a blob key: {key!r}")
        return f"{self.root.rstrip('/')}/{key}"

    def put(self, data: bytes, *, sha: str | None = None) -> tuple[str, str]:
        """Store ``data``; returns ``(sha256, key)``. Idempotent: the same bytes, the same key.
        ``sha``: the caller's own ``sha256_hex(data)``, not computed twice."""
        sha = sha or sha256_hex(data)
        key = self.key_for(sha)
        self._write(key, data)
        return sha, key

    def put_derivative(self, sha: str, data: bytes) -> str:
        """Store the derivative of original ``sha``; returns its key. Made again from the same
        original, it is the same bytes, so a second write changes nothing."""
        key = self.derivative_key_for(sha)
        self._write(key, data)
        return key

    def _write(self, key: str, data: bytes) -> None:
        """Write once, atomically (a temporary name, then a rename): a reader never sees half."""
        path = self._path(key)
        if self._local:
            _write_local(path, data)
            return
        if self.fs.exists(path):
            return
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, path)

    def get(self, key: str) -> bytes:
        if self._local:
            with open(self._path(key), "rb") as f:
                return f.read()
        with self.fs.open(self._path(key), "rb") as f:
            return bytes(f.read())

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete(self, key: str) -> bool:
        """Remove a blob (retention, ``cascade db prune``); False when it was not there (not an
        error: a derivative may never have been made)."""
        path = self._path(key)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path)
        return True


def _write_local(path: str, data: bytes) -> None:
    """``BlobStore._write`` on a local folder: the same steps in the fewest system calls (the
    folders are made only when the first open says they are missing)."""
    if os.path.exists(path):
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
