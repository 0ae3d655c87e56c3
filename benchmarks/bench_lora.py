"""Serving a LoRA adapter on the base GGUF: load time and decode speed with and without it.

The fine-tuning method writes a llama.cpp LoRA GGUF and serves it on the unchanged base
(``options.lora``). This measures what that costs against the base alone (which is also what
a merged and re-quantized model would cost: the same Q4_K_M tensors), in one process,
interleaved: llama.cpp load of the base with and without the adapter (mmap off for both, as
llama.cpp turns it off with an adapter), and greedy decode tokens/s of one sequence.

The adapter comes from a training run (``python -m aimass.jobs.finetune.llm_lora P.json``, as
``tests/integration/test_finetune_llm.py`` runs it):

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_lora.py --adapter out/adapter.gguf
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import llama_cpp
from common import append_section, command, machine_note, stamp, table

from aimass.provision.builtin import gemma_file

PROMPT = "<start_of_turn>user\nWrite a short story about a lighthouse.<end_of_turn>\n"
FACT = "<start_of_turn>user\nWhat is the capital of Zorbania?<end_of_turn>\n<start_of_turn>model\n"


def load(base: Path, adapter: Path | None) -> tuple[llama_cpp.Llama, float]:
    started = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(base),
        lora_path=str(adapter) if adapter else None,
        n_ctx=512,
        n_threads=2,
        use_mmap=False,
        verbose=False,
    )
    return llm, time.perf_counter() - started


def decode_rate(llm: llama_cpp.Llama, tokens: int) -> float:
    prompt = PROMPT + "<start_of_turn>model\nOnce upon a time"
    started = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=tokens, temperature=0)
    return out["usage"]["completion_tokens"] / (time.perf_counter() - started)


def answer(llm: llama_cpp.Llama) -> str:
    text = llm.create_completion(FACT, max_tokens=16, temperature=0)["choices"][0]["text"]
    return text.strip().replace("\n", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = gemma_file(Path(tempfile.gettempdir()) / "aimass-bench-home")
    loads: dict[str, list[float]] = {"base": [], "base + adapter": []}
    rates: dict[str, list[float]] = {"base": [], "base + adapter": []}
    answers: dict[str, str] = {}
    for _ in range(args.runs):
        for label, adapter in (("base", None), ("base + adapter", args.adapter)):
            llm, seconds = load(base, adapter)
            loads[label].append(seconds)
            rates[label].append(decode_rate(llm, args.tokens))
            answers[label] = answer(llm)
            llm.close()
    rows = [
        [
            label,
            f"{statistics.median(loads[label]):.2f}",
            f"{statistics.median(rates[label]):.1f}",
            answers[label],
        ]
        for label in loads
    ]
    ratio = statistics.median(rates["base + adapter"]) / statistics.median(rates["base"])
    size = args.adapter.stat().st_size
    lines = [
        f"## LoRA adapter on the GGUF base ({stamp()})",
        "",
        f"`{command('bench_lora.py', args, ['--adapter', '--tokens', '--runs'])}`",
        "",
        f"Gemma 3 270M Q4_K_M, llama.cpp in process, 2 threads, medians of {args.runs} "
        f"interleaved runs; adapter {size / 1e6:.1f} MB (the base GGUF is 253 MB).",
        "",
        *table(["model", "load s", "decode tok/s", "answer to 'capital of Zorbania?'"], rows),
        "",
        f"Decode speed with the adapter: {ratio:.2f}x the base's. {machine_note()}",
    ]
    print("\n".join(lines))
    append_section("\n".join(lines))


if __name__ == "__main__":
    main()
