variable "name" {
  type        = string
  description = "Name prefix for the VPC and its parts."
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster name, used in the subnet tags the AWS load balancer controller looks for."
}

variable "cidr" {
  type        = string
  description = "CIDR block of the VPC (a /16 is assumed by the subnet arithmetic)."
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones to span, by name (2 or 3), e.g. [\"us-east-1a\", \"us-east-1b\"]."

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "Name 2 or 3 availability zones: Multi-AZ Redis and RDS need at least two."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all zones (cheaper, one zone's outage cuts egress) instead of one per zone."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the flow-log group."
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep VPC flow logs."
}
