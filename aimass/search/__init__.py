"""Search over vector stores: text extraction, chunking, the HNSW and BM25 indexes, rank fusion,
attribute filters, and background ingestion. No HTTP and no model calls of its own: the
serving layer (``serving/vector_stores.py``) hands in how to embed, as the caller."""
