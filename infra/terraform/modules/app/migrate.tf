# `cascade db upgrade` once per image tag, before the API and workers roll to that tag.
# The name carries a hash of the tag, so a new release runs a new Job; Alembic makes a
# repeated upgrade a no-op.
resource "kubernetes_job_v1" "migrate" {
  #checkov:skip=CKV_K8S_35:Cascade reads settings only from CASCADE_* environment variables (pydantic-settings); the values come from a Secret synced from Secrets Manager, never from the manifest.
  #checkov:skip=CKV_K8S_43:Images are referenced by tag in an ECR repository with IMMUTABLE tags, which pins content as a digest would.
  metadata {
    name      = "cascade-migrate-${substr(sha1(var.image_tag), 0, 10)}"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels = merge(local.labels, {
      "app.kubernetes.io/name"      = "cascade-migrate"
      "app.kubernetes.io/component" = "migrate"
    })
  }

  spec {
    # No ttl_seconds_after_finished: Terraform would re-create (re-run) a Job Kubernetes deleted.
    # The previous tag's Job is destroyed by Terraform when the name changes.
    backoff_limit = 3

    template {
      metadata {
        labels = merge(local.labels, { "app.kubernetes.io/name" = "cascade-migrate" })
      }

      spec {
        restart_policy                  = "Never"
        service_account_name            = kubernetes_service_account_v1.api.metadata[0].name
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
          name              = "migrate"
          image             = local.cpu_image
          image_pull_policy = "Always"
          command           = local.migrate_command

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
            requests = { cpu = "250m", memory = "512Mi" }
            limits   = { cpu = "1", memory = "1Gi" }
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

  wait_for_completion = true

  timeouts {
    create = "15m"
    update = "15m"
  }

  depends_on = [kubernetes_manifest.secret_provider_class]
}
