output "region" {
  description = "AWS region of the deployment."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <this>)."
  value       = module.eks.cluster_name
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "image_repository" {
  description = "Where to push the Cascade image (tags <image_tag> and <image_tag>-gpu)."
  value       = local.image_repository
}

output "images" {
  description = "Images the pods run."
  value       = module.app.images
}

output "blob_bucket" {
  description = "S3 bucket of image bytes (blobs/) and model files (models/)."
  value       = module.blobs.bucket
}

output "models_url" {
  description = "Upload exported model files here; workers copy them at start."
  value       = module.blobs.models_url
}

output "redis_endpoint" {
  description = "Redis primary endpoint (TLS, AUTH)."
  value       = module.redis.primary_endpoint
}

output "postgres_address" {
  description = "PostgreSQL host name (private)."
  value       = module.postgres.address
}

output "secret_names" {
  description = "Secrets Manager names of the generated credentials."
  value       = module.secrets.secret_names
}

output "api_service" {
  description = "In-cluster address of the API (put your ingress or load balancer in front)."
  value       = module.app.api_service
}

output "grafana_admin_secret" {
  description = "Kubernetes Secret (monitoring namespace) with Grafana's admin login."
  value       = module.addons.grafana_admin_secret
}

output "grafana_dashboard_provisioned" {
  description = "False when the dashboard JSON did not exist at apply time (run `cascade grafana export`, re-apply)."
  value       = module.app.grafana_dashboard_provisioned
}
