provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project     = "cascade"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}

# The Kubernetes and Helm providers talk to the cluster this configuration creates. Their
# settings are unknown until the cluster exists, which is why the first apply is staged
# (README.md, "Apply"). Tokens come from `aws eks get-token`, so nothing long-lived is stored.
provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_ca_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_ca_data)

    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}
