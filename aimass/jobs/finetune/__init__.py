"""The ``fine_tune`` job kind: OpenAI's fine-tuning jobs over the registry's models, one
method module per kind of base model."""
