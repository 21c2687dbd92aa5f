# Prometheus scrapes the API's /metrics through its Service and each worker's metrics port
# directly (workers have no Service). Grafana's sidecar loads the dashboard ConfigMap by label.
resource "kubernetes_manifest" "api_monitor" {
  manifest = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "ServiceMonitor"
    metadata = {
      name      = "cascade-api"
      namespace = kubernetes_namespace_v1.this.metadata[0].name
    }
    spec = {
      selector  = { matchLabels = { "app.kubernetes.io/name" = "cascade-api" } }
      endpoints = [{ port = "http", path = "/metrics", interval = "15s" }]
    }
  }
}

resource "kubernetes_manifest" "worker_monitor" {
  manifest = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PodMonitor"
    metadata = {
      name      = "cascade-workers"
      namespace = kubernetes_namespace_v1.this.metadata[0].name
    }
    spec = {
      selector            = { matchLabels = { "app.kubernetes.io/component" = "worker" } }
      podMetricsEndpoints = [{ port = "metrics", path = "/metrics", interval = "15s" }]
    }
  }
}

# Written by `cascade grafana export` (services/grafana). Absent file: no ConfigMap, and the
# output grafana_dashboard_provisioned says so, rather than failing the whole apply.
resource "kubernetes_config_map_v1" "dashboard" {
  count = fileexists(var.grafana_dashboard_json_path) ? 1 : 0

  metadata {
    name      = "cascade-dashboard"
    namespace = var.monitoring_namespace
    labels    = { grafana_dashboard = "1" }
  }

  data = {
    "cascade.json" = file(var.grafana_dashboard_json_path)
  }
}
