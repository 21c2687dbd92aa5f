output "namespace" {
  description = "Namespace of Cascade's workloads."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}

output "api_service" {
  description = "In-cluster address of the API."
  value       = "${kubernetes_service_v1.api.metadata[0].name}.${kubernetes_namespace_v1.this.metadata[0].name}.svc:80"
}

output "images" {
  description = "Images the pods run (CPU and GPU variants of one tag)."
  value       = { cpu = local.cpu_image, gpu = local.gpu_image }
}

output "grafana_dashboard_provisioned" {
  description = "Whether the dashboard JSON existed and was provisioned."
  value       = length(kubernetes_config_map_v1.dashboard) > 0
}
