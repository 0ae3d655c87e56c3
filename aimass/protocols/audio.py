"""Wire types for /v1/audio/transcriptions, as OpenAI's API has them.

The request is a multipart form (``file``, ``model``, ``language``, ``prompt``,
``temperature``, ``response_format``, ``timestamp_granularities[]``, ``stream``);
``TranscriptionForm`` holds its fields once read from the form. Answers: ``json`` and
``verbose_json`` below, ``text``/``srt``/``vtt`` as plain text, and with ``stream`` the
``transcript.text.delta`` / ``transcript.text.done`` server-sent events.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


class TranscriptionForm(BaseModel):
    """The form's fields other than the file, validated (strings come from the form)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    language: str | None = Field(default=None, max_length=32)
    """ISO-639-1 code; empty or absent: detected (English-only models need none)."""
    prompt: str | None = Field(default=None, max_length=4096)
    temperature: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=list, max_length=2
    )
    stream: bool = False


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class Transcription(BaseModel):
    """``response_format=json``."""

    text: str
    usage: DurationUsage


class TranscriptionVerbose(BaseModel):
    """``response_format=verbose_json``: segments always, words when asked for."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage


class TranscriptTextDelta(BaseModel):
    """A streamed piece of the transcript."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    """The last streamed event: the whole transcript."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: DurationUsage


class TranscriptStreamEvent(RootModel[TranscriptTextDelta | TranscriptTextDone]):
    """One event of a streamed transcription."""
