"""Open Inference Protocol v2 (KServe/Triton) over REST: health, metadata, infer, repository."""
