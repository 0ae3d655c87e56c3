"""Uploaded files: their bytes in a ``FileStorage`` (local disk today, an S3-compatible bucket
later), their metadata in the registry, and ``FileStore`` keeping the two in step."""
