# The periodic scheduler (threshold retune, error and drift checks, stale sweep, gauges). Exactly one: two beats would
# schedule every job twice, hence replicas = 1 and Recreate.
resource "kubernetes_deployment_v1" "beat" {
  #checkov:skip=CKV_K8S_35:Cascade reads settings only from CASCADE_* environment variables (pydantic-settings); the values come from a Secret synced from Secrets Manager, never from the manifest.
  #checkov:skip=CKV_K8S_14:The tag is var.image_tag, which has no default and whose validation rejects "" and "latest"; checkov cannot resolve it.
  #checkov:skip=CKV_K8S_43:Images are referenced by tag in an ECR repository with IMMUTABLE tags, which pins content as a digest would.
  metadata {
    name      = "cascade-beat"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels = merge(local.labels, {
      "app.kubernetes.io/name"      = "cascade-beat"
      "app.kubernetes.io/component" = "beat"
    })
  }

  spec {
    replicas = 1

    selector {
      match_labels = { "app.kubernetes.io/name" = "cascade-beat" }
    }

    strategy {
      type = "Recreate"
    }

    template {
      metadata {
        labels = merge(local.labels, {
          "app.kubernetes.io/name"      = "cascade-beat"
          "app.kubernetes.io/component" = "beat"
        })
      }

      spec {
        service_account_name            = kubernetes_service_account_v1.worker.metadata[0].name
        automount_service_account_token = false
        node_selector                   = { "cascade.io/pool" = "system" }

        security_context {
          run_as_non_root = true
          run_as_user     = 10001
          run_as_group    = 10001
          fs_group        = 10001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name              = "beat"
          image             = local.cpu_image
          image_pull_policy = "Always"
          command           = local.beat_command
          # Celery beat keeps its schedule file in the working directory; the root FS is read-only.
          working_dir = "/var/cascade"

          dynamic "env" {
            for_each = local.common_env
            content {
              name  = env.key
              value = env.value
            }
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

          resources {
            requests = { cpu = "100m", memory = "256Mi" }
            limits   = { cpu = "500m", memory = "512Mi" }
          }

          # beat has no port; a live process that can import its settings is the best signal.
          liveness_probe {
            exec {
              command = ["python", "-c", "import cascade.config as c; c.Settings()"]
            }
            initial_delay_seconds = 30
            period_seconds        = 60
            timeout_seconds       = 20
          }
          readiness_probe {
            exec {
              command = ["python", "-c", "import cascade.config as c; c.Settings()"]
            }
            period_seconds  = 60
            timeout_seconds = 20
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
            name       = "tmp"
            mount_path = "/tmp"
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
          name = "tmp"
          empty_dir {}
        }
        volume {
          name = "var"
          empty_dir {}
        }
      }
    }
  }

  depends_on = [kubernetes_manifest.secret_provider_class, kubernetes_job_v1.migrate]
}
