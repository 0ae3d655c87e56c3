"""Wire types, one module per protocol; pydantic only."""
