"""Audio from client bytes: limits checked while decoding, every failure a client error.

``decode_audio(data, limits)`` is the one way a sound file a client sent becomes samples (16 kHz
mono float32, what Whisper reads):

1. more than ``limits.max_bytes`` bytes → ``PayloadTooLarge`` naming ``max_audio_bytes``;
2. the container is recognised from its first bytes (WAV, FLAC, Ogg, WebM/Matroska, MP4/M4A,
   MP3, AAC) and opened with that demuxer only. FFmpeg would otherwise probe every format it
   knows, including playlists (HLS) that open other files or URLs named inside them;
3. a duration the header declares over ``limits.max_seconds`` → ``PayloadTooLarge`` naming
   ``max_audio_seconds`` before decoding; a header that understates it is caught while decoding,
   which stops as soon as the samples pass the limit.

Not audio, an unknown format, no audio stream, a corrupt or truncated file that yields no sound
→ ``InvalidInput`` naming the problem. FFmpeg (through PyAV) raises many exception types on bad
data, so decoding catches them all; the hypothesis fuzz in ``tests/unit/test_media_audio.py``
holds the module to "only InvalidInput or PayloadTooLarge come out".
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from aimass.errors import InvalidInput, PayloadTooLarge

SAMPLE_RATE = 16_000
FORMATS = "wav, mp3, flac, ogg, webm, m4a"
"""What the transcription API accepts, as its errors name them."""

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_SECONDS = 600.0
"""Defaults of the spec's ``limits.max_audio_bytes`` (OpenAI's own upload limit) and
``limits.max_audio_seconds`` (ten minutes: about 2.5 minutes of Whisper tiny.en on 2 cores)."""


@dataclass(frozen=True)
class AudioLimits:
    """What one sound file may weigh: encoded bytes and decoded seconds."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS


def decode_audio(data: bytes, limits: AudioLimits, *, param: str = "file") -> np.ndarray:
    """Decode ``data`` (an encoded sound file) to 16 kHz mono float32 samples in [-1, 1].

    Raises ``PayloadTooLarge`` (413) naming ``max_audio_bytes`` or ``max_audio_seconds``, or
    ``InvalidInput`` (400, ``param``) naming what is wrong with the file; nothing else.
    """
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"{param}: the audio file is {len(data)} bytes, over the model's limit "
            f"max_audio_bytes={limits.max_bytes}",
            param=param,
        )
    demuxer = sniff(data)
    if demuxer is None:
        raise InvalidInput(
            f"{param}: not an audio file in a supported format ({FORMATS})", param=param
        )
    try:
        samples = _decode(data, demuxer, limits, param)
    except (InvalidInput, PayloadTooLarge):
        raise
    except Exception as exc:
        raise InvalidInput(
            f"{param}: the {demuxer} audio cannot be decoded ({_reason(exc)}); "
            "is the file truncated or corrupt?",
            param=param,
        ) from exc
    if samples.size == 0:
        raise InvalidInput(
            f"{param}: no sound could be decoded from the {demuxer} file; "
            "is it empty or truncated?",
            param=param,
        )
    return samples


def sniff(data: bytes) -> str | None:
    """The FFmpeg demuxer for the container ``data`` starts with, or None when it is none of
    the accepted formats."""
    head = data[:12]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "aac" if head[1] & 0xF6 == 0xF0 else "mp3"
    return None


def _decode(data: bytes, demuxer: str, limits: AudioLimits, param: str) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        if not container.streams.audio:
            raise InvalidInput(f"{param}: the {demuxer} file has no audio stream", param=param)
        stream = container.streams.audio[0]
        declared = container.duration / av.time_base if container.duration else 0.0
        if declared > limits.max_seconds:
            raise _too_long(f"{declared:.1f}", limits, param)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        most = int(limits.max_seconds * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        count = 0
        for frame in container.decode(stream):
            frame.pts = None  # resample by sample count: broken timestamps are not our concern
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                count += chunks[-1].size
            if count > most:
                raise _too_long(f"more than {limits.max_seconds:g}", limits, param)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size > most:
        raise _too_long(f"{samples.size / SAMPLE_RATE:.1f}", limits, param)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _too_long(seconds: str, limits: AudioLimits, param: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param}: the audio lasts {seconds} seconds, over the model's limit "
        f"max_audio_seconds={limits.max_seconds:g}",
        param=param,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
