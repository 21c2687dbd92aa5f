"""The one report writer: ``<name>.md``, ``<name>.json`` and ``<name>.png`` under one folder.

The JSON keys of each report are a contract (scripts and the README read them): a benchmark
may add keys, never rename or drop one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots(*args, **kwargs)`` on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def table_lines(columns: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A markdown table: the header, its rule, one line per row of already formatted cells."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def write_report(
    out: Path, name: str, result: Mapping[str, Any], markdown: str, fig: Any, *, dpi: int = 110
) -> list[Path]:
    """Write the three files of report ``name`` and close ``fig``; returns their paths."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.json", out / f"{name}.png"]
    paths[0].write_text(markdown)
    paths[1].write_text(json.dumps(result, indent=2))
    fig.tight_layout()
    fig.savefig(paths[2], dpi=dpi)
    plt.close(fig)
    return paths
