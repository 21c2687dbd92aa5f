"""Create or update Grafana's Prometheus data source and upload the Cascade dashboard, through
``grafana-client`` (the maintained fork of the archived ``grafana-api``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from services.grafana.dashboard import build_dashboard

DATASOURCE_UID = "cascade-prometheus"
DATASOURCE_NAME = "Cascade Prometheus"


def datasource_payload(prometheus_url: str) -> dict[str, Any]:
    """The Prometheus data source, with a fixed uid so re-provisioning updates it in place."""
    return {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "prometheus",
        "access": "proxy",
        "url": prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }


def dashboard_payload(dashboard: dict[str, Any], folder_uid: str | None = None) -> dict[str, Any]:
    """``POST /api/dashboards/db`` body: overwrite in place (the uid identifies it)."""
    body: dict[str, Any] = {
        "dashboard": {**dashboard, "id": None},
        "overwrite": True,
        "message": "provisioned by `cascade grafana provision`",
    }
    if folder_uid:
        body["folderUid"] = folder_uid
    return body


def upsert_datasource(api: GrafanaApi, prometheus_url: str) -> dict[str, Any]:
    """Update the data source when its uid exists, create it otherwise."""
    payload = datasource_payload(prometheus_url)
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        return dict(api.datasource.create_datasource(payload))
    return dict(api.datasource.update_datasource_by_uid(DATASOURCE_UID, payload))


def provision(
    url: str,
    token: str,
    *,
    prometheus_url: str | None = None,
    folder_uid: str | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Provision Grafana at ``url`` (API token or service-account token) and return what it
    answered. Without ``prometheus_url`` the data source is left as it is."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    result: dict[str, Any] = {}
    if prometheus_url:
        result["datasource"] = upsert_datasource(api, prometheus_url)
    result["dashboard"] = dict(
        api.dashboard.update_dashboard(dashboard_payload(build_dashboard(), folder_uid))
    )
    return result


def export(out: Path) -> Path:
    """Write the dashboard JSON (what kube-prometheus-stack's dashboard sidecar loads)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n")
    return out
