"""Parsed Terraform for the infra tests: python-hcl2 stands in for `terraform validate`, which
cannot run here (no terraform binary). Strings come back from hcl2 with their quotes kept;
``unquote`` removes them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
MODULES = TERRAFORM / "modules"
DOCKERFILE = REPO / "Dockerfile"


def unquote(value: Any) -> Any:
    """``'"stage1"'`` -> ``'stage1'``; lists and dicts recursively; expressions unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        # hcl2 adds bookkeeping keys (__is_block__, __comments__); they are not HCL.
        return {unquote(k): unquote(v) for k, v in value.items() if not k.startswith("__")}
    return value


@dataclass
class Module:
    """One Terraform module folder: its parsed files and the blocks tests ask about."""

    path: Path
    files: dict[Path, dict[str, Any]] = field(default_factory=dict)

    def blocks(self, kind: str) -> list[dict[str, Any]]:
        return [b for parsed in self.files.values() for b in parsed.get(kind, [])]

    @property
    def variables(self) -> dict[str, dict[str, Any]]:
        return {unquote(k): v for b in self.blocks("variable") for k, v in b.items()}

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return {unquote(k): v for b in self.blocks("output") for k, v in b.items()}

    @property
    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for block in self.blocks("locals"):
            merged.update({k: v for k, v in block.items() if k != "__comments__"})
        return merged

    @property
    def module_calls(self) -> dict[str, dict[str, Any]]:
        return {unquote(k): v for b in self.blocks("module") for k, v in b.items()}

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        """The body of ``resource "<kind>" "<name>"`` (quotes removed)."""
        for block in self.blocks("resource"):
            for found_kind, named in block.items():
                for found_name, body in named.items():
                    if unquote(found_kind) == kind and unquote(found_name) == name:
                        return dict(unquote(body))
        raise KeyError(f"no resource {kind}.{name} in {self.path}")

    def text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.files))


def load_module(path: Path) -> Module:
    module = Module(path)
    for tf in sorted(path.glob("*.tf")):
        module.files[tf] = hcl2.loads(tf.read_text())
    return module


def references(text: str, kind: str) -> set[str]:
    """Names used as ``var.NAME`` / ``local.NAME`` in HCL text (comments stripped)."""
    code = re.sub(r"#[^\n]*", "", text)
    return set(re.findall(rf"\b{kind}\.([A-Za-z_][A-Za-z0-9_]*)", code))
