"""Names the schemathesis test serves, shared by the test and its hooks.

``test_openapi_schemathesis.py`` starts a server with these models and keys;
``schemathesis_hooks.py`` (loaded by the schemathesis run only) puts them in generated requests.
"""

from __future__ import annotations

ADMIN = "sm-admin"
SCRATCH_KEY = "sm-scratch-key"
"""A key the fuzzed key operations may rotate and revoke."""
ADD, ECHO, EMBED, RERANK, LLM = "sm-add", "sm-echo", "sm-embed", "sm-rerank", "sm-gemma"
OCR, ASR = "sm-ocr", "sm-asr"
VISION = "sm-vision"
RECOMMEND, FORECAST = "sm-recommend", "sm-forecast"
RISK = "sm-risk"
SCRATCH = "sm-scratch"
"""A model the fuzzed repository operations may unload, load and register configs for."""
REMOVABLE = "sm-removable"
"""A model the fuzzed ``DELETE /v1/admin/models/{name}`` may remove."""
SERVED = [ADD, ECHO, EMBED, RERANK, LLM, OCR, ASR, VISION, RECOMMEND, FORECAST]
SERVED = [ADD, ECHO, EMBED, RERANK, LLM, OCR, ASR, VISION, RISK]
MODEL_FIELD = {
    "/v1/embeddings": [EMBED],
    "/v1/rerank": [RERANK],
    "/v1/completions": [LLM],
    "/v1/chat/completions": [LLM],
    "/v1/ocr": [OCR],
    "/v1/audio/transcriptions": [ASR],
    "/v1/images/classifications": [VISION],
    "/v1/recommendations": [RECOMMEND],
    "/v1/recommendations/similar": [RECOMMEND],
    "/v1/recommendations/events": [RECOMMEND],
    "/v1/forecasts": [FORECAST],
    "/v1/forecasts/observations": [FORECAST],
    "/v1/risk/score": [RISK],
}
"""The served model an operation's body may name, by operation."""
DESTRUCTIVE = {
    ("POST", "/v2/repository/models/{name}/load"),  # may register a new config first
    ("POST", "/v2/repository/models/{name}/unload"),
    ("DELETE", "/v1/admin/models/{name}"),
    ("POST", "/v1/admin/models/{name}/promote"),  # change which version serves
    ("PUT", "/v1/admin/models/{name}/route"),
    ("POST", "/v1/admin/models/{name}/rollback"),
    ("POST", "/v1/keys/{name}/rotate"),
    ("DELETE", "/v1/keys/{name}"),
}
