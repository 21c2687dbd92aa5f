"""The deployment and the application agree: queue names, setting names, ports, commands,
device types and the image tag. Each fact comes from the application's own code."""

from __future__ import annotations

import importlib
import re

import hcl2
import pytest

from cascade import queues
from cascade.config import Settings
from services.cli import COMMANDS
from tests.infra.infra_hcl import DOCKERFILE, MODULES, TERRAFORM, Module, load_module, unquote

SETTING_NAME = re.compile(r"\bCASCADE_([A-Z0-9_]+)\b")


def test_keda_triggers_cover_exactly_the_celery_queues(app: Module) -> None:
    workers = unquote(app.locals["workers"])
    listed = [q for pool in workers.values() for q in pool["queues"]]
    assert sorted(listed) == sorted(queues.ALL), "each queue is consumed by exactly one pool"
    scaled = app.resource("kubernetes_manifest", "scaled_object")
    assert scaled["for_each"] == "${local.workers}", "one ScaledObject per worker pool"
    triggers = scaled["manifest"]["spec"]["triggers"]
    # One redis trigger per queue of the pool, on the list named after the queue.
    assert "for queue in each.value.queues" in triggers
    assert 'type = "redis"' in triggers and "listName = queue" in triggers


def test_gpu_pools_serve_the_gpu_queues_with_the_solo_pool(app: Module) -> None:
    workers = unquote(app.locals["workers"])
    gpu_queues = sorted(q for w in workers.values() if w["gpu"] for q in w["queues"])
    assert gpu_queues == sorted(queues.GPU_QUEUES)
    for name, worker in workers.items():
        if worker["gpu"]:
            assert worker["pool"] == "solo", f"{name}: CUDA needs the solo pool"
            assert worker["engine"] == "tensorrt"
        else:
            assert worker["engine"] == "onnx"


def test_gpu_stages_keep_a_warm_replica(root: Module) -> None:
    defaults = unquote(root.variables["workers"]["default"])
    for stage in queues.GPU_QUEUES:
        assert defaults[stage]["min_replicas"] >= 1
    for path in sorted((TERRAFORM / "examples").glob("*.tfvars")):
        workers = unquote(hcl2.loads(path.read_text())).get("workers", defaults)
        for stage in queues.GPU_QUEUES:
            assert workers[stage]["min_replicas"] >= 1, f"{path.name}: {stage} cold-starts"


def infra_text() -> str:
    paths = [*sorted(TERRAFORM.rglob("*.tf")), *sorted(TERRAFORM.rglob("*.tfvars")), DOCKERFILE]
    return "\n".join(p.read_text() for p in paths)


def test_every_cascade_env_var_is_a_settings_field() -> None:
    names = set(SETTING_NAME.findall(infra_text()))
    assert len(names) >= 10
    unknown = {f"CASCADE_{n}" for n in names if n.lower() not in Settings.model_fields}
    assert not unknown, f"not Settings fields: {sorted(unknown)}"


def test_pods_get_what_production_settings_require(app: Module) -> None:
    plain = set(unquote(app.locals["common_env"]))
    secret = set(unquote(app.locals["secret_env"]))
    assert unquote(app.locals["common_env"])["CASCADE_ENV"] == "production"
    required = {"BROKER_URL", "DATABASE_URL", "SECRET_KEY", "CALLBACK_SECRET", "BLOB_URL"}
    assert {f"CASCADE_{n}" for n in required} <= plain | secret
    # Secrets never appear as plain values in a manifest.
    assert not {"CASCADE_SECRET_KEY", "CASCADE_CALLBACK_SECRET"} & plain
    api_env = unquote(app.locals["api_env"])
    assert api_env["CASCADE_HOST"] == "0.0.0.0", "the default 127.0.0.1 is unreachable in a pod"


def test_ports_match_the_settings_defaults(app: Module) -> None:
    assert app.locals["api_port"] == Settings.model_fields["port"].default
    assert app.locals["metrics_port"] == Settings.model_fields["metrics_port"].default
    exposed = re.search(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.M)
    assert exposed is not None
    assert set(exposed.group(1).split()) == {
        str(Settings.model_fields["port"].default),
        str(Settings.model_fields["metrics_port"].default),
    }


