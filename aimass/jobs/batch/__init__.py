"""The OpenAI Batch API as a job kind: validation, line dispatch, results, the service."""
