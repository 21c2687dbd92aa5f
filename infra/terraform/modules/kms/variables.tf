variable "name" {
  type        = string
  description = "Name prefix of the deployment; the key's alias is alias/<name>."
}
