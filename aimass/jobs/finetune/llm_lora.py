"""LoRA fine-tuning of a GGUF LLM (the built-in Gemma) on OpenAI's chat JSONL, in a job's child.

Run by the fine-tuning job's child (``child.py``, nice 19, one or two torch threads) through
``llm.train``; it tells the job through the child's ``Report``:

- progress per step, and an event per step with its loss;
- a checkpoint after each epoch, once the adapter, the optimizer's state and the step are saved
  under its ``path``: a restarted job passes that path as ``resume`` and goes on from the next
  epoch, never training an epoch twice;
- an ``Evaluation`` event with the validation loss and perplexity of the candidate and of the
  base model, side by side, also written to ``out_dir/result.json`` with the adapter's path.

Choices, measured on 2 cores (docs/fine_tuning_llm.md has the figures): transformers loads the
GGUF with ``gguf_file=`` and dequantizes it (about a minute for Gemma 3 270M); peft trains
rank-8 LoRA on q/k/v/o; the loss counts assistant tokens only; the adapter is written as a
llama.cpp LoRA GGUF (``lora_gguf.py``) and served on the unchanged base, rather than merged and
re-quantized (no quantizer ships with llama-cpp-python, and re-quantizing a merged model
would blur the few weights a small adapter changes).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.jobs.finetune.gemma_chat import chat_pieces
from aimass.jobs.finetune.lora_gguf import PROJECTIONS, architecture, write_adapter

BASE_LEARNING_RATE = 1e-3
"""Scaled by ``learning_rate_multiplier``; LoRA on a 270M model learns a fact in ~20 steps."""
LORA_RANK, LORA_ALPHA = 8, 16
IGNORE = -100
"""Label of a token the loss does not count (prompt, padding, weight-0 answers)."""
ADAPTER_FILE, RESULT_FILE = "adapter.gguf", "result.json"


@dataclass
class TrainParams:
    """What one training run needs; written as JSON by the job, read by the child."""

    base_gguf: str
    training_file: str
    out_dir: str
    checkpoint_dir: str
    validation_file: str | None = None
    n_epochs: int = 3
    batch_size: int = 4
    learning_rate_multiplier: float = 1.0
    seed: int = 0
    max_tokens: int = 512
    """Longest example in tokens (longer ones are cut; the logits of Gemma's 262k-token
    vocabulary dominate the cost of long batches)."""
    threads: int = 1
    resume: str | None = None
    """A checkpoint folder of an earlier attempt (``checkpoint`` event's ``path``)."""


def read_examples(path: str) -> list[dict[str, Any]]:
    """The examples the job validated (``validate_chat_lines``) and wrote a line each."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class Tokenizer:
    """The GGUF's own tokenizer through llama.cpp (vocabulary only): the tokens the served
    model will see, loaded in seconds where transformers' GGUF tokenizer conversion of Gemma's
    262k-token vocabulary took most of a 101 s load."""

    def __init__(self, base_gguf: str) -> None:
        import llama_cpp

        self.llama = llama_cpp.Llama(model_path=base_gguf, vocab_only=True, verbose=False)
        self.bos = self.llama.token_bos()

    def __call__(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def encode(tokenizer: Tokenizer, messages: list[dict[str, Any]], max_tokens: int) -> dict:
    """Token ids and labels of one example: each piece tokenized on its own (special tokens
    parsed), labels ``IGNORE`` except on learned pieces."""
    ids, labels = [tokenizer.bos], [IGNORE]
    for text, learned in chat_pieces(messages):
        piece = tokenizer(text)
        ids += piece
        labels += piece if learned else [IGNORE] * len(piece)
    return {"input_ids": ids[:max_tokens], "labels": labels[:max_tokens]}


def collate(rows: list[dict[str, list]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
    labels = [r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows]
    mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def load_base(base_gguf: str) -> Any:
    """The GGUF as a float32 transformers model (dequantized: the exact weights llama.cpp
    serves, so the adapter is trained against what it will be applied to)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # its bars would become the job's log events, one per redraw
    path = Path(base_gguf)
    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )


def with_lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=list(PROJECTIONS),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def token_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Mean cross-entropy of the learned tokens of a batch, and their count.

    Logits are computed only at the positions that predict a learned token
    (``logits_to_keep``): Gemma's 262k-token vocabulary makes the output projection the
    largest cost of a short batch, and most positions are prompt."""
    import torch
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]
    keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=keep,
    )
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    wanted = targets[targets != IGNORE]
    return F.cross_entropy(logits, wanted), int(wanted.numel())


def mean_loss(model: Any, rows: list[dict[str, list]], batch_size: int, pad_id: int) -> float:
    """Loss per learned token over ``rows`` (each token counts once, whatever the batching)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            loss, n = token_loss(model, collate(rows[start : start + batch_size], pad_id))
            if n:
                total += float(loss) * n
                count += n
    return total / max(count, 1)


