"""Locust as the load tool: ``locustfile.py`` run as its own process (``locust --headless``).

Locust's runners live on gevent and monkey-patch ``socket`` and ``threading`` at import, which
fights the stack's child-process management in the same process; in a process of its own it
is simply Locust. The locustfile journals every upload answer (status, latency, accepted ids)
to a folder; ``Swarm.wait`` reads them back as a ``Phase``, which is what the loss accounting
needs (Locust's statistics do not carry ids). Locust's own CSV statistics are kept next to it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.bench.loadgen import Phase, Sample

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "locustfile.py"
PER_USER_RATE = 0.5  # requests/s per Locust user: many users, so slow answers barely slow the offer
BATCH_SIZE = 4  # images in a batch request (the locustfile's default)


@dataclass
class Swarm:
    """One Locust run offering ``rate`` images/s (single and batch uploads together) for
    ``duration_s`` against ``url``."""

    name: str
    url: str
    api_key: str
    rate: float
    duration_s: float
    out: Path
    seed: int = 0
    callback_url: str | None = None
    batch_share: float = 0.1
    process: subprocess.Popen[bytes] | None = None

    @property
    def answers(self) -> Path:
        return self.out / f"{self.name}-answers"

    def start(self) -> Swarm:
        """Start Locust (returns at once; ``wait`` for its answers)."""
        if not self.url.startswith("http://127.0.0.1:"):
            raise ValueError(f"load tests run on loopback only, not against {self.url!r}")
        self.out.mkdir(parents=True, exist_ok=True)
        requests_per_s = self.rate / (1 + self.batch_share * (BATCH_SIZE - 1))
        users = max(1, math.ceil(requests_per_s / PER_USER_RATE))
        env = dict(os.environ)
        env.update(
            CASCADE_LOCUST_API_KEY=self.api_key,
            CASCADE_LOCUST_RATE=str(requests_per_s / users),
            CASCADE_LOCUST_BATCH_SIZE=str(BATCH_SIZE),
            CASCADE_LOCUST_ANSWERS=str(self.answers),
            CASCADE_LOCUST_SEED=str(self.seed),
            CASCADE_LOCUST_BATCH_SHARE=str(self.batch_share),
            CASCADE_LOCUST_CALLBACK_URL=self.callback_url or "",
        )
        args = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", self.url, "-u", str(users), "-r", str(users),
            "-t", f"{max(1, round(self.duration_s))}s", "--stop-timeout", "30",
            "--csv", str(self.out / self.name), "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        log = open(self.out / f"{self.name}-locust.log", "ab")  # noqa: SIM115 (the child's)
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self) -> Phase:
        """Wait for Locust to finish; every upload answer it got, as a ``Phase``."""
        assert self.process is not None, "start() first"
        code = self.process.wait(timeout=self.duration_s + 120)
        if code not in (0, 1):  # 1: Locust saw failed requests (faults do that)
            raise RuntimeError(f"locust exited {code}; see {self.out / self.name}-locust.log")
        return read_answers(self.name, self.rate, self.duration_s, self.answers)


def read_answers(name: str, rate: float, duration_s: float, folder: Path) -> Phase:
    """The journal lines of one run, as a ``Phase`` (seconds relative to its first request)."""
    lines = []
    for path in sorted(folder.glob("answers-*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    lines.sort(key=lambda x: x["t"])
    start = lines[0]["t"] if lines else 0.0
    phase = Phase(name, rate, duration_s, started_at=start)
    for x in lines:
        at, status, took = x["t"] - start, int(x["status"]), float(x["s"])
        if x["ids"]:  # one sample per accepted image (a batch accepts several)
            phase.samples += [Sample(at, 202, took, sid) for sid in x["ids"]]
        else:
            phase.samples.append(Sample(at, status, took, None, bool(x.get("retry_after"))))
    return phase
