output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_data" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "Security group EKS attaches to the control plane and managed nodes; data stores admit it."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA trust)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer" {
  description = "OIDC issuer host/path without the scheme, as used in IRSA trust conditions."
  value       = replace(aws_iam_openid_connect_provider.this.url, "https://", "")
}

output "gpu_pool_labels" {
  description = "Node labels of each GPU pool, keyed by stage."
  value       = { for k, v in local.gpu_pools : k => v.labels }
}

output "node_groups_ready" {
  description = "IDs of all node groups; depend on this before scheduling workloads."
  value       = concat([aws_eks_node_group.system.id], [for g in aws_eks_node_group.gpu : g.id])
}
