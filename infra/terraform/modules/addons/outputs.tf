output "monitoring_namespace" {
  description = "Namespace of Prometheus and Grafana (the dashboard ConfigMap goes here)."
  value       = kubernetes_namespace_v1.monitoring.metadata[0].name
}

output "grafana_admin_secret" {
  description = "Kubernetes Secret (in the monitoring namespace) holding Grafana's admin login."
  value       = kubernetes_secret_v1.grafana_admin.metadata[0].name
}

output "ready" {
  description = "Release IDs; depend on this before creating resources of the charts' CRDs."
  value = [
    helm_release.keda.id,
    helm_release.prometheus.id,
    helm_release.csi_aws.id,
    helm_release.nvidia_device_plugin.id,
    helm_release.cluster_autoscaler.id,
    helm_release.metrics_server.id,
  ]
}
