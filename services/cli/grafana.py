"""`cascade grafana`: the Grafana dashboard as code — export its JSON, provision a Grafana."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("grafana")
def grafana() -> None:
    """Grafana dashboard as code and provisioning."""


@grafana.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("infra/grafana/cascade.json"),
    show_default=True,
)
def export_cmd(out: Path) -> None:
    """Write the dashboard JSON (Terraform provisions it into kube-prometheus-stack)."""
    from services.grafana.provision import export

    click.echo(f"wrote {export(out)}")


@grafana.command("provision")
@click.option("--url", required=True, envvar="CASCADE_GRAFANA_URL", help="Grafana base URL.")
@click.option(
    "--token", required=True, envvar="CASCADE_GRAFANA_TOKEN", help="Service-account token."
)
@click.option("--prometheus-url", default=None, help="Create/update the Prometheus data source.")
@click.option("--folder-uid", default=None, help="Put the dashboard in this folder.")
def provision_cmd(url: str, token: str, prometheus_url: str | None, folder_uid: str | None) -> None:
    """Create or update the data source and upload the dashboard."""
    from grafana_client.client import GrafanaException

    from services.grafana.provision import provision

    try:
        result = provision(url, token, prometheus_url=prometheus_url, folder_uid=folder_uid)
    except GrafanaException as exc:
        raise click.ClickException(f"Grafana refused: {exc}") from exc
    click.echo(json.dumps(result, indent=2))
