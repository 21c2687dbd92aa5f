# Large deployment: ~50 million images/day (580/s on average, ~1,750/s at peak), three zones,
# a NAT gateway per zone, spot GPU pools that KEDA and the cluster autoscaler grow with the
# queues. Monthly cost: README.md, "Cost".
#   terraform apply -var-file=examples/large.tfvars
region             = "us-east-1"
availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
single_nat_gateway = false

image_tag             = "0.1.0"
public_url            = "https://moderation.example.com"
endpoint_public_cidrs = ["203.0.113.0/24", "198.51.100.0/24"]
admin_principal_arns  = ["arn:aws:iam::123456789012:role/platform-admin"]

system_pool = {
  instance_types = ["m7i.xlarge"]
  min_size       = 3
  max_size       = 10
  disk_gb        = 50
}

gpu_pools = {
  stage1 = { instance_types = ["g4dn.xlarge"], device = "t4", spot = true, min_size = 2, max_size = 12, disk_gb = 100 }
  stage2 = { instance_types = ["g6.xlarge"], device = "l4", spot = true, min_size = 2, max_size = 8, disk_gb = 100 }
}

api = {
  min_replicas       = 3
  max_replicas       = 12
  cpu                = "1"
  memory             = "1Gi"
  target_cpu_percent = 70
}

workers = {
  stage1 = { min_replicas = 2, max_replicas = 12, list_length = 20, resources = { cpu = "3", memory = "12Gi" } }
  stage2 = { min_replicas = 2, max_replicas = 8, list_length = 10, resources = { cpu = "3", memory = "12Gi" } }
  cpu    = { min_replicas = 2, max_replicas = 8, list_length = 100, resources = { cpu = "500m", memory = "512Mi" } }
}

redis_node_type           = "cache.r7g.large"
redis_replicas            = 2
postgres_instance_class   = "db.r6g.xlarge"
postgres_storage_gb       = 200
postgres_max_storage_gb   = 2000
prometheus_storage_gb     = 200
prometheus_retention_days = 30
