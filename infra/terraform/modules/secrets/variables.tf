variable "name" {
  type        = string
  description = "Prefix of the secret names: <name>/database, <name>/redis, <name>/app."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the secrets."
}

variable "recovery_window_days" {
  type        = number
  description = "Days a deleted secret can still be restored."
}

variable "database_username" {
  type        = string
  description = "PostgreSQL user Cascade connects as."
}

variable "database_name" {
  type        = string
  description = "PostgreSQL database name."
}

variable "database_host" {
  type        = string
  description = "PostgreSQL host name (from module postgres)."
}

variable "database_port" {
  type        = number
  description = "PostgreSQL port."
}

variable "redis_host" {
  type        = string
  description = "Redis primary endpoint (from module redis)."
}

variable "redis_port" {
  type        = number
  description = "Redis port."
}
