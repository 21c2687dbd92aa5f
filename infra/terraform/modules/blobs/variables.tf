variable "name" {
  type        = string
  description = "Name prefix of the buckets."
}

variable "bucket_suffix" {
  type        = string
  description = "Suffix that makes the bucket names globally unique (e.g. the account ID)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for default bucket encryption."
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days before overwritten or deleted object versions are removed."
}

variable "blob_ia_days" {
  type        = number
  description = "Days before image bytes move to STANDARD_IA (S3 requires >= 30)."

  validation {
    condition     = var.blob_ia_days >= 30
    error_message = "S3 allows transitions to STANDARD_IA only after 30 days."
  }
}

variable "blob_retention_days" {
  type        = number
  description = "Days to keep image bytes; null keeps them forever (check your legal retention rules)."
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep S3 access logs."
}
