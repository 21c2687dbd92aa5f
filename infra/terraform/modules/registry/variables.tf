variable "name" {
  type        = string
  description = "Repository name."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts stored images."
}

variable "keep_images" {
  type        = number
  description = "How many images to keep; older ones expire."
}
