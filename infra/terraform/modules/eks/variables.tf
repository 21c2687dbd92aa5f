variable "cluster_name" {
  type        = string
  description = "Name of the EKS cluster."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the control plane, e.g. \"1.32\"."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets for the control plane's network interfaces and the nodes."
}

variable "endpoint_public_access" {
  type        = bool
  description = "Expose the Kubernetes API endpoint publicly (restricted to endpoint_public_cidrs)."
}

variable "endpoint_public_cidrs" {
  type        = list(string)
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (your office/VPN/CI egress)."

  validation {
    condition     = !contains(var.endpoint_public_cidrs, "0.0.0.0/0")
    error_message = "Do not open the Kubernetes API to 0.0.0.0/0; list your office, VPN or CI egress CIDRs."
  }
}

variable "admin_principal_arns" {
  type        = list(string)
  description = "IAM roles/users given cluster-admin through EKS access entries (the creator is added automatically)."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for Kubernetes secrets envelope encryption and the control-plane log group."
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep control-plane logs."
}

variable "system_pool" {
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    disk_gb        = number
  })
  description = "CPU node group for the API, CPU workers, beat, monitoring and add-ons (on-demand)."
}

variable "gpu_pools" {
  type = map(object({
    instance_types = list(string)
    spot           = bool
    min_size       = number
    max_size       = number
    disk_gb        = number
  }))
  description = "GPU node groups keyed by Cascade stage (\"stage1\", \"stage2\"); spot = true allows spot capacity."

  validation {
    condition     = alltrue([for k in keys(var.gpu_pools) : contains(["stage1", "stage2"], k)])
    error_message = "gpu_pools keys must be Cascade GPU stages: stage1, stage2."
  }
}
