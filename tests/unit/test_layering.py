"""`make lint`'s import-layering check (lint-imports, contracts in pyproject.toml) passes on the
tree and fails when a cycle or a backward arrow is put back: run on a copy of the packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cascade", "models", "feedback", "services")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The four packages' Python files and pyproject.toml, copied."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "templates", "static"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n\ndef _reintroduced() -> None:\n    {line}\n")


def test_the_tree_keeps_the_contracts(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_cycle_inside_cascade_fails(tree: Path) -> None:
    # metrics is a leaf; the pipeline records metrics: metrics -> pipeline closes a cycle,
    # even as a function-level import (the kind that once hid a 10-module cycle).
    _add_import(tree / "cascade" / "metrics.py", "import cascade.pipeline  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "No cycles are allowed in cascade" in result.stdout


def test_an_arrow_pointing_back_fails(tree: Path) -> None:
    _add_import(tree / "cascade" / "policy.py", "import services.web  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
