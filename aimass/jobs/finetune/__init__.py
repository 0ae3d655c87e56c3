"""Fine-tuning methods, one module per kind of base model."""