def evaluate(model: Any, rows: list[dict[str, list]], params: TrainParams, pad_id: int) -> dict:
    """Validation loss and perplexity of the candidate and of the base (adapter disabled)."""
    candidate = mean_loss(model, rows, params.batch_size, pad_id)
    with model.disable_adapter():
        base = mean_loss(model, rows, params.batch_size, pad_id)
    return {
        "validation_loss": round(candidate, 6),
        "validation_perplexity": round(math.exp(min(candidate, 50.0)), 4),
        "base_validation_loss": round(base, 6),
        "base_validation_perplexity": round(math.exp(min(base, 50.0)), 4),
        "validation_examples": len(rows),
    }


def save_checkpoint(model: Any, optimizer: Any, epoch: int, step: int, root: Path) -> Path:
    import torch

    folder = root / f"epoch-{epoch}"
    model.save_pretrained(folder, save_embedding_layers=False)
    torch.save(
        {"optimizer": optimizer.state_dict(), "epoch": epoch, "step": step}, folder / "state.pt"
    )
    return folder


def restore(model: Any, optimizer: Any, folder: Path) -> tuple[int, int]:
    """Load a checkpoint's adapter and optimizer; the epoch and step it ended."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    state = torch.load(folder / "state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), int(state["step"])


def train(params: TrainParams, report: Any) -> dict[str, Any]:
    """The whole run: load, train (resuming), evaluate, write the adapter; see the module note."""
    import torch
    from peft import get_peft_model_state_dict

    torch.set_num_threads(params.threads)
    torch.manual_seed(params.seed)
    examples = read_examples(params.training_file)
    held = read_examples(params.validation_file) if params.validation_file else examples
    started = time.monotonic()
    tokenizer = Tokenizer(params.base_gguf)
    base = load_base(params.base_gguf)
    report.event("Loaded the base model", seconds=round(time.monotonic() - started, 1))
    model = with_lora(base)
    pad_id = 0  # padding is masked out of attention and loss: any id will do
    rows = [encode(tokenizer, e["messages"], params.max_tokens) for e in examples]
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=BASE_LEARNING_RATE * params.learning_rate_multiplier,
    )
    epoch, step = restore(model, optimizer, Path(params.resume)) if params.resume else (0, 0)
    per_epoch = math.ceil(len(rows) / params.batch_size)
    report.total = per_epoch * params.n_epochs
    if epoch:
        report.event(f"resuming after epoch {epoch} from its checkpoint", epoch=epoch)
    while epoch < params.n_epochs:
        epoch += 1
        step, loss = run_epoch(model, optimizer, rows, params, epoch, step, report, pad_id)
        folder = save_checkpoint(model, optimizer, epoch, step, Path(params.checkpoint_dir))
        report.save(epoch, step, str(folder), {"train_loss": loss})
    held_rows = [encode(tokenizer, e["messages"], params.max_tokens) for e in held]
    metrics = evaluate(model, held_rows, params, pad_id)
    report.event("Evaluation", **metrics)
    out = Path(params.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adapter = out / ADAPTER_FILE
    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    write_adapter(state, LORA_ALPHA, architecture(params.base_gguf), adapter)
    result = {"adapter": str(adapter), "trained_steps": step, "metrics": metrics}
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def run_epoch(
    model: Any,
    optimizer: Any,
    rows: list[dict[str, list]],
    params: TrainParams,
    epoch: int,
    step: int,
    report: Any,
    pad_id: int,
) -> tuple[int, float]:
    """One pass over the rows in an order fixed by the seed and epoch (a resumed run sees the
    same order); returns the step count after it and the last step's loss."""
    order = list(range(len(rows)))
    random.Random(params.seed * 1000 + epoch).shuffle(order)
    model.train()
    for start in range(0, len(order), params.batch_size):
        batch = collate([rows[i] for i in order[start : start + params.batch_size]], pad_id)
        loss, _ = token_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        value = loss.item()
        report.progress(epoch, step)
        report.event(
            f"Step {step}/{report.total}: training loss={value:.4f}", step=step, train_loss=value
        )
    return step, value
