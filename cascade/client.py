"""Python client for upload services: submit images, read or wait for decisions.

    client = CascadeClient("https://moderation.example.com", api_key="csk_...")
    sub = client.submit(Path("cat.jpg"), idempotency_key="upload-123")
    done = client.wait(sub.id, timeout=30)
    print(done.decision)  # "allow" or "block"

The API's JSON errors come back as the same ``cascade.errors`` classes the server raised
(``InvalidImage``, ``TooManyRequests``, ...), so there is one error hierarchy on both sides.
429 and 503 answers are retried after their Retry-After (``max_retries`` times): the server
refused them before doing anything, so a retry is always safe.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from cascade import errors
from cascade.errors import CascadeError

ImageSource = bytes | str | os.PathLike[str]
FINAL_STATES = frozenset({"decided", "error"})

_BY_STATUS: dict[int, type[CascadeError]] = {
    cls.status: cls
    for cls in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.InvalidImage,
        errors.TooManyRequests,
        errors.ServiceUnavailable,
    )
}


class RemoteError(CascadeError):
    """An error status without a class of its own (e.g. 500, 405); keeps status and code."""

    def __init__(self, message: str, *, status: int, code: str, retry_after: int | None = None):
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.code = code


class TransportError(CascadeError):
    """The server could not be reached or did not answer in time."""

    status, code = 503, "transport"


class WaitTimeout(CascadeError, TimeoutError):
    """``wait`` gave up before the submission reached a final state."""

    status, code = 504, "wait_timeout"


@dataclass(frozen=True)
class SubmissionStatus:
    """A submission as the API describes it; ``data`` holds the whole JSON body."""

    id: str
    state: str
    decision: str | None = None
    decided_by: str | None = None
    status_code: int = 200
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_json(cls, body: dict[str, Any], status_code: int = 200) -> SubmissionStatus:
        return cls(
            id=str(body["id"]),
            state=str(body["state"]),
            decision=body.get("decision"),
            decided_by=body.get("decided_by"),
            status_code=status_code,
            data=body,
        )


def error_from_response(response: requests.Response) -> CascadeError:
    """The typed exception for an error response (JSON ``{"error": {code, message}}``)."""
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    retry = response.headers.get("Retry-After")
    retry_after = int(retry) if retry and retry.isdigit() else None
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        return RemoteError(message, status=response.status_code, code=code, retry_after=retry_after)
    return cls(message, retry_after=retry_after)


def _read(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        return bytes(source), "image"
    path = Path(source)
    return path.read_bytes(), path.name


class CascadeClient:
    """A small synchronous client; thread-safe as far as ``requests.Session`` is."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not api_key:
            raise ValueError("api_key is empty; create one with `cascade keys create`")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {api_key}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for attempt in range(self.max_retries + 1):
            try:
                response = self.http.request(
                    method, self.base_url + path, timeout=self.timeout, **kwargs
                )
            except requests.RequestException as exc:
                raise TransportError(f"{method} {path} failed: {exc}") from exc
            if response.status_code < 400:
                return response
            error = error_from_response(response)
            if response.status_code not in (429, 503) or attempt == self.max_retries:
                raise error
            self.sleep(min(float(error.retry_after or 2**attempt), self.max_retry_wait))
        raise AssertionError("unreachable")

    def submit(
        self,
        image: ImageSource,
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> SubmissionStatus:
        """Submit one image (bytes or a file path). 202: queued; 200: decided or a replay."""
        data, _ = _read(image)
        headers = {"Content-Type": "application/octet-stream"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        params = {"callback_url": callback_url} if callback_url else None
        response = self._request("POST", "/v1/images", data=data, headers=headers, params=params)
        return SubmissionStatus.from_json(response.json(), response.status_code)

    def submit_many(
        self,
        images: Iterable[ImageSource],
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        batch_size: int = 64,
    ) -> list[SubmissionStatus | CascadeError]:
        """Submit images in batches; each result is a status or the error of that image.

        With ``idempotency_key``, chunk ``n`` uses ``<key>-<n>`` so a repeated call replays.
        """
        sources = list(images)
        results: list[SubmissionStatus | CascadeError] = []
        for n, start in enumerate(range(0, len(sources), batch_size)):
            chunk = [_read(s) for s in sources[start : start + batch_size]]
            files = [("images", (name, data, "application/octet-stream")) for data, name in chunk]
            headers = {"Idempotency-Key": f"{idempotency_key}-{n}"} if idempotency_key else {}
            form = {"callback_url": callback_url} if callback_url else None
            response = self._request("POST", "/v1/images", files=files, data=form, headers=headers)
            results.extend(self._batch_item(item) for item in response.json()["items"])
        return results

    @staticmethod
    def _batch_item(item: dict[str, Any]) -> SubmissionStatus | CascadeError:
        status = int(item["status"])
        if status < 400:
            return SubmissionStatus.from_json(item, status)
        detail = item.get("error") or {}
        message, code = str(detail.get("message", "")), str(detail.get("code", "error"))
        cls = _BY_STATUS.get(status)
        return cls(message) if cls else RemoteError(message, status=status, code=code)

    def get(self, submission_id: str) -> SubmissionStatus:
        response = self._request("GET", f"/v1/images/{quote(submission_id, safe='')}")
        return SubmissionStatus.from_json(response.json())

    def wait(
        self,
        submission_id: str,
        timeout: float = 60.0,
        *,
        initial_interval: float = 0.1,
        max_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> SubmissionStatus:
        """Poll until the submission is decided (or in error), backing off exponentially.

        Raises ``WaitTimeout`` after ``timeout`` seconds; an item waiting for a human can take
        much longer than that, so prefer a ``callback_url`` for those.
        """
        deadline = clock() + timeout
        interval = initial_interval
        while True:
            status = self.get(submission_id)
            if status.done:
                return status
            left = deadline - clock()
            if left <= 0:
                raise WaitTimeout(
                    f"submission {submission_id} is still {status.state} after {timeout:g} s"
                )
            self.sleep(min(interval, left))
            interval = min(interval * 2, max_interval)

    def wait_all(self, ids: Sequence[str], timeout: float = 60.0) -> list[SubmissionStatus]:
        """``wait`` for several submissions within one overall ``timeout``."""
        deadline = time.monotonic() + timeout
        return [self.wait(i, timeout=max(0.0, deadline - time.monotonic())) for i in ids]

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CascadeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
