"""Admin routes: model registry control and API keys, usage and audit."""
