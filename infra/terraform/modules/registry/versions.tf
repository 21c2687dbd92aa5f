# Versions are pinned once, in the root module's versions.tf.
terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}
