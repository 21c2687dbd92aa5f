# Small deployment: ~1 million images/day (12/s on average, ~35/s at peak), one GPU node per
# stage, two zones, one NAT gateway. Monthly cost: README.md, "Cost".
#   terraform apply -var-file=examples/small.tfvars
region             = "us-east-1"
availability_zones = ["us-east-1a", "us-east-1b"]
single_nat_gateway = true

image_tag             = "0.1.0"
public_url            = "https://moderation.example.com"
endpoint_public_cidrs = ["203.0.113.0/24"] # your office / VPN / CI egress

system_pool = {
  instance_types = ["m7i.large"]
  min_size       = 2
  max_size       = 4
  disk_gb        = 50
}

gpu_pools = {
  stage1 = { instance_types = ["g4dn.xlarge"], device = "t4", spot = true, min_size = 1, max_size = 2, disk_gb = 100 }
  stage2 = { instance_types = ["g6.xlarge"], device = "l4", spot = true, min_size = 1, max_size = 2, disk_gb = 100 }
}

api = {
  min_replicas       = 2
  max_replicas       = 4
  cpu                = "500m"
  memory             = "1Gi"
  target_cpu_percent = 70
}

workers = {
  stage1 = { min_replicas = 1, max_replicas = 2, list_length = 20, resources = { cpu = "3", memory = "12Gi" } }
  stage2 = { min_replicas = 1, max_replicas = 2, list_length = 10, resources = { cpu = "3", memory = "12Gi" } }
  cpu    = { min_replicas = 1, max_replicas = 2, list_length = 100, resources = { cpu = "250m", memory = "512Mi" } }
}

redis_node_type         = "cache.t4g.medium"
redis_replicas          = 1
postgres_instance_class = "db.t4g.medium"
postgres_storage_gb     = 50
postgres_max_storage_gb = 200
prometheus_storage_gb   = 50
