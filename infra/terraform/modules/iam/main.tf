# IRSA roles: a Kubernetes service account assumes an IAM role through the cluster's OIDC
# provider; each role can reach only this deployment's bucket prefixes, secrets and key.
#   api     uploads and reads image bytes (blobs/), reads its secrets
#   worker  reads/writes image bytes, reads model files (models/), reads its secrets
#   cluster-autoscaler  resizes this cluster's node groups only
data "aws_partition" "current" {}

locals {
  service_accounts = {
    api                = { namespace = var.namespace, name = var.api_service_account }
    worker             = { namespace = var.namespace, name = var.worker_service_account }
    cluster_autoscaler = { namespace = "kube-system", name = "cluster-autoscaler" }
  }
  secret_arns = values(var.secret_arns)
}

data "aws_iam_policy_document" "assume" {
  for_each = local.service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${each.value.namespace}:${each.value.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  for_each           = local.service_accounts
  name_prefix        = substr("${var.name}-${replace(each.key, "_", "-")}-", 0, 38) # IAM limit
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

# --- application roles -----------------------------------------------------------------------

data "aws_iam_policy_document" "app" {
  for_each = toset(["api", "worker"])

  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = each.key == "worker" ? ["blobs/*", "blobs", "models/*", "models"] : ["blobs/*", "blobs"]
    }
  }

  statement {
    sid       = "ReadWriteImages"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.bucket_arn}/blobs/*"]
  }

  dynamic "statement" {
    for_each = each.key == "worker" ? [1] : []
    content {
      sid       = "ReadModels"
      actions   = ["s3:GetObject"]
      resources = ["${var.bucket_arn}/models/*"]
    }
  }

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = local.secret_arns
  }

  statement {
    sid       = "UseDeploymentKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "app" {
  for_each = data.aws_iam_policy_document.app
  name     = "cascade-${each.key}"
  role     = aws_iam_role.this[each.key].id
  policy   = each.value.json
}

# --- cluster autoscaler ----------------------------------------------------------------------

data "aws_iam_policy_document" "cluster_autoscaler" {
  #checkov:skip=CKV_AWS_356:Describe* calls do not support resource-level permissions; they are read-only.
  #checkov:skip=CKV_AWS_111:Write actions are constrained by the cluster's ownership tag (condition below), not by ARN, because node-group ASG names are generated.
  statement {
    sid = "Describe"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
      "eks:DescribeNodegroup",
    ]
    resources = ["*"]
  }

  statement {
    sid = "ResizeOwnNodeGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "cluster-autoscaler"
  role   = aws_iam_role.this["cluster_autoscaler"].id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}
