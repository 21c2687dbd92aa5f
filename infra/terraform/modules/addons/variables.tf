variable "region" {
  type        = string
  description = "AWS region (for the cluster autoscaler)."
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster name (cluster-autoscaler auto-discovery)."
}

variable "cluster_autoscaler_role_arn" {
  type        = string
  description = "IRSA role of the cluster autoscaler."
}

variable "monitoring_namespace" {
  type        = string
  description = "Namespace of kube-prometheus-stack."
}

variable "prometheus_retention_days" {
  type        = number
  description = "Days Prometheus keeps samples."
}

variable "prometheus_storage_gb" {
  type        = number
  description = "Size of Prometheus's EBS volume in GiB."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for the encrypted EBS StorageClass."
}
