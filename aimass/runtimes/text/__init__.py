"""Transformer encoders (embeddings, rerank): tokenization, layout, ONNX export, pooling."""
