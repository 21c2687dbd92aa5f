# The web app: upload API (/v1), review UI, dashboard, /metrics, /healthz.
resource "kubernetes_deployment_v1" "api" {
  #checkov:skip=CKV_K8S_35:Cascade reads settings only from CASCADE_* environment variables (pydantic-settings); the values come from a Secret synced from Secrets Manager, never from the manifest.
  #checkov:skip=CKV_K8S_14:The tag is var.image_tag, which has no default and whose validation rejects "" and "latest"; checkov cannot resolve it.
  #checkov:skip=CKV_K8S_43:Images are referenced by tag in an ECR repository with IMMUTABLE tags, which pins content as a digest would.
  metadata {
    name      = "cascade-api"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels = merge(local.labels, {
      "app.kubernetes.io/name"      = "cascade-api"
      "app.kubernetes.io/component" = "api"
    })
  }

  spec {
    replicas = var.api.min_replicas

    selector {
      match_labels = { "app.kubernetes.io/name" = "cascade-api" }
    }

    strategy {
      type = "RollingUpdate"
      rolling_update {
        max_surge       = "25%"
        max_unavailable = "0"
      }
    }

    template {
      metadata {
        labels = merge(local.labels, {
          "app.kubernetes.io/name"      = "cascade-api"
          "app.kubernetes.io/component" = "api"
        })
      }

      spec {
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

        topology_spread_constraint {
          max_skew           = 1
          topology_key       = "topology.kubernetes.io/zone"
          when_unsatisfiable = "ScheduleAnyway"
          label_selector {
            match_labels = { "app.kubernetes.io/name" = "cascade-api" }
          }
        }

        container {
          name              = "api"
          image             = local.cpu_image
          image_pull_policy = "Always"
          command           = local.api_command

          dynamic "env" {
            for_each = merge(local.common_env, local.api_env)
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
            name           = "http"
            container_port = local.api_port
          }

          resources {
            requests = { cpu = var.api.cpu, memory = var.api.memory }
            limits   = { cpu = var.api.cpu, memory = var.api.memory }
          }

          readiness_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            period_seconds = 5
          }
          liveness_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            initial_delay_seconds = 20
            period_seconds        = 15
            failure_threshold     = 4
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

  # The HPA owns the replica count after creation.
  lifecycle {
    ignore_changes = [spec[0].replicas]
  }

  # Migrations first: the new code may need the new schema.
  depends_on = [kubernetes_manifest.secret_provider_class, kubernetes_job_v1.migrate]
}

resource "kubernetes_service_v1" "api" {
  metadata {
    name      = "cascade-api"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
    labels = merge(local.labels, {
      "app.kubernetes.io/name"      = "cascade-api"
      "app.kubernetes.io/component" = "api"
    })
  }
  spec {
    type     = "ClusterIP"
    selector = { "app.kubernetes.io/name" = "cascade-api" }
    port {
      name        = "http"
      port        = 80
      target_port = "http"
    }
  }
}

resource "kubernetes_horizontal_pod_autoscaler_v2" "api" {
  metadata {
    name      = "cascade-api"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  spec {
    min_replicas = var.api.min_replicas
    max_replicas = var.api.max_replicas
    scale_target_ref {
      api_version = "apps/v1"
      kind        = "Deployment"
      name        = kubernetes_deployment_v1.api.metadata[0].name
    }
    metric {
      type = "Resource"
      resource {
        name = "cpu"
        target {
          type                = "Utilization"
          average_utilization = var.api.target_cpu_percent
        }
      }
    }
  }
}

resource "kubernetes_pod_disruption_budget_v1" "api" {
  metadata {
    name      = "cascade-api"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  spec {
    min_available = 1
    selector {
      match_labels = { "app.kubernetes.io/name" = "cascade-api" }
    }
  }
}
