# --- where and what --------------------------------------------------------------------------

variable "region" {
  type        = string
  description = "AWS region to deploy into."
  default     = "us-east-1"
}

variable "name" {
  type        = string
  description = "Name prefix of every resource (cluster, buckets, secrets, roles)."
  default     = "cascade"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 lower-case letters, digits or dashes, starting with a letter (it ends up in bucket names)."
  }
}

variable "environment" {
  type        = string
  description = "Environment tag (production, staging...)."
  default     = "production"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every AWS resource (cost centre, owner...)."
  default     = {}
}

# --- release ---------------------------------------------------------------------------------

variable "image_repository" {
  type        = string
  description = "Repository of the Cascade image without a tag; null uses the ECR repository this configuration creates."
  default     = null
}

variable "image_tag" {
  type        = string
  description = "Release tag of the Cascade image: CPU pods run <tag>, GPU workers <tag>-gpu (see Dockerfile). The ECR repository's tags are immutable."

  validation {
    condition     = length(var.image_tag) > 0 && var.image_tag != "latest"
    error_message = "image_tag must name a release (e.g. a version or git SHA), not \"latest\": tags are immutable."
  }
}

variable "aws_cli_image" {
  type        = string
  description = "AWS CLI image of the workers' init container that copies model files from S3."
  default     = "public.ecr.aws/aws-cli/aws-cli:2.22.0"
}

variable "public_url" {
  type        = string
  description = "CASCADE_PUBLIC_URL: the URL clients reach the API at (behind your ingress/load balancer)."
}

# --- network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC (/16)."
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones to span, by name (2 or 3; they must be in var.region)."
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway instead of one per zone: cheaper, but one zone's outage cuts egress."
  default     = false
}

# --- cluster ---------------------------------------------------------------------------------

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes version."
  default     = "1.32"
}

variable "endpoint_public_access" {
  type        = bool
  description = "Expose the Kubernetes API publicly (restricted to endpoint_public_cidrs); false needs a VPN/bastion for kubectl and Terraform."
  default     = true
}

variable "endpoint_public_cidrs" {
  type        = list(string)
  description = "CIDRs that may reach the public Kubernetes API (office, VPN, CI egress). Never 0.0.0.0/0."
}

variable "admin_principal_arns" {
  type        = list(string)
  description = "Extra IAM principals with cluster-admin (the identity that applies is added automatically)."
  default     = []
}

variable "system_pool" {
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    disk_gb        = number
  })
  description = "CPU node group: API, CPU workers, beat, monitoring, add-ons."
  default = {
    instance_types = ["m7i.xlarge"]
    min_size       = 2
    max_size       = 6
    disk_gb        = 50
  }
}

variable "gpu_pools" {
  type = map(object({
    instance_types = list(string)
    device         = string
    spot           = bool
    min_size       = number
    max_size       = number
    disk_gb        = number
  }))
  description = "GPU node groups keyed by stage (stage1, stage2). device is the Cascade device type priced in Settings.device_prices_per_hour (t4 = g4dn, a10g = g5, l4 = g6, a100 = p4d per GPU, h100 = p5 per GPU)."
  default = {
    stage1 = {
      instance_types = ["g4dn.xlarge"]
      device         = "t4"
      spot           = true
      min_size       = 1
      max_size       = 4
      disk_gb        = 100
    }
    stage2 = {
      instance_types = ["g6.xlarge"]
      device         = "l4"
      spot           = true
      min_size       = 1
      max_size       = 4
      disk_gb        = 100
    }
  }

  validation {
    condition     = toset(keys(var.gpu_pools)) == toset(["stage1", "stage2"])
    error_message = "gpu_pools must define exactly stage1 and stage2."
  }

  validation {
    # The device types Settings.device_prices_per_hour prices (cascade/config.py; tests/infra checks).
    condition     = alltrue([for p in values(var.gpu_pools) : contains(["t4", "a10g", "l4", "a100", "h100"], p.device)])
    error_message = "gpu_pools[*].device must be a GPU device type priced in cascade/config.py: t4, a10g, l4, a100, h100."
  }
}

