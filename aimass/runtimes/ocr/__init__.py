"""OCR with RapidOCR (PP-OCR detection, direction classifier and recognition on onnxruntime)."""
