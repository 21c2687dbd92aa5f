# Cascade's workloads on the cluster. Processes (the `cascade` console script):
#   api     cascade serve                         Deployment + Service + HPA, behind the migration Job
#   stage1  cascade worker --queues stage1 --pool solo   GPU pool stage1, KEDA on list "stage1"
#   stage2  cascade worker --queues stage2 --pool solo   GPU pool stage2, KEDA on list "stage2"
#   cpu     cascade worker --queues callbacks,maintenance --pool threads   system pool, KEDA on both lists
#   beat    cascade beat                          exactly one replica (periodic retune)
#   migrate cascade db upgrade                    Job, once per image tag, before the API rolls
# Queue names must equal cascade/queues.py and every CASCADE_* name must be a Settings field;
# tests/infra checks both.
locals {
  # Settings defaults (cascade/config.py): port, metrics_port. Changing them here means
  # changing them there; tests/infra compares.
  api_port     = 8000
  metrics_port = 9808

  cpu_image = "${var.image_repository}:${var.image_tag}"
  gpu_image = "${var.image_repository}:${var.image_tag}-gpu"

  # Celery's Redis transport keeps each queue as a Redis list named after the queue; KEDA
  # scales each worker Deployment on the lengths of its queues' lists.
  workers = {
    stage1 = {
      queues       = ["stage1"]
      pool         = "solo" # CUDA cannot be initialised before a prefork fork
      concurrency  = 1
      gpu          = true
      engine       = "tensorrt"
      min_replicas = var.workers.stage1.min_replicas
      max_replicas = var.workers.stage1.max_replicas
      list_length  = var.workers.stage1.list_length
      resources    = var.workers.stage1.resources
    }
    stage2 = {
      queues       = ["stage2"]
      pool         = "solo"
      concurrency  = 1
      gpu          = true
      engine       = "tensorrt"
      min_replicas = var.workers.stage2.min_replicas
      max_replicas = var.workers.stage2.max_replicas
      list_length  = var.workers.stage2.list_length
      resources    = var.workers.stage2.resources
    }
    cpu = {
      queues       = ["callbacks", "maintenance"]
      pool         = "threads" # callbacks are HTTP calls: I/O-bound, threads suffice
      concurrency  = 8
      gpu          = false
      engine       = "onnx"
      min_replicas = var.workers.cpu.min_replicas
      max_replicas = var.workers.cpu.max_replicas
      list_length  = var.workers.cpu.list_length
      resources    = var.workers.cpu.resources
    }
  }

  worker_commands = {
    for name, w in local.workers : name => [
      "cascade", "worker", "--queues", join(",", w.queues),
      "--pool", w.pool, "--concurrency", tostring(w.concurrency),
    ]
  }
  api_command     = ["cascade", "serve"]
  beat_command    = ["cascade", "beat"]
  migrate_command = ["cascade", "db", "upgrade"]

  # Plain settings every process gets.
  common_env = {
    CASCADE_ENV              = "production"
    CASCADE_BLOB_URL         = var.blob_url
    CASCADE_PUBLIC_URL       = var.public_url
    CASCADE_STAGE1_BILLED_AS = var.stage1_device
    CASCADE_STAGE2_BILLED_AS = var.stage2_device
    CASCADE_METRICS_PORT     = tostring(local.metrics_port)
    CASCADE_VAR_DIR          = "/var/cascade"
  }
  api_env = {
    CASCADE_HOST = "0.0.0.0"
    CASCADE_PORT = tostring(local.api_port)
  }
  # Secret settings: env name -> key of the Kubernetes Secret synced from Secrets Manager.
  secret_env = {
    CASCADE_DATABASE_URL    = "database_url"
    CASCADE_BROKER_URL      = "broker_url"
    CASCADE_RESULT_BACKEND  = "result_backend"
    CASCADE_SECRET_KEY      = "secret_key"
    CASCADE_CALLBACK_SECRET = "callback_secret"
  }
  secret_name = "cascade-env"
  spc_name    = "cascade-secrets"
  model_dir   = "/models"

  labels = { "app.kubernetes.io/part-of" = "cascade" }
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name   = var.namespace
    labels = local.labels
  }
}

resource "kubernetes_service_account_v1" "api" {
  metadata {
    name        = var.api_service_account
    namespace   = kubernetes_namespace_v1.this.metadata[0].name
    annotations = { "eks.amazonaws.com/role-arn" = var.api_role_arn }
  }
  automount_service_account_token = false
}

resource "kubernetes_service_account_v1" "worker" {
  metadata {
    name        = var.worker_service_account
    namespace   = kubernetes_namespace_v1.this.metadata[0].name
    annotations = { "eks.amazonaws.com/role-arn" = var.worker_role_arn }
  }
  automount_service_account_token = false
}

# Secrets Manager -> files in each pod (CSI volume) -> the Kubernetes Secret "cascade-env"
# that the pods' env refers to. Each pod fetches with its own IRSA role.
resource "kubernetes_manifest" "secret_provider_class" {
  manifest = {
    apiVersion = "secrets-store.csi.x-k8s.io/v1"
    kind       = "SecretProviderClass"
    metadata = {
      name      = local.spc_name
      namespace = kubernetes_namespace_v1.this.metadata[0].name
    }
    spec = {
      provider = "aws"
      parameters = {
        region = var.region
        objects = yamlencode([
          {
            objectName  = var.secret_names.database
            objectType  = "secretsmanager"
            objectAlias = "database.json"
            jmesPath    = [{ path = "url", objectAlias = "database_url" }]
          },
          {
            objectName  = var.secret_names.redis
            objectType  = "secretsmanager"
            objectAlias = "redis.json"
            jmesPath = [
              { path = "broker_url", objectAlias = "broker_url" },
              { path = "result_backend", objectAlias = "result_backend" },
              { path = "auth_token", objectAlias = "redis_password" },
            ]
          },
          {
            objectName  = var.secret_names.app
            objectType  = "secretsmanager"
            objectAlias = "app.json"
            jmesPath = [
              { path = "secret_key", objectAlias = "secret_key" },
              { path = "callback_secret", objectAlias = "callback_secret" },
            ]
          },
        ])
      }
      secretObjects = [{
        secretName = local.secret_name
        type       = "Opaque"
        data = [
          for key in concat(values(local.secret_env), ["redis_password"]) :
          { objectName = key, key = key }
        ]
      }]
    }
  }
}