# --- workloads -------------------------------------------------------------------------------

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of Cascade's workloads."
  default     = "cascade"
}

variable "api" {
  type = object({
    min_replicas       = number
    max_replicas       = number
    cpu                = string
    memory             = string
    target_cpu_percent = number
  })
  description = "API Deployment: HPA bounds, per-pod CPU/memory, target CPU utilisation."
  default = {
    min_replicas       = 2
    max_replicas       = 8
    cpu                = "1"
    memory             = "1Gi"
    target_cpu_percent = 70
  }
}

variable "workers" {
  type = map(object({
    min_replicas = number
    max_replicas = number
    list_length  = number
    resources = object({
      cpu    = string
      memory = string
    })
  }))
  description = "Worker pools (stage1, stage2, cpu): KEDA min/max replicas, target waiting messages per replica (list_length), pod resources. GPU stages need min_replicas >= 1."
  default = {
    stage1 = { min_replicas = 1, max_replicas = 4, list_length = 20, resources = { cpu = "3", memory = "12Gi" } }
    stage2 = { min_replicas = 1, max_replicas = 4, list_length = 10, resources = { cpu = "3", memory = "12Gi" } }
    cpu    = { min_replicas = 1, max_replicas = 4, list_length = 100, resources = { cpu = "500m", memory = "512Mi" } }
  }
}

variable "worker_grace_seconds" {
  type        = number
  description = "Seconds a worker may take to finish its batch on shutdown (spot reclaim warns 120 s ahead)."
  default     = 100
}

# --- data stores -----------------------------------------------------------------------------

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type of the broker."
  default     = "cache.t4g.medium"
}

variable "redis_replicas" {
  type        = number
  description = "Redis replicas besides the primary (>= 1: Multi-AZ failover)."
  default     = 1
}

variable "redis_engine_version" {
  type        = string
  description = "Redis engine version."
  default     = "7.1"
}

variable "postgres_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.medium"
}

variable "postgres_engine_version" {
  type        = string
  description = "PostgreSQL engine version."
  default     = "16.4"
}

variable "postgres_storage_gb" {
  type        = number
  description = "Initial RDS storage (GiB)."
  default     = 50
}

variable "postgres_max_storage_gb" {
  type        = number
  description = "RDS storage autoscaling ceiling (GiB)."
  default     = 500
}

variable "postgres_multi_az" {
  type        = bool
  description = "Synchronous standby in a second zone."
  default     = true
}

variable "postgres_iam_auth" {
  type        = bool
  description = "Also enable IAM database authentication (for people and tools; Cascade itself uses the generated password)."
  default     = true
}

variable "backup_retention_days" {
  type        = number
  description = "Days of RDS automated backups and Redis snapshots."
  default     = 14
}

variable "blob_ia_days" {
  type        = number
  description = "Days before image bytes move to S3 STANDARD_IA (>= 30)."
  default     = 30
}

variable "blob_retention_days" {
  type        = number
  description = "Days to keep image bytes; null keeps them (check legal retention rules)."
  default     = null
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days before overwritten/deleted S3 object versions are removed."
  default     = 30
}

variable "secret_recovery_days" {
  type        = number
  description = "Days a deleted Secrets Manager secret can be restored."
  default     = 30
}

# --- monitoring and logs ---------------------------------------------------------------------

variable "monitoring_namespace" {
  type        = string
  description = "Namespace of kube-prometheus-stack."
  default     = "monitoring"
}

variable "grafana_dashboard_json_path" {
  type        = string
  description = "Dashboard JSON written by `cascade grafana export`; null means infra/grafana/cascade.json. Skipped (with output grafana_dashboard_provisioned = false) if absent."
  default     = null
}

variable "prometheus_retention_days" {
  type        = number
  description = "Days Prometheus keeps samples."
  default     = 15
}

variable "prometheus_storage_gb" {
  type        = number
  description = "Prometheus volume size (GiB)."
  default     = 100
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep CloudWatch logs (VPC flow, EKS control plane, Redis slow log) and S3 access logs."
  default     = 365
}

variable "ecr_keep_images" {
  type        = number
  description = "Images kept in the ECR repository (CPU and GPU variants count separately)."
  default     = 50
}
