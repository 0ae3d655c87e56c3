"""Built-in models and optimized variants: what the server registers by itself."""
