"""Fixtures of the infra tests: the parsed root module and its modules (see infra_hcl)."""

from __future__ import annotations

import pytest

from tests.infra.infra_hcl import MODULES, TERRAFORM, Module, load_module


@pytest.fixture(scope="session")
def root() -> Module:
    return load_module(TERRAFORM)


@pytest.fixture(scope="session")
def modules() -> dict[str, Module]:
    return {p.name: load_module(p) for p in sorted(MODULES.iterdir()) if p.is_dir()}


@pytest.fixture(scope="session")
def app(modules: dict[str, Module]) -> Module:
    return modules["app"]
