# Cluster-wide add-ons, installed before Cascade's own workloads because those use the custom
# resources these charts bring (ScaledObject, ServiceMonitor, PodMonitor, SecretProviderClass):
# Terraform cannot plan a kubernetes_manifest whose CRD does not exist yet (README.md, "Apply").
#
#   nvidia-device-plugin    advertises nvidia.com/gpu on the GPU pools
#   cluster-autoscaler      adds/removes nodes so KEDA's pods fit
#   metrics-server          CPU metrics for the API's HorizontalPodAutoscaler
#   keda                    scales worker Deployments on Redis list length
#   secrets-store-csi       mounts Secrets Manager values into pods (and syncs env Secrets)
#   kube-prometheus-stack   Prometheus, Alertmanager, Grafana (dashboards by label)
locals {
  # Chart versions are pinned; bump them deliberately, one at a time.
  charts = {
    nvidia_device_plugin = { repo = "https://nvidia.github.io/k8s-device-plugin", chart = "nvidia-device-plugin", version = "0.17.0" }
    cluster_autoscaler   = { repo = "https://kubernetes.github.io/autoscaler", chart = "cluster-autoscaler", version = "9.45.0" }
    keda                 = { repo = "https://kedacore.github.io/charts", chart = "keda", version = "2.16.1" }
    csi_driver           = { repo = "https://kubernetes-sigs.github.io/secrets-store-csi-driver/charts", chart = "secrets-store-csi-driver", version = "1.4.7" }
    csi_aws              = { repo = "https://aws.github.io/secrets-store-csi-driver-provider-aws", chart = "secrets-store-csi-driver-provider-aws", version = "0.3.11" }
    metrics_server       = { repo = "https://kubernetes-sigs.github.io/metrics-server", chart = "metrics-server", version = "3.12.2" }
    prometheus           = { repo = "https://prometheus-community.github.io/helm-charts", chart = "kube-prometheus-stack", version = "69.4.1" }
  }
  system_node_selector = { "cascade.io/pool" = "system" }
}

resource "helm_release" "nvidia_device_plugin" {
  name       = "nvidia-device-plugin"
  namespace  = "kube-system"
  repository = local.charts.nvidia_device_plugin.repo
  chart      = local.charts.nvidia_device_plugin.chart
  version    = local.charts.nvidia_device_plugin.version

  values = [yamlencode({
    nodeSelector = { "nvidia.com/gpu" = "true" }
    # The GPU pools are tainted for their stage's workers; the plugin must run on all of them.
    tolerations = [
      { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" },
      { key = "cascade.io/stage", operator = "Exists", effect = "NoSchedule" },
    ]
  })]
}

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  namespace  = "kube-system"
  repository = local.charts.cluster_autoscaler.repo
  chart      = local.charts.cluster_autoscaler.chart
  version    = local.charts.cluster_autoscaler.version

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = var.cluster_name }
    nodeSelector  = local.system_node_selector
    rbac = {
      serviceAccount = {
        name        = "cluster-autoscaler"
        annotations = { "eks.amazonaws.com/role-arn" = var.cluster_autoscaler_role_arn }
      }
    }
    extraArgs = {
      "balance-similar-node-groups"      = true
      "skip-nodes-with-system-pods"      = false
      "scale-down-unneeded-time"         = "10m"
      "expander"                         = "least-waste"
      "scale-down-utilization-threshold" = "0.5"
    }
  })]
}

resource "helm_release" "metrics_server" {
  name       = "metrics-server"
  namespace  = "kube-system"
  repository = local.charts.metrics_server.repo
  chart      = local.charts.metrics_server.chart
  version    = local.charts.metrics_server.version

  values = [yamlencode({
    nodeSelector = local.system_node_selector
  })]
}

resource "helm_release" "keda" {
  name             = "keda"
  namespace        = "keda"
  create_namespace = true
  repository       = local.charts.keda.repo
  chart            = local.charts.keda.chart
  version          = local.charts.keda.version

  values = [yamlencode({
    nodeSelector = local.system_node_selector
  })]
}

resource "helm_release" "csi_driver" {
  name       = "secrets-store-csi-driver"
  namespace  = "kube-system"
  repository = local.charts.csi_driver.repo
  chart      = local.charts.csi_driver.chart
  version    = local.charts.csi_driver.version

  values = [yamlencode({
    # Cascade reads settings from environment variables only, so the mounted secrets are
    # also synced into a Kubernetes Secret that the pods' env refers to.
    syncSecret           = { enabled = true }
    enableSecretRotation = true
    rotationPollInterval = "300s"
    linux = {
      tolerations = [{ operator = "Exists" }]
    }
  })]
}

resource "helm_release" "csi_aws" {
  name       = "secrets-store-csi-driver-provider-aws"
  namespace  = "kube-system"
  repository = local.charts.csi_aws.repo
  chart      = local.charts.csi_aws.chart
  version    = local.charts.csi_aws.version

  values = [yamlencode({
    tolerations = [{ operator = "Exists" }]
  })]

  depends_on = [helm_release.csi_driver]
}

# --- monitoring ------------------------------------------------------------------------------

# Encrypted gp3 volumes (Prometheus, Grafana); EKS's default gp2 class is not encrypted.
resource "kubernetes_storage_class_v1" "encrypted" {
  metadata {
    name = "gp3-encrypted"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
    kmsKeyId  = var.kms_key_arn
  }
}

resource "random_password" "grafana_admin" {
  length  = 32
  special = false
}

resource "kubernetes_namespace_v1" "monitoring" {
  metadata {
    name = var.monitoring_namespace
  }
}

resource "kubernetes_secret_v1" "grafana_admin" {
  metadata {
    name      = "grafana-admin"
    namespace = kubernetes_namespace_v1.monitoring.metadata[0].name
  }
  data = {
    admin-user     = "admin"
    admin-password = random_password.grafana_admin.result
  }
}

resource "helm_release" "prometheus" {
  name       = "kube-prometheus-stack"
  namespace  = kubernetes_namespace_v1.monitoring.metadata[0].name
  repository = local.charts.prometheus.repo
  chart      = local.charts.prometheus.chart
  version    = local.charts.prometheus.version
  timeout    = 900

  values = [yamlencode({
    prometheus = {
      prometheusSpec = {
        # Pick up ServiceMonitors/PodMonitors from every namespace, not only the chart's own.
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        retention                               = "${var.prometheus_retention_days}d"
        nodeSelector                            = local.system_node_selector
        storageSpec = {
          volumeClaimTemplate = {
            spec = {
              storageClassName = kubernetes_storage_class_v1.encrypted.metadata[0].name
              accessModes      = ["ReadWriteOnce"]
              resources        = { requests = { storage = "${var.prometheus_storage_gb}Gi" } }
            }
          }
        }
      }
    }
    alertmanager = { alertmanagerSpec = { nodeSelector = local.system_node_selector } }
    grafana = {
      admin        = { existingSecret = kubernetes_secret_v1.grafana_admin.metadata[0].name }
      nodeSelector = local.system_node_selector
      persistence  = { enabled = true, size = "10Gi", storageClassName = kubernetes_storage_class_v1.encrypted.metadata[0].name }
      sidecar = {
        dashboards = {
          enabled         = true
          label           = "grafana_dashboard"
          labelValue      = "1"
          searchNamespace = "ALL"
        }
      }
    }
  })]
}
