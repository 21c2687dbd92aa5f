# Cascade on AWS: VPC -> EKS (CPU system pool, one GPU pool per stage) -> Redis, Postgres, S3,
# Secrets Manager -> IRSA roles -> cluster add-ons (KEDA, Prometheus, CSI) -> the workloads.
# The first apply is staged (README.md, "Apply"): the Kubernetes resources need the cluster,
# and the workloads need the add-ons' CRDs.
data "aws_caller_identity" "current" {}

locals {
  cluster_name           = var.name
  api_service_account    = "cascade-api"
  worker_service_account = "cascade-worker"
  database_name          = "cascade"
  database_username      = "cascade"
  image_repository       = coalesce(var.image_repository, module.registry.repository_url)
  dashboard_path         = coalesce(var.grafana_dashboard_json_path, "${path.module}/../grafana/cascade.json")
}

module "kms" {
  source = "./modules/kms"
  name   = var.name
}

module "network" {
  source             = "./modules/network"
  name               = var.name
  cluster_name       = local.cluster_name
  cidr               = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
}

module "eks" {
  source                 = "./modules/eks"
  cluster_name           = local.cluster_name
  kubernetes_version     = var.kubernetes_version
  private_subnet_ids     = module.network.private_subnet_ids
  endpoint_public_access = var.endpoint_public_access
  endpoint_public_cidrs  = var.endpoint_public_cidrs
  admin_principal_arns   = var.admin_principal_arns
  kms_key_arn            = module.kms.key_arn
  log_retention_days     = var.log_retention_days
  system_pool            = var.system_pool
  gpu_pools = {
    for stage, pool in var.gpu_pools : stage => {
      instance_types = pool.instance_types
      spot           = pool.spot
      min_size       = pool.min_size
      max_size       = pool.max_size
      disk_gb        = pool.disk_gb
    }
  }
}

module "registry" {
  source      = "./modules/registry"
  name        = var.name
  kms_key_arn = module.kms.key_arn
  keep_images = var.ecr_keep_images
}

module "secrets" {
  source               = "./modules/secrets"
  name                 = var.name
  kms_key_arn          = module.kms.key_arn
  recovery_window_days = var.secret_recovery_days
  database_username    = local.database_username
  database_name        = local.database_name
  database_host        = module.postgres.address
  database_port        = module.postgres.port
  redis_host           = module.redis.primary_endpoint
  redis_port           = module.redis.port
}

module "redis" {
  source                   = "./modules/redis"
  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.cluster_security_group_id
  node_type                = var.redis_node_type
  replicas                 = var.redis_replicas
  engine_version           = var.redis_engine_version
  auth_token               = module.secrets.redis_auth_token
  kms_key_arn              = module.kms.key_arn
  snapshot_retention_days  = var.backup_retention_days
  log_retention_days       = var.log_retention_days
}

module "postgres" {
  source                   = "./modules/postgres"
  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.private_subnet_ids
  client_security_group_id = module.eks.cluster_security_group_id
  engine_version           = var.postgres_engine_version
  instance_class           = var.postgres_instance_class
  allocated_storage_gb     = var.postgres_storage_gb
  max_allocated_storage_gb = var.postgres_max_storage_gb
  multi_az                 = var.postgres_multi_az
  database                 = local.database_name
  username                 = local.database_username
  password                 = module.secrets.database_password
  iam_auth                 = var.postgres_iam_auth
  backup_retention_days    = var.backup_retention_days
  kms_key_arn              = module.kms.key_arn
}

module "blobs" {
  source                  = "./modules/blobs"
  name                    = var.name
  bucket_suffix           = data.aws_caller_identity.current.account_id
  kms_key_arn             = module.kms.key_arn
  noncurrent_version_days = var.noncurrent_version_days
  blob_ia_days            = var.blob_ia_days
  blob_retention_days     = var.blob_retention_days
  log_retention_days      = var.log_retention_days
}

module "iam" {
  source                 = "./modules/iam"
  name                   = var.name
  cluster_name           = module.eks.cluster_name
  oidc_provider_arn      = module.eks.oidc_provider_arn
  oidc_issuer            = module.eks.oidc_issuer
  namespace              = var.namespace
  api_service_account    = local.api_service_account
  worker_service_account = local.worker_service_account
  bucket_arn             = module.blobs.bucket_arn
  secret_arns            = module.secrets.secret_arns
  kms_key_arn            = module.kms.key_arn
}

module "addons" {
  source                      = "./modules/addons"
  region                      = var.region
  cluster_name                = module.eks.cluster_name
  cluster_autoscaler_role_arn = module.iam.cluster_autoscaler_role_arn
  kms_key_arn                 = module.kms.key_arn
  monitoring_namespace        = var.monitoring_namespace
  prometheus_retention_days   = var.prometheus_retention_days
  prometheus_storage_gb       = var.prometheus_storage_gb

  depends_on = [module.eks]
}

module "app" {
  source                      = "./modules/app"
  namespace                   = var.namespace
  region                      = var.region
  image_repository            = local.image_repository
  image_tag                   = var.image_tag
  aws_cli_image               = var.aws_cli_image
  api_service_account         = local.api_service_account
  worker_service_account      = local.worker_service_account
  api_role_arn                = module.iam.api_role_arn
  worker_role_arn             = module.iam.worker_role_arn
  secret_names                = module.secrets.secret_names
  redis_host                  = module.redis.primary_endpoint
  redis_port                  = module.redis.port
  blob_url                    = module.blobs.blob_url
  models_url                  = module.blobs.models_url
  public_url                  = var.public_url
  stage1_device               = var.gpu_pools.stage1.device
  stage2_device               = var.gpu_pools.stage2.device
  api                         = var.api
  workers                     = var.workers
  worker_grace_seconds        = var.worker_grace_seconds
  monitoring_namespace        = module.addons.monitoring_namespace
  grafana_dashboard_json_path = local.dashboard_path

  depends_on = [module.addons]
}
