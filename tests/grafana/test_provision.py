"""The provisioning code's HTTP requests, against a small fake Grafana on loopback that records
what it is sent and answers like Grafana's HTTP API (no Grafana server can be had here)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from services.cli.grafana import grafana
from services.grafana.dashboard import UID
from services.grafana.provision import DATASOURCE_UID, provision


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "auth": self.headers.get("Authorization"),
            }
        )
        return body

    def do_GET(self) -> None:
        self._record()
        uid = self.path.removeprefix("/api/datasources/uid/")
        if uid in self.server.datasources:
            self._answer(200, self.server.datasources[uid])
        else:
            self._answer(404, {"message": "Data source not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/datasources":
            self.server.datasources[body["uid"]] = {**body, "id": 7}
            self._answer(200, {"id": 7, "message": "Datasource added", "name": body["name"]})
        elif self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            self._answer(
                200,
                {
                    "id": 3,
                    "uid": uid,
                    "status": "success",
                    "version": 1,
                    "url": f"/d/{uid}/cascade",
                },
            )
        else:
            self._answer(404, {"message": "not found"})

    def do_PUT(self) -> None:
        body = self._record()
        uid = self.path.removeprefix("/api/datasources/uid/")
        self.server.datasources[uid] = {**body, "id": 7}
        self._answer(200, {"id": 7, "message": "Datasource updated", "name": body["name"]})


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_first_provision_creates_datasource_then_uploads_dashboard(
    fake_grafana: FakeGrafana,
) -> None:
    result = provision(fake_grafana.url, "tok-123", prometheus_url="http://prometheus:9090")
    calls = [(r["method"], r["path"]) for r in fake_grafana.requests]
    assert calls == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
        ("POST", "/api/dashboards/db"),
    ]
    assert all(r["auth"] == "Bearer tok-123" for r in fake_grafana.requests)
    ds = fake_grafana.requests[1]["body"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert ds["uid"] == DATASOURCE_UID and ds["access"] == "proxy"
    board = fake_grafana.requests[2]["body"]
    assert board["overwrite"] is True
    assert board["dashboard"]["uid"] == UID and board["dashboard"]["id"] is None
    assert len(board["dashboard"]["panels"]) > 10
    assert result["dashboard"]["status"] == "success"


def test_second_provision_updates_in_place(fake_grafana: FakeGrafana) -> None:
    provision(fake_grafana.url, "tok", prometheus_url="http://old:9090")
    fake_grafana.requests.clear()
    provision(fake_grafana.url, "tok", prometheus_url="http://new:9090", folder_uid="ops")
    calls = [(r["method"], r["path"]) for r in fake_grafana.requests]
    assert calls == [
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/dashboards/db"),
    ]
    assert fake_grafana.requests[1]["body"]["url"] == "http://new:9090"
    assert fake_grafana.requests[2]["body"]["folderUid"] == "ops"


def test_cli_provision_without_prometheus_url_only_uploads(fake_grafana: FakeGrafana) -> None:
    result = CliRunner().invoke(grafana, ["provision", "--url", fake_grafana.url, "--token", "t"])
    assert result.exit_code == 0, result.output
    assert [(r["method"], r["path"]) for r in fake_grafana.requests] == [
        ("POST", "/api/dashboards/db")
    ]
    assert json.loads(result.output)["dashboard"]["uid"] == UID


def test_cli_reports_a_refusal(fake_grafana: FakeGrafana) -> None:
    result = CliRunner().invoke(
        grafana, ["provision", "--url", fake_grafana.url + "/nowhere", "--token", "t"]
    )
    assert result.exit_code != 0
    assert "Grafana refused" in result.output
