"""Progress that fits where it goes: a tqdm bar on a terminal, a plain line every few seconds
in a log (a bar redrawn into a file is hundreds of lines of carriage returns).

It lives in ``models`` because every package may import it (training reports progress too).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """``update(n)`` or ``set(n)`` as work gets done; use it as a context manager, or wrap an
    iterable with :func:`progress`. ``every_s`` spaces the plain lines."""

    def __init__(
        self, *, total: int | None, desc: str, unit: str = "it", every_s: float = 10.0,
        terminal: bool | None = None,
    ) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n = 0
        self._bar: Any = None
        if sys.stderr.isatty() if terminal is None else terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit)
        self._said_at = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.set(self.n + n)

    def set(self, n: int) -> None:
        """The amount done so far is ``n``."""
        self.n = n
        if self._bar is not None:
            self._bar.n = n
            self._bar.refresh()
        elif time.monotonic() - self._said_at >= self.every_s:
            self._say()

    def _say(self) -> None:
        self._said_at = time.monotonic()
        of = f"/{self.total}" if self.total is not None else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._say()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it",
    every_s: float = 10.0,
) -> Iterator[T]:  # fmt: skip
    """``items``, reporting progress as they are consumed."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total=total, desc=desc, unit=unit, every_s=every_s) as bar:
        for item in items:
            yield item
            bar.update()