def test_gpu_devices_are_priced_by_the_cost_model(root: Module) -> None:
    prices = Settings.model_fields["device_prices_per_hour"].default
    pools = root.variables["gpu_pools"]
    allowed = re.search(r"contains\(\[([^\]]+)\], p\.device\)", str(pools["validation"]))
    assert allowed is not None
    assert {unquote(d.strip()) for d in allowed.group(1).split(",")} <= set(prices)
    examples = [
        unquote(hcl2.loads(p.read_text())) for p in sorted(TERRAFORM.glob("examples/*.tfvars"))
    ]
    defaults = unquote(pools["default"])
    for pools_value in [defaults, *(e["gpu_pools"] for e in examples if "gpu_pools" in e)]:
        for stage, pool in pools_value.items():
            assert pool["device"] in prices, f"{stage}: {pool['device']} has no price"


def test_every_image_is_the_release_tag_or_the_pinned_init_image(app: Module) -> None:
    cpu, gpu = unquote(app.locals["cpu_image"]), unquote(app.locals["gpu_image"])
    assert cpu == "${var.image_repository}:${var.image_tag}"
    assert gpu == cpu + "-gpu"
    images = set(re.findall(r"^\s*image\s*=\s*(.+?)\s*$", app.text(), re.M))
    assert images == {
        "local.cpu_image",
        "each.value.gpu ? local.gpu_image : local.cpu_image",
        "var.aws_cli_image",
    }


def test_the_image_tag_flows_from_one_root_variable(root: Module) -> None:
    assert "default" not in root.variables["image_tag"], "a release tag is chosen, not defaulted"
    assert root.module_calls["app"]["image_tag"] == "${var.image_tag}"
    tag_users = [c for c, body in root.module_calls.items() if "image_tag" in body]
    assert tag_users == ["app"]


def test_dockerfile_builds_cpu_and_gpu_variants_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    assert {"cpu", "gpu"} <= targets
    gpu_stage = text.split("AS build-gpu", 1)[1].split("FROM ", 1)[0]
    assert re.search(r'"\.\[[^\]]*tensorrt[^\]]*\]"', gpu_stage), (
        "the GPU variant installs tensorrt"
    )
    assert "s3" in text.split("AS build-cpu", 1)[1].split("FROM ", 1)[0], "blobs on S3 need s3fs"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and all(not u.startswith(("0", "root")) for u in users)
    assert text.rstrip().splitlines()[-1].startswith("USER "), "the final stage runs non-root"


def cascade_commands(app: Module) -> list[list[str]]:
    """Every literal `["cascade", ...]` argv in the app module (up to its first expression)."""
    found = re.findall(r'\[\s*"cascade"\s*,((?:\s*"[^"]*"\s*,?)*)', app.text())
    return [["cascade", *re.findall(r'"([^"]+)"', args)] for args in found]


def test_commands_are_registered_cli_commands(app: Module) -> None:
    commands = cascade_commands(app)
    names = {argv[1] for argv in commands}
    assert names == {"serve", "worker", "beat", "db"}
    assert names <= set(COMMANDS), f"unknown CLI commands: {names - set(COMMANDS)}"
    assert ["cascade", "db", "upgrade"] in commands
    worker_argv = next(argv for argv in commands if argv[1] == "worker")
    assert worker_argv == ["cascade", "worker", "--queues"], "queues come from locals.workers"


def test_worker_and_db_options_exist_in_the_cli() -> None:
    """Deeper check, once the commands' modules exist: the options the pods pass are real."""
    try:
        worker = getattr(importlib.import_module(COMMANDS["worker"][0]), COMMANDS["worker"][1])
        db = getattr(importlib.import_module(COMMANDS["db"][0]), COMMANDS["db"][1])
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"CLI module not importable yet: {exc}")
    options = {opt for param in worker.params for opt in getattr(param, "opts", [])}
    assert {"--queues", "--pool", "--concurrency"} <= options
    pool_choices = next(p.type.choices for p in worker.params if "--pool" in p.opts)
    workers = unquote(load_module(MODULES / "app").locals["workers"])
    assert {w["pool"] for w in workers.values()} <= set(pool_choices)
    assert "upgrade" in getattr(db, "commands", {})
