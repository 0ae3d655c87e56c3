"""The audio decoder: limits while decoding, the accepted formats, and only client errors out
of any bytes (a hypothesis fuzz of random, truncated and corrupted files)."""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.media.audio import SAMPLE_RATE, AudioLimits, decode_audio, sniff

LIMITS = AudioLimits(max_bytes=1 << 20, max_seconds=5.0)
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)


def wav(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def encode(container: str, codec: str, rate: int, samples: np.ndarray = TONE) -> bytes:
    """``samples`` (16 kHz) encoded with PyAV, resampled to the codec's ``rate``."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for part in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(part):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


SAMPLES = {
    "wav": wav(TONE),
    "mp3": encode("mp3", "libmp3lame", 16000),
    "flac": encode("flac", "flac", 16000),
    "ogg": encode("ogg", "libopus", 48000),
    "webm": encode("webm", "libopus", 48000),
    "m4a": encode("ipod", "aac", 16000),
}


def decodes_or_refuses(data: bytes) -> None:
    try:
        samples = decode_audio(data, LIMITS)
    except (InvalidInput, PayloadTooLarge):
        return
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 0 < samples.size <= LIMITS.max_seconds * SAMPLE_RATE


@pytest.mark.parametrize("name", list(SAMPLES))
def test_decodes_every_accepted_format_to_16k_mono(name: str) -> None:
    samples = decode_audio(SAMPLES[name], LIMITS)
    assert samples.dtype == np.float32
    assert abs(samples.size / SAMPLE_RATE - 1.0) < 0.1, samples.size  # encoders pad a little
    assert 0.15 < float(np.sqrt(np.mean(samples**2))) < 0.25  # the tone's RMS is 0.21


def test_other_sample_rates_are_resampled() -> None:
    samples = decode_audio(wav(np.zeros(44100, np.float32) + 0.1, rate=44100), LIMITS)
    assert abs(samples.size - SAMPLE_RATE) < 50


def test_over_max_bytes_names_the_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="max_audio_bytes=100"):
        decode_audio(SAMPLES["wav"], AudioLimits(max_bytes=100))


@pytest.mark.parametrize("name", ["wav", "mp3", "flac"])
def test_over_max_seconds_names_the_limit(name: str) -> None:
    with pytest.raises(PayloadTooLarge, match=r"max_audio_seconds=0\.5"):
        decode_audio(SAMPLES[name], AudioLimits(max_seconds=0.5))


def test_a_length_the_header_does_not_declare_is_caught_while_decoding() -> None:
    """A FLAC whose STREAMINFO says "length unknown" (0 samples): decoding stops at the limit."""
    tone = np.tile(TONE, 3)
    data = bytearray(encode("flac", "flac", 16000, tone))
    data[21] &= 0xF0  # STREAMINFO's 36-bit total sample count, at byte 8 + 13
    data[22:26] = bytes(4)
    with av.open(io.BytesIO(bytes(data)), format="flac") as container:
        assert container.duration is None
    assert decode_audio(bytes(data), LIMITS).size == tone.size
    with pytest.raises(PayloadTooLarge, match=r"more than 1 seconds.*max_audio_seconds=1"):
        decode_audio(bytes(data), AudioLimits(max_seconds=1.0))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not an audio file"),
        (b"hello world, not a sound", "not an audio file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an audio file"),
        (b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nfile:///etc/passwd\n", "not an audio file"),
        (SAMPLES["wav"][:44], "no sound could be decoded"),
        (b"RIFF\0\0\0\0WAVEjunk", "wav"),
    ],
)
def test_not_audio_or_empty_is_a_400_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        decode_audio(data, LIMITS)
    assert caught.value.param == "file"


def test_the_container_is_chosen_from_the_magic_bytes_only() -> None:
    assert {name: sniff(data) for name, data in SAMPLES.items()} == {
        "wav": "wav",
        "mp3": "mp3",
        "flac": "flac",
        "ogg": "ogg",
        "webm": "matroska",
        "m4a": "mov",
    }
    assert sniff(b"#EXTM3U\n") is None  # FFmpeg's HLS demuxer would open the files it names


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_give_client_errors(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.sampled_from(list(SAMPLES)), st.binary(max_size=8))
def test_random_bytes_after_a_real_header_only_give_client_errors(name: str, tail: bytes) -> None:
    decodes_or_refuses(SAMPLES[name][:64] + tail)


@FUZZ
@given(st.sampled_from(list(SAMPLES)), st.floats(0, 1))
def test_truncated_files_only_give_client_errors(name: str, keep: float) -> None:
    data = SAMPLES[name]
    decodes_or_refuses(data[: int(len(data) * keep)])


@FUZZ
@given(
    st.sampled_from(list(SAMPLES)),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=16),
)
def test_corrupted_files_only_give_client_errors(name: str, flips: list) -> None:
    data = bytearray(SAMPLES[name])
    for where, value in flips:
        data[int(where * len(data))] = value
    decodes_or_refuses(bytes(data))
