"""The README's cost section is the estimator's output, and the estimator sizes the same
deployments as the example tfvars, priced by the project's own cost model."""

from __future__ import annotations

import re

import hcl2
import pytest

from cascade.config import Settings
from cascade.cost import compute_dollars
from infra.cost_estimate import HOURS_PER_MONTH, LARGE, SMALL, Deployment, line_items, render
from tests.infra.infra_hcl import TERRAFORM, unquote

README = TERRAFORM / "README.md"


def test_readme_cost_section_is_the_estimators_output() -> None:
    section = re.search(
        r"<!-- cost:begin[^>]*-->\n(.*?)<!-- cost:end -->", README.read_text(), re.S
    )
    assert section is not None, "README.md lost its cost markers"
    assert section.group(1) == render(), "run infra/cost_estimate.py and paste its output"


@pytest.mark.parametrize("deployment", [SMALL, LARGE], ids=lambda d: d.name)
def test_estimate_sizes_the_example_tfvars(deployment: Deployment) -> None:
    tfvars = unquote(hcl2.loads((TERRAFORM / "examples" / f"{deployment.name}.tfvars").read_text()))
    assert tfvars["system_pool"]["min_size"] == deployment.system_nodes
    assert tfvars["system_pool"]["instance_types"] == [deployment.system_type]
    pools = tfvars["gpu_pools"]
    assert (pools["stage1"]["min_size"], pools["stage2"]["min_size"]) == deployment.gpu_min
    assert (pools["stage1"]["device"], pools["stage2"]["device"]) == ("t4", "l4")
    assert pools["stage1"]["instance_types"] == ["g4dn.xlarge"]
    assert pools["stage2"]["instance_types"] == ["g6.xlarge"]
    assert tfvars["redis_node_type"] == deployment.redis_type
    assert tfvars["redis_replicas"] + 1 == deployment.redis_nodes
    assert tfvars["postgres_instance_class"] == deployment.db_type
    assert tfvars["postgres_storage_gb"] == deployment.db_storage_gb
    assert tfvars["prometheus_storage_gb"] == deployment.prometheus_gb
    nat = 1 if tfvars["single_nat_gateway"] else len(tfvars["availability_zones"])
    assert nat == deployment.nat_gateways


def test_gpu_lines_use_the_projects_device_prices() -> None:
    settings = Settings.model_construct()
    items = {name: value for name, _, value in line_items(SMALL, settings)}
    month = compute_dollars(3600 * HOURS_PER_MONTH, settings.device_price("t4"))
    assert items["Stage-1 GPU (g4dn.xlarge, t4)"] == pytest.approx(month * SMALL.gpu_min[0])
