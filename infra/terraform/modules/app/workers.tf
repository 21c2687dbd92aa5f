# Celery workers: one Deployment per pool, scaled by KEDA on the Redis list length of its queues.
resource "kubernetes_deployment_v1" "worker" {
  #checkov:skip=CKV_K8S_35:Cascade reads settings only from CASCADE_* environment variables (pydantic-settings); the values come from a Secret synced from Secrets Manager, never from the manifest.
  #checkov:skip=CKV_K8S_43:Images are referenced by tag in an ECR repository with IMMUTABLE tags, which pins content as a digest would.
  for_each = local.workers

  metadata {
    name      = "cascade-worker-${each.key}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels = merge(local.labels, {
      "app.kubernetes.io/name"      = "cascade-worker-${each.key}"
      "app.kubernetes.io/component" = "worker"
    })
  }

  spec {
    replicas = each.value.min_replicas

    selector {
      match_labels = { "app.kubernetes.io/name" = "cascade-worker-${each.key}" }
    }

    template {
      metadata {
        labels = merge(local.labels, {
          "app.kubernetes.io/name"      = "cascade-worker-${each.key}"
          "app.kubernetes.io/component" = "worker"
          "cascade.io/pool"             = each.key
        })
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.worker.metadata[0].name
        automount_service_account_token  = false
        termination_grace_period_seconds = var.worker_grace_seconds
        node_selector                    = { "cascade.io/pool" = each.value.gpu ? each.key : "system" }

        dynamic "toleration" {
          for_each = each.value.gpu ? { "nvidia.com/gpu" = "true", "cascade.io/stage" = each.key } : {}
          content {
            key      = toleration.key
            operator = "Equal"
            value    = toleration.value
            effect   = "NoSchedule"
          }
        }

        security_context {
          run_as_non_root = true
          run_as_user     = 10001
          run_as_group    = 10001
          fs_group        = 10001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        # Model files come from s3://<bucket>/models at start (per stage, per engine).
        init_container {
          name              = "fetch-models"
          image             = var.aws_cli_image
          image_pull_policy = "Always"
          command           = ["aws", "s3", "sync", "--only-show-errors", "${var.models_url}/", "${local.model_dir}/"]

          env {
            name  = "HOME"
            value = "/tmp"
          }

          resources {
            requests = { cpu = "100m", memory = "256Mi" }
            limits   = { cpu = "1", memory = "512Mi" }
          }

          security_context {
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            privileged                 = false
            run_as_non_root            = true
            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "models"
            mount_path = local.model_dir
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
        }

        container {
          name              = "worker"
          image             = each.value.gpu ? local.gpu_image : local.cpu_image
          image_pull_policy = "Always"
          command           = local.worker_commands[each.key]

          dynamic "env" {
            for_each = merge(local.common_env, {
              CASCADE_ENGINE    = each.value.engine
              CASCADE_MODEL_DIR = local.model_dir
              # numpy's BLAS threads (the OOD gate's kNN search) spin while they wait: on a
              # worker's small batches one thread cost a fifth to a sixth of the CPU.
              OPENBLAS_NUM_THREADS = "1"
            })
            content {
              name  = env.key
              value = env.value
            }
          }
          env {
            name  = "PROMETHEUS_MULTIPROC_DIR"
            value = "/tmp/prometheus"
          }
          dynamic "env" {
            for_each = local.secret_env
            content {
              name = env.key
              value_from {
                secret_key_ref {
                  name = local.secret_name
                  key  = env.value
                }
              }
            }
          }

          port {
            name           = "metrics"
            container_port = local.metrics_port
          }

          # One whole GPU per GPU worker (solo pool: one process, one CUDA context); "0" on the
          # CPU pool is the same as not asking.
          resources {
            requests = {
              cpu              = each.value.resources.cpu
              memory           = each.value.resources.memory
              "nvidia.com/gpu" = each.value.gpu ? "1" : "0"
            }
            limits = {
              cpu              = each.value.resources.cpu
              memory           = each.value.resources.memory
              "nvidia.com/gpu" = each.value.gpu ? "1" : "0"
            }
          }

          # A worker busy with a batch still answers on its metrics port (separate thread).
          liveness_probe {
            tcp_socket {
              port = "metrics"
            }
            initial_delay_seconds = 60
            period_seconds        = 20
            failure_threshold     = 6
          }
          readiness_probe {
            tcp_socket {
              port = "metrics"
            }
            period_seconds = 10
          }

          security_context {
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            privileged                 = false
            run_as_non_root            = true
            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "secrets"
            mount_path = "/mnt/secrets"
            read_only  = true
          }
          volume_mount {
            name       = "models"
            mount_path = local.model_dir
            read_only  = true
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
          # prometheus_client's multiprocess directory must exist before the first sample.
          volume_mount {
            name       = "prometheus"
            mount_path = "/tmp/prometheus"
          }
          volume_mount {
            name       = "var"
            mount_path = "/var/cascade"
          }
        }

        volume {
          name = "secrets"
          csi {
            driver            = "secrets-store.csi.k8s.io"
            read_only         = true
            volume_attributes = { secretProviderClass = local.spc_name }
          }
        }
        volume {
          name = "models"
          empty_dir {}
        }
        volume {
          name = "tmp"
          empty_dir {}
        }
        volume {
          name = "var"
          empty_dir {}
        }
        volume {
          name = "prometheus"
          empty_dir {}
        }
      }
    }
  }

  # KEDA owns the replica count after creation.
  lifecycle {
    ignore_changes = [spec[0].replicas]
  }

  # A new GPU node, a multi-GB image pull and engine loading can take a while.
  timeouts {
    create = "30m"
    update = "30m"
  }

  depends_on = [kubernetes_manifest.secret_provider_class, kubernetes_job_v1.migrate]
}

# The Redis password KEDA needs comes from the same synced Secret as the pods' env.
resource "kubernetes_manifest" "trigger_auth" {
  manifest = {
    apiVersion = "keda.sh/v1alpha1"
    kind       = "TriggerAuthentication"
    metadata = {
      name      = "cascade-redis"
      namespace = kubernetes_namespace_v1.this.metadata[0].name
    }
    spec = {
      secretTargetRef = [{
        parameter = "password"
        name      = local.secret_name
        key       = "redis_password"
      }]
    }
  }
}

resource "kubernetes_manifest" "scaled_object" {
  for_each = local.workers

  manifest = {
    apiVersion = "keda.sh/v1alpha1"
    kind       = "ScaledObject"
    metadata = {
      name      = "cascade-worker-${each.key}"
      namespace = kubernetes_namespace_v1.this.metadata[0].name
    }
    spec = {
      scaleTargetRef = { name = kubernetes_deployment_v1.worker[each.key].metadata[0].name }
      # GPU stages keep >= 1 warm replica: a cold start pulls a multi-GB image and loads engines.
      minReplicaCount = each.value.min_replicas
      maxReplicaCount = each.value.max_replicas
      pollingInterval = 10
      cooldownPeriod  = 300
      advanced = {
        horizontalPodAutoscalerConfig = {
          behavior = {
            scaleDown = {
              stabilizationWindowSeconds = 300
              policies                   = [{ type = "Pods", value = 1, periodSeconds = 60 }]
            }
          }
        }
      }
      # One trigger per Celery queue: the Redis list named after it.
      triggers = [
        for queue in each.value.queues : {
          type = "redis"
          metadata = {
            address       = "${var.redis_host}:${var.redis_port}"
            enableTLS     = "true"
            databaseIndex = "0"
            listName      = queue
            listLength    = tostring(each.value.list_length)
          }
          authenticationRef = { name = kubernetes_manifest.trigger_auth.manifest.metadata.name }
        }
      ]
    }
  }
}
