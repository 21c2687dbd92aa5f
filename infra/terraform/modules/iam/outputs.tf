output "api_role_arn" {
  description = "IAM role of the API service account."
  value       = aws_iam_role.this["api"].arn
}

output "worker_role_arn" {
  description = "IAM role of the worker service account."
  value       = aws_iam_role.this["worker"].arn
}

output "cluster_autoscaler_role_arn" {
  description = "IAM role of the cluster autoscaler."
  value       = aws_iam_role.this["cluster_autoscaler"].arn
}
