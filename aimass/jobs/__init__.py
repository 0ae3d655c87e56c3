"""Durable jobs: the runner, the interface a job kind implements, and the kinds (batch)."""
