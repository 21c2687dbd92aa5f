"""Locust load for Cascade's upload API: single uploads, batch uploads, status polling.

Run by ``cascade bench load`` and ``make soak`` as their own process (``locust --headless``),
or by hand against any running stack::

    CASCADE_LOCUST_API_KEY=csk_... locust -f locustfile.py --headless -u 50 -r 50 -t 60s \\
        --host http://127.0.0.1:8000

Settings (environment):

* ``CASCADE_LOCUST_API_KEY`` (required): the uploads' API key.
* ``CASCADE_LOCUST_RATE``: uploads per second per user (default 1); the offered rate is
  ``users x rate`` (``constant_throughput``: a user waits out the rest of its interval).
* ``CASCADE_LOCUST_BATCH_SHARE`` (default 0.1) of uploads are batch requests of
  ``CASCADE_LOCUST_BATCH_SIZE`` images (default 4).
* ``CASCADE_LOCUST_POLL_SHARE`` (default 0.3): after an accepted upload, the chance that the
  user polls its status once.
* ``CASCADE_LOCUST_CALLBACK_URL``: a callback URL sent with every upload.
* ``CASCADE_LOCUST_SEED``: images are distinct PNGs drawn from this seed (no cache hits).
* ``CASCADE_LOCUST_ANSWERS``: a folder; every upload answer is appended there as a JSON line
  (time, status, latency, accepted ids), which is how the benchmarks count what was accepted
  and lost. Locust's own statistics do not carry the ids.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from locust import HttpUser, constant_throughput, events, task
from PIL import Image

API_KEY = os.environ.get("CASCADE_LOCUST_API_KEY", "")
RATE = float(os.environ.get("CASCADE_LOCUST_RATE", "1"))
BATCH_SHARE = float(os.environ.get("CASCADE_LOCUST_BATCH_SHARE", "0.1"))
BATCH_SIZE = int(os.environ.get("CASCADE_LOCUST_BATCH_SIZE", "4"))
POLL_SHARE = float(os.environ.get("CASCADE_LOCUST_POLL_SHARE", "0.3"))
CALLBACK_URL = os.environ.get("CASCADE_LOCUST_CALLBACK_URL") or None
SEED = int(os.environ.get("CASCADE_LOCUST_SEED", "0"))
ANSWERS = os.environ.get("CASCADE_LOCUST_ANSWERS")

_seeds = itertools.count(SEED * 1_000_000 + 1)
_journal: Any = None


def png(seed: int, size: int = 64) -> bytes:
    """A distinct small PNG per seed (distinct bytes: no answer comes from the cache)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@events.init.add_listener
def _open_journal(**_: Any) -> None:
    global _journal
    if not API_KEY:
        raise SystemExit("set CASCADE_LOCUST_API_KEY to an API key of the stack under test")
    if ANSWERS:
        Path(ANSWERS).mkdir(parents=True, exist_ok=True)
        _journal = open(Path(ANSWERS) / f"answers-{os.getpid()}.jsonl", "a")  # noqa: SIM115


@events.quitting.add_listener
def _close_journal(**_: Any) -> None:
    if _journal is not None:
        _journal.close()


def _record(response: Any, started: float, ids: list[str], images: int) -> None:
    if _journal is not None:
        line = {"t": started, "status": response.status_code, "s": time.time() - started,
                "ids": ids, "images": images,
                "retry_after": "Retry-After" in (response.headers or {})}  # fmt: skip
        _journal.write(json.dumps(line) + "\n")
        _journal.flush()


class Uploader(HttpUser):
    """An upload service: sends images (now and then a batch), sometimes polls a decision."""

    wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {API_KEY}"
        self.params = {"callback_url": CALLBACK_URL} if CALLBACK_URL else {}

    @task
    def upload(self) -> None:
        if random.random() < BATCH_SHARE:
            self._batch()
        else:
            self._single()

    def _single(self) -> None:
        started = time.time()
        with self.client.post(
            "/v1/images", data=png(next(_seeds)), params=self.params, name="upload",
            headers={"Content-Type": "image/png"}, catch_response=True,
        ) as r:  # fmt: skip
            ids = [r.json()["id"]] if r.status_code in (200, 202) else []
            _judge(r)
        _record(r, started, ids, 1)
        self._maybe_poll(ids)

    def _batch(self) -> None:
        started = time.time()
        files = [
            ("images", (f"{i}.png", png(next(_seeds)), "image/png")) for i in range(BATCH_SIZE)
        ]
        with self.client.post(
            "/v1/images", files=files, params=self.params, name="upload batch",
            catch_response=True,
        ) as r:  # fmt: skip
            ids = []
            if r.status_code == 207:
                ids = [i["id"] for i in r.json()["items"] if i["status"] in (200, 202)]
            _judge(r)
        _record(r, started, ids, BATCH_SIZE)
        self._maybe_poll(ids)

    def _maybe_poll(self, ids: list[str]) -> None:
        if ids and random.random() < POLL_SHARE:
            self.client.get(f"/v1/images/{ids[0]}", name="status")


def _judge(response: Any) -> None:
    """2xx and polite refusals (429/503 with Retry-After) are answers; anything else fails."""
    polite = response.status_code in (429, 503) and "Retry-After" in response.headers
    if response.ok or polite:
        response.success()
    else:
        response.failure(f"status {response.status_code}")
