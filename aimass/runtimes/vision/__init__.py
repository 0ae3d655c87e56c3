"""Image models over onnxruntime: classification and embeddings, preprocessing from the spec."""
