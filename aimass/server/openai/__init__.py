"""OpenAI-compatible /v1 routes: completions, chat, embeddings, rerank, models."""
