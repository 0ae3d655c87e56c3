"""The speech-to-text runtime: an encoded sound file in, its transcript with timings out.

One row is one sound file (``file``, bytes) with its request's ``language`` ("" to detect),
``prompt``, ``temperature`` (NaN: Whisper's fallback schedule) and ``words`` (word timestamps
wanted). The file is decoded here, in the replica process, under the spec's audio limits
(``media.audio``). Whisper does not batch requests of different lengths here: rows are
transcribed one after another, and a replica computes one batch at a time, which bounds the
work per replica (``replicas`` sets how many files are transcribed at once).

Each row's answer is one JSON text (``result``: text, language, duration, segments with their
timings and, when asked, words) and the audio's length in seconds (``seconds``, what usage
counts).

Options (``spec.options``): ``beam_size`` (5), ``vad_filter`` (true: Silero VAD skips silence
before decoding), ``compute_type`` ("int8").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput
from aimass.media.audio import SAMPLE_RATE, AudioLimits, decode_audio
from aimass.runtimes.audio.layout import check_whisper_folder
from aimass.runtimes.base import Payload, Runtime, TensorInfo
from aimass.spec import ModelSpec

FILE, LANGUAGE, PROMPT, TEMPERATURE, WORDS = "file", "language", "prompt", "temperature", "words"
RESULT, SECONDS = "result", "seconds"


class WhisperRuntime(Runtime):
    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.model: Any = None
        self.limits = AudioLimits(spec.limits.max_audio_bytes, spec.limits.max_audio_seconds)
        self.beam_size = int(spec.options.get("beam_size", 5))
        self.vad_filter = bool(spec.options.get("vad_filter", True))

    def load(self) -> None:
        from faster_whisper import WhisperModel

        check_whisper_folder(Path(self.spec.source))
        self.model = WhisperModel(
            self.spec.source,
            device="cpu",
            compute_type=str(self.spec.options.get("compute_type", "int8")),
            cpu_threads=self.spec.threads,
        )

    def inputs(self) -> list[TensorInfo]:
        return [
            TensorInfo(FILE, "BYTES", [-1]),
            TensorInfo(LANGUAGE, "BYTES", [-1]),
            TensorInfo(PROMPT, "BYTES", [-1]),
            TensorInfo(TEMPERATURE, "FP64", [-1]),
            TensorInfo(WORDS, "BOOL", [-1]),
        ]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(RESULT, "BYTES", [-1]), TensorInfo(SECONDS, "FP64", [-1])]

    def describe(self) -> dict[str, Any]:
        return {
            "task": "transcription",
            "multilingual": bool(self.model.model.is_multilingual),
            "languages": list(self.model.supported_languages),
        }

    def infer(self, batch: Payload) -> Payload:
        rows = len(batch[FILE])
        results, seconds = np.empty(rows, dtype=object), np.zeros(rows, dtype=np.float64)
        for i in range(rows):
            answer = self.transcribe(
                _file(batch[FILE][i]),
                language=str(batch[LANGUAGE][i]),
                prompt=str(batch[PROMPT][i]),
                temperature=float(batch[TEMPERATURE][i]),
                words=bool(batch[WORDS][i]),
            )
            results[i], seconds[i] = orjson.dumps(answer).decode(), answer["duration"]
        return {RESULT: results, SECONDS: seconds}

    def transcribe(
        self, data: bytes, *, language: str, prompt: str, temperature: float, words: bool
    ) -> dict[str, Any]:
        """One file's transcript (limits checked while it is decoded)."""
        if language and language not in self.model.supported_languages:
            raise InvalidInput(
                f"language {language!r} is not supported by model {self.spec.name!r}"
                + ("" if self.model.model.is_multilingual else " (an English-only model)"),
                param="language",
            )
        audio = decode_audio(data, self.limits, param=FILE)
        kwargs: dict[str, Any] = {}
        if not math.isnan(temperature):
            kwargs["temperature"] = temperature
        segments, info = self.model.transcribe(
            audio,
            language=language or None,
            initial_prompt=prompt or None,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            word_timestamps=words,
            **kwargs,
        )
        found = [_segment(s, words) for s in segments]
        return {
            "text": "".join(s["text"] for s in found).strip(),
            "language": info.language,
            "duration": round(audio.size / SAMPLE_RATE, 3),
            "segments": found,
        }


def _file(value: Any) -> bytes:
    """A row's sound file; anything else (text, from the v2 protocol) is the client's 400."""
    if isinstance(value, bytes):
        return value
    raise InvalidInput(
        f"{FILE} must be the bytes of a sound file; send it to /v1/audio/transcriptions",
        param=FILE,
    )


def _segment(segment: Any, words: bool) -> dict[str, Any]:
    out = {
        "id": segment.id - 1,
        "seek": segment.seek,
        "start": round(float(segment.start), 3),
        "end": round(float(segment.end), 3),
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": float(segment.temperature),
        "avg_logprob": float(segment.avg_logprob),
        "compression_ratio": float(segment.compression_ratio),
        "no_speech_prob": float(segment.no_speech_prob),
    }
    if words:
        out["words"] = [
            {
                "word": w.word.strip(),
                "start": round(float(w.start), 3),
                "end": round(float(w.end), 3),
            }
            for w in segment.words or []
        ]
    return out
