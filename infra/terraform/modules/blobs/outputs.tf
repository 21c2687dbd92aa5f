output "bucket" {
  description = "Name of the blob bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the blob bucket."
  value       = aws_s3_bucket.this.arn
}

output "blob_url" {
  description = "fsspec URL Cascade stores image bytes under (CASCADE_BLOB_URL)."
  value       = "s3://${aws_s3_bucket.this.id}/blobs"
}

output "models_url" {
  description = "S3 URL the workers copy their model files from at start."
  value       = "s3://${aws_s3_bucket.this.id}/models"
}
