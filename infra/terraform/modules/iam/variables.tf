variable "name" {
  type        = string
  description = "Name prefix of the roles."
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster whose node groups the autoscaler may resize."
}

variable "oidc_provider_arn" {
  type        = string
  description = "ARN of the cluster's IAM OIDC provider."
}

variable "oidc_issuer" {
  type        = string
  description = "OIDC issuer without https:// (trust-policy condition key prefix)."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of Cascade's workloads."
}

variable "api_service_account" {
  type        = string
  description = "Service account of the API (and the migration job)."
}

variable "worker_service_account" {
  type        = string
  description = "Service account of the workers and beat."
}

variable "bucket_arn" {
  type        = string
  description = "ARN of the blob bucket."
}

variable "secret_arns" {
  type        = map(string)
  description = "Secrets Manager ARNs the application may read."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key the bucket and secrets are encrypted with."
}
