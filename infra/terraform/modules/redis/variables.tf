variable "name" {
  type        = string
  description = "Replication group ID and name prefix."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the replication group."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets (at least two zones) for the primary and its replicas."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group allowed to connect (the EKS cluster security group)."
}

variable "node_type" {
  type        = string
  description = "ElastiCache node type, e.g. cache.t4g.medium or cache.r7g.large."
}

variable "replicas" {
  type        = number
  description = "Read replicas besides the primary (>= 1 for Multi-AZ failover)."

  validation {
    condition     = var.replicas >= 1
    error_message = "Multi-AZ automatic failover needs at least one replica."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis engine version (parameter group family redis7)."
}

variable "auth_token" {
  type        = string
  sensitive   = true
  description = "Redis AUTH token (16-128 printable characters, no @, \", /)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for encryption at rest and the slow-log group."
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days of daily snapshots to keep."
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep the slow log."
}
