"""Transcript segments as SubRip (``srt``) and WebVTT (``vtt``) text, as OpenAI writes them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def srt(segments: Iterable[dict[str, Any]]) -> str:
    cues = [
        f"{i}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text'].strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: Iterable[dict[str, Any]]) -> str:
    cues = [
        f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n"
        for s in segments
    ]
    return "\n".join(["WEBVTT\n", *cues])


def _stamp(seconds: float, mark: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{mark}{millis:03d}"
