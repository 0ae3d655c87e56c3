"""The work behind /v1/audio/transcriptions, callable without HTTP.

The sound file goes to the model's replica as it came, with the request's language, prompt,
temperature and whether word timings are wanted; decoding (under the model's
``max_audio_bytes`` / ``max_audio_seconds``) and transcription happen there, never on the
event loop. Here: the checks that need no decoding (task, language, size), then the answer in
the requested ``response_format``. Usage counts the audio's seconds, rounded up
(``prompt_tokens`` in the usage records, so a key's rate and budget limits cover speech too).

``stream=true`` answers with OpenAI's ``transcript.text.delta`` events, one per segment, then
``transcript.text.done``; the replica transcribes a file whole, so the events come when it is
done (what streaming saves a client here is only the wait for the last byte).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput
from aimass.protocols.audio import TranscriptionForm
from aimass.refs import split_model
from aimass.serving import subtitles
from aimass.serving.encoded import blobs, check_upload
from aimass.serving.pipeline import CallContext, Pipeline

TASK = "transcription"
PATH = "/v1/audio/transcriptions"


@dataclass
class Transcript:
    """A finished transcription: the runtime's answer and the audio's length."""

    result: dict[str, Any]
    seconds: float

    @property
    def usage(self) -> dict[str, Any]:
        return {"type": "duration", "seconds": math.ceil(self.seconds)}


class AudioService:
    """Speech to text over the pipeline; one per server."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def transcribe(
        self, ctx: CallContext, form: TranscriptionForm, data: bytes
    ) -> Transcript:
        name, version = split_model(form.model)
        async with self.pipeline.call(ctx, name, version) as call:
            check_upload(call, form.model, TASK, PATH, len(data), "max_audio_bytes", "file")
            language = _language(call.deployment.info, form)
            words = (
                form.response_format == "verbose_json" and "word" in form.timestamp_granularities
            )
            temperature = np.nan if form.temperature is None else form.temperature
            out = await call.infer(
                {
                    "file": blobs(data),
                    "language": _texts(language),
                    "prompt": _texts(form.prompt or ""),
                    "temperature": np.array([temperature], dtype=np.float64),
                    "words": np.array([words]),
                }
            )
            transcript = Transcript(orjson.loads(out["result"][0]), float(out["seconds"][0]))
            call.tokens(prompt=math.ceil(transcript.seconds))
        return transcript


def _language(info: dict[str, Any], form: TranscriptionForm) -> str:
    """The language to decode in ("" to detect); 400 for one the model does not know."""
    language = (form.language or "").strip().lower()
    if not language:
        return ""
    if language not in info.get("languages", []):
        english_only = not info.get("multilingual", True)
        hint = " (an English-only model: send 'en' or no language)" if english_only else ""
        raise InvalidInput(
            f"language {form.language!r} is not supported by model {form.model!r}{hint}",
            param="language",
        )
    return language


def _texts(text: str) -> np.ndarray:
    array = np.empty(1, dtype=object)
    array[0] = text
    return array


def render(form: TranscriptionForm, transcript: Transcript) -> tuple[bytes, str]:
    """The answer's body and media type for ``form.response_format``."""
    result, fmt = transcript.result, form.response_format
    if fmt == "text":
        return f"{result['text']}\n".encode(), "text/plain; charset=utf-8"
    if fmt == "srt":
        return subtitles.srt(result["segments"]).encode(), "text/plain; charset=utf-8"
    if fmt == "vtt":
        return subtitles.vtt(result["segments"]).encode(), "text/vtt; charset=utf-8"
    if fmt == "verbose_json":
        return orjson.dumps(verbose(form, transcript)), "application/json"
    return orjson.dumps({"text": result["text"], "usage": transcript.usage}), "application/json"


def verbose(form: TranscriptionForm, transcript: Transcript) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: words at the top level, when they were asked for."""
    result = transcript.result
    segments = [{k: v for k, v in s.items() if k != "words"} for s in result["segments"]]
    answer: dict[str, Any] = {
        "task": "transcribe",
        "language": result["language"],
        "duration": result["duration"],
        "text": result["text"],
        "segments": segments,
        "usage": transcript.usage,
    }
    if "word" in form.timestamp_granularities:
        answer["words"] = [w for s in result["segments"] for w in s.get("words", [])]
    return answer


def events(transcript: Transcript) -> Iterator[bytes]:
    """The server-sent events of a streamed answer: a delta per segment, then done."""
    pieces = [s["text"] for s in transcript.result["segments"]]
    if pieces:
        pieces[0] = pieces[0].lstrip()
    for piece in pieces:
        yield _event({"type": "transcript.text.delta", "delta": piece})
    done = {"type": "transcript.text.done", "text": transcript.result["text"]}
    yield _event({**done, "usage": transcript.usage})


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"
