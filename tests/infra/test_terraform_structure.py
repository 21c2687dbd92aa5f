"""What `terraform validate` would catch, checked statically: every file parses, every
variable is typed and described, module calls pass what modules declare, references resolve."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest

from tests.infra.infra_hcl import MODULES, TERRAFORM, Module, references, unquote

TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
TFVARS = sorted((TERRAFORM / "examples").glob("*.tfvars"))
META_ARGUMENTS = {"source", "depends_on", "providers", "count", "for_each", "version"}


def test_there_is_terraform_to_check() -> None:
    assert len(TF_FILES) > 20
    assert {p.name for p in MODULES.iterdir()} >= {
        "network",
        "eks",
        "redis",
        "postgres",
        "blobs",
        "iam",
        "secrets",
        "app",
    }


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_tf_file_parses(path: Path) -> None:
    assert isinstance(hcl2.loads(path.read_text()), dict)


def all_modules(root: Module, modules: dict[str, Module]) -> dict[str, Module]:
    return {"<root>": root, **modules}


def test_every_variable_has_a_type_and_a_description(
    root: Module, modules: dict[str, Module]
) -> None:
    missing = [
        f"{name}: var.{var}"
        for name, module in all_modules(root, modules).items()
        for var, body in module.variables.items()
        if not body.get("type") or len(unquote(body.get("description", ""))) < 10
    ]
    assert not missing, f"variables without type or description: {missing}"


def test_every_output_has_a_description(root: Module, modules: dict[str, Module]) -> None:
    missing = [
        f"{name}: {out}"
        for name, module in all_modules(root, modules).items()
        for out, body in module.outputs.items()
        if len(unquote(body.get("description", ""))) < 10
    ]
    assert not missing


def test_module_calls_pass_exactly_the_declared_variables(
    root: Module, modules: dict[str, Module]
) -> None:
    for call, body in root.module_calls.items():
        target = MODULES / Path(unquote(body["source"])).name
        module = modules[target.name]
        passed = set(body) - META_ARGUMENTS - {"__is_block__"}
        declared = set(module.variables)
        required = {v for v, b in module.variables.items() if "default" not in b}
        assert passed <= declared, f"module {call} passes undeclared {passed - declared}"
        assert required <= passed, f"module {call} misses required {required - passed}"


def test_references_resolve_within_each_module(root: Module, modules: dict[str, Module]) -> None:
    for name, module in all_modules(root, modules).items():
        text = module.text()
        undeclared_vars = references(text, "var") - set(module.variables)
        undeclared_locals = references(text, "local") - set(module.locals)
        assert not undeclared_vars, f"{name}: undeclared variables {undeclared_vars}"
        assert not undeclared_locals, f"{name}: undeclared locals {undeclared_locals}"


def test_module_outputs_used_by_the_root_exist(root: Module, modules: dict[str, Module]) -> None:
    calls = {c: Path(unquote(b["source"])).name for c, b in root.module_calls.items()}
    code = re.sub(r"#[^\n]*", "", root.text())
    for call, output in set(re.findall(r"\bmodule\.([a-z_]+)\.([a-z_]+)", code)):
        assert call in calls, f"module.{call} is not called"
        assert output in modules[calls[call]].outputs, f"module.{call} has no output {output}"


def test_versions_pin_the_providers(root: Module) -> None:
    terraform = root.blocks("terraform")[0]
    providers = terraform["required_providers"][0]
    for name in ("aws", "kubernetes", "helm"):
        version = unquote(providers[name]["version"])
        assert re.fullmatch(r"~> \d+\.\d+", version), f"{name} is not pinned: {version!r}"


@pytest.mark.parametrize("path", TFVARS, ids=lambda p: p.name)
def test_example_tfvars_set_real_and_required_variables(path: Path, root: Module) -> None:
    values = unquote(hcl2.loads(path.read_text()))
    declared = set(root.variables)
    required = {v for v, b in root.variables.items() if "default" not in b}
    assert set(values) <= declared, f"unknown variables {set(values) - declared}"
    assert required <= set(values), f"missing required variables {required - set(values)}"


def test_there_are_small_and_large_examples() -> None:
    assert {p.stem for p in TFVARS} >= {"small", "large"}
