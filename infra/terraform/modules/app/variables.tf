variable "namespace" {
  type        = string
  description = "Kubernetes namespace for Cascade's workloads."
}

variable "region" {
  type        = string
  description = "AWS region of the secrets (Secrets Store CSI provider)."
}

variable "image_repository" {
  type        = string
  description = "Container repository (no tag), e.g. the ECR repository URL."
}

variable "image_tag" {
  type        = string
  description = "Release tag: CPU pods run <repository>:<tag>, GPU workers <repository>:<tag>-gpu."
}

variable "aws_cli_image" {
  type        = string
  description = "Image of the init container that copies model files from S3 (pinned tag)."
}

variable "api_service_account" {
  type        = string
  description = "Service account name of the API and the migration job."
}

variable "worker_service_account" {
  type        = string
  description = "Service account name of the workers and beat."
}

variable "api_role_arn" {
  type        = string
  description = "IRSA role of the API service account."
}

variable "worker_role_arn" {
  type        = string
  description = "IRSA role of the worker service account."
}

variable "secret_names" {
  type        = map(string)
  description = "Secrets Manager names keyed by database, redis, app (module secrets)."
}

variable "redis_host" {
  type        = string
  description = "Redis primary endpoint (KEDA triggers)."
}

variable "redis_port" {
  type        = number
  description = "Redis port (KEDA triggers)."
}

variable "blob_url" {
  type        = string
  description = "CASCADE_BLOB_URL: fsspec URL of the image store, s3://bucket/blobs."
}

variable "models_url" {
  type        = string
  description = "S3 URL the workers copy model files from, s3://bucket/models."
}

variable "public_url" {
  type        = string
  description = "CASCADE_PUBLIC_URL: the URL users reach the API at (signed links, callbacks)."
}

variable "stage1_device" {
  type        = string
  description = "Device type of the stage-1 pool; the pods are billed as it (CASCADE_STAGE1_BILLED_AS, a key of Settings.device_prices_per_hour)."
}

variable "stage2_device" {
  type        = string
  description = "Device type of the stage-2 pool; the pods are billed as it (CASCADE_STAGE2_BILLED_AS, a key of Settings.device_prices_per_hour)."
}

variable "api" {
  type = object({
    min_replicas       = number
    max_replicas       = number
    cpu                = string
    memory             = string
    target_cpu_percent = number
  })
  description = "API Deployment size and HPA bounds."
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
  description = "Per worker pool (stage1, stage2, cpu): KEDA bounds, target messages per replica, pod resources."

  validation {
    condition     = toset(keys(var.workers)) == toset(["stage1", "stage2", "cpu"])
    error_message = "workers must have exactly the pools stage1, stage2 and cpu."
  }

  validation {
    condition     = var.workers.stage1.min_replicas >= 1 && var.workers.stage2.min_replicas >= 1
    error_message = "GPU stages keep at least one warm replica (cold starts take minutes)."
  }
}

variable "worker_grace_seconds" {
  type        = number
  description = "Seconds a worker gets to finish its batch on shutdown (spot reclaim gives 120)."
}

variable "monitoring_namespace" {
  type        = string
  description = "Namespace of kube-prometheus-stack (the dashboard ConfigMap goes there)."
}

variable "grafana_dashboard_json_path" {
  type        = string
  description = "Path of the dashboard JSON written by `cascade grafana export`; skipped if the file is absent."
}
