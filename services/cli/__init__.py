"""The `cascade` command line. Subcommands live in modules of this package and load lazily,
so `cascade --help` is fast and a broken optional part cannot take the whole CLI down."""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("services.cli.ml", "data", "Generate the synthetic moderation data set."),
    "train": ("services.cli.ml", "train", "Train a stage model on an image folder."),
    "export": ("services.cli.ml", "export", "Export a trained stage: ONNX, INT8, TensorRT."),
    "models": ("services.cli.stages", "models_group", "Import an external classifier as a stage."),
    "distill": (
        "services.cli.stages",
        "distill",
        "Train a stage-1 screener from a stage-2 teacher's scores, no labels needed.",
    ),
    "bench": ("services.cli.bench", "bench", "Benchmarks that write reports with plots."),
    "up": ("services.cli.run", "up", "Start the whole stack on this machine."),
    "demo": ("services.cli.run", "demo", "Train or reuse demo models, run traffic, summarise."),
    "serve": ("services.cli.run", "serve", "Run the web app (API, review UI, dashboard)."),
    "worker": ("services.cli.run", "worker", "Run a Celery worker for some queues."),
    "beat": (
        "services.cli.run",
        "beat",
        "Run the periodic scheduler (retune, checks, sweeps, gauges).",
    ),
    "db": ("services.cli.admin", "db", "Database migrations."),
    "keys": ("services.cli.admin", "keys", "Create and revoke API keys."),
    "users": ("services.cli.users", "users", "Create and manage moderator accounts."),
    "retune": ("services.cli.feedback", "retune", "Propose (and maybe activate) new thresholds."),
    "thresholds": ("services.cli.feedback", "thresholds", "List, activate, roll back thresholds."),
    "grafana": ("services.cli.grafana", "grafana", "Grafana dashboard as code and provisioning."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when run (``commands`` maps the names)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return None
        module, attr, _ = self.lazy[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        return command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: Any) -> None:
        # Short help without importing every module (torch takes seconds to import).
        rows = [(name, self.lazy[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="cascade-moderation")
def main() -> None:
    """Cascade: moderate images with a cheap screener, an expensive second stage and humans,
    at the lowest cost per image under a bound on the miss rate.

    Settings come from CASCADE_* environment variables (see the README).
    """
