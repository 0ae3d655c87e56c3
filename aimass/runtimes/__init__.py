"""Model engines, one module each; imported lazily so onnx serving never imports torch."""

from __future__ import annotations

import importlib

from aimass.runtimes.base import Runtime
from aimass.spec import ModelSpec

_MODULES = {
    "onnx": "aimass.runtimes.onnx:OnnxRuntime",
    "tabular": "aimass.runtimes.tabular:TabularRuntime",
    "llamacpp": "aimass.runtimes.llamacpp.runtime:LlamaCppRuntime",
    "transformers": "aimass.runtimes.text.runtime:create_transformers_runtime",
    "vision": "aimass.runtimes.vision.runtime:VisionRuntime",
    "ocr": "aimass.runtimes.ocr.runtime:OcrRuntime",
    "asr": "aimass.runtimes.audio.runtime:WhisperRuntime",
    "recommend": "aimass.runtimes.recommend:RecommendRuntime",
    "forecast": "aimass.runtimes.forecast:ForecastRuntime",
    "risk": "aimass.runtimes.risk:RiskRuntime",
}


def create_runtime(spec: ModelSpec) -> Runtime:
    """Build (but do not load) the runtime a spec names."""
    module_name, attr = _MODULES[spec.runtime].split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(spec)
