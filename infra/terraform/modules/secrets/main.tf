# Secrets Manager: the generated credentials and the connection URLs built from them.
# Pods read them through the Secrets Store CSI driver with their own IRSA role (module app),
# so no secret value is written into a Kubernetes manifest by Terraform.
#
# The values are generated here, hence also present in Terraform state: keep the state in an
# encrypted, access-controlled backend (README.md, "State").
resource "random_password" "database" {
  length  = 40
  special = false # it goes into a URL; 40 alphanumerics are ~238 bits
}

resource "random_password" "redis" {
  length  = 64
  special = false # ElastiCache AUTH tokens forbid some symbols; and it goes into a URL
}

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "random_password" "callback_secret" {
  length  = 64
  special = false
}

locals {
  database_url = format(
    "postgresql+psycopg://%s:%s@%s:%d/%s?sslmode=require",
    var.database_username, random_password.database.result,
    var.database_host, var.database_port, var.database_name,
  )
  # Celery's Redis transport needs ssl_cert_reqs on a rediss:// URL.
  redis_base = format(
    "rediss://:%s@%s:%d", random_password.redis.result, var.redis_host, var.redis_port,
  )
  secrets = {
    database = {
      description = "PostgreSQL credentials and URL (CASCADE_DATABASE_URL)"
      value = {
        username = var.database_username
        password = random_password.database.result
        host     = var.database_host
        port     = var.database_port
        dbname   = var.database_name
        url      = local.database_url
      }
    }
    redis = {
      description = "Redis AUTH token and Celery URLs (CASCADE_BROKER_URL, CASCADE_RESULT_BACKEND)"
      value = {
        auth_token     = random_password.redis.result
        broker_url     = "${local.redis_base}/0?ssl_cert_reqs=required"
        result_backend = "${local.redis_base}/1?ssl_cert_reqs=required"
      }
    }
    app = {
      description = "API signing key and callback signing secret (CASCADE_SECRET_KEY, CASCADE_CALLBACK_SECRET)"
      value = {
        secret_key      = random_password.secret_key.result
        callback_secret = random_password.callback_secret.result
      }
    }
  }
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a coordinated roll of the RDS/ElastiCache credential and the pods; rotate by tainting the random_password and re-applying (README.md, "Rotating secrets").
  for_each                = local.secrets
  name                    = "${var.name}/${each.key}"
  description             = each.value.description
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each      = local.secrets
  secret_id     = aws_secretsmanager_secret.this[each.key].id
  secret_string = jsonencode(each.value.value)
}
