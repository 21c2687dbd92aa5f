output "database_password" {
  description = "Generated PostgreSQL master password (for module postgres)."
  value       = random_password.database.result
  sensitive   = true
}

output "redis_auth_token" {
  description = "Generated Redis AUTH token (for module redis)."
  value       = random_password.redis.result
  sensitive   = true
}

output "secret_arns" {
  description = "ARNs of the secrets, keyed by database, redis, app."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "secret_names" {
  description = "Names of the secrets, keyed by database, redis, app."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.name }
}
