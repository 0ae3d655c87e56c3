"""llama.cpp runtime: continuous batching of many sequences in one replica.

Every ``step`` makes one ``llama_decode`` call for the next token of all generating sequences,
then decodes prompt chunks of sequences still reading their prompt, each chunk in a call of
its own (at most ``options.prefill_chunk`` prompt tokens per step, so a long prompt cannot
stall the others). The chunks are kept out of the shared call on purpose: cut at fixed
positions and computed alone, a prompt gives the same numbers, hence the same greedy answer,
whatever else runs in the replica. New sequences take a free slot at the next step; a
finished or cancelled sequence frees its slot and KV cells at once.

Request dict (built by the OpenAI serving layer, plain data so it pickles)::

    prompt: str | list[int]    or   messages: list[{role, content}]
    max_tokens: int | None     (None: to the end of the context, at most max_tokens_cap)
    max_tokens_cap: int | None the server's ceiling for requests that name no max_tokens
    temperature, top_p, top_k, min_p, seed,
    presence_penalty, frequency_penalty, repetition_penalty, stop: list[str],
    response_format: dict | None   (json_object / json_schema, enforced by a grammar)
    grammar: str | None        GBNF that overrides response_format's grammar when set (tools)
    n: int                     choices (default 1; 1 <= n <= options.max_n, default 8, else
                               InvalidInput param="n"); the prompt is prefilled once and its
                               KV cells copied to the n sequences; choice i > 0 of a seeded
                               request draws with seed + i
    logprobs: bool             report each generated token's log-probability
    top_logprobs: int | None   0..20 most likely alternatives per token (InvalidInput
                               param="top_logprobs" otherwise)
    deadline: float | None     (``time.time()`` after which the sequence ends with 504)

Events (``GenerationEvent`` in ``engine/local/messages.py``): ``{"index": i, "text": delta,
"logprobs": [...]}`` while generating; the last event of each choice adds ``finish_reason``
("stop" | "length"), ``usage`` (prompt_tokens, completion_tokens of that choice,
cached_tokens: prompt tokens whose KV cells came from the prefix cache) and ``timings``;
``StepEvent.done`` is set on the last choice's last event only. ``error`` (an ``AimassError``)
ends the whole request.

Admission: a replica holds at most ``max_seqs`` running plus ``limits.max_queue`` waiting
sequences. Sequences added since the last step count as waiting until the step gives them
their slots, so several arriving together are all admitted when slots are free.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as lc

from aimass.errors import AimassError, DeadlineExceeded, InvalidInput, ModelFailed, QueueFull
from aimass.runtimes.base import GenerativeRuntime, StepEvent
from aimass.runtimes.llamacpp.batch import TokenBatch
from aimass.runtimes.llamacpp.chat import pick_template, render_chat
from aimass.runtimes.llamacpp.grammar import grammar_for
from aimass.runtimes.llamacpp.model import ContextConfig, LlamaModel
from aimass.runtimes.llamacpp.sampling import SamplingParams, build_chain
from aimass.runtimes.llamacpp.text import TextStream
from aimass.spec import ModelSpec

DEFAULT_MAX_CONCURRENT = 8
DEFAULT_CTX_PER_SEQ = 2048
DEFAULT_PREFILL_CHUNK = 512
ROW_BLOCK = 4
"""Slots are allocated in multiples of this (llama.cpp computes rows in blocks of 4)."""


@dataclass
class Sequence:
    """One request's generation state inside the replica."""

    req_id: str
    prompt: list[int]
    max_tokens: int
    params: SamplingParams
    deadline: float | None
    text: TextStream
    t_added: float
    slot: int = -1
    chain: Any = None
    n_past: int = 0
    generated: list[int] = field(default_factory=list)
    t_first: float | None = None
    reported: bool = False

    @property
    def prefilled(self) -> bool:
        return self.n_past >= len(self.prompt)


class LlamaCppRuntime(GenerativeRuntime):
    """Any GGUF model through llama.cpp, many sequences decoded together."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        opts = spec.options
        self.max_seqs = int(
            spec.limits.max_concurrent or opts.get("n_parallel", DEFAULT_MAX_CONCURRENT)
        )
        self.max_waiting = spec.limits.max_queue
        self.prefill_chunk = int(opts.get("prefill_chunk", DEFAULT_PREFILL_CHUNK))
        self.llm: LlamaModel | None = None
        self.template: str | None = None
        self.waiting: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}
        self.by_id: dict[str, Sequence] = {}

    # lifecycle

    def load(self) -> None:
        opts = self.spec.options
        per_seq = int(opts.get("n_ctx_per_seq") or 0)
        if not per_seq and opts.get("n_ctx"):
            per_seq = int(opts["n_ctx"]) // self.max_seqs
        streams = -(-self.max_seqs // ROW_BLOCK) * ROW_BLOCK
        config = ContextConfig(
            n_seq=streams,
            n_ctx_per_seq=per_seq or DEFAULT_CTX_PER_SEQ,
            n_batch=max(self.prefill_chunk, streams),
            threads=self.spec.threads,
        )
        self.llm = LlamaModel(self.spec.source, config)
        self.batch = TokenBatch(streams)
        self.prefill_batch = TokenBatch(self.prefill_chunk)
        self.pad_rows = streams if opts.get("batch_invariant", True) else 0
        self.template = pick_template(
            opts.get("chat_template"),
            self.llm.meta("tokenizer.chat_template"),
            self.llm.meta("general.architecture") or "",
        )

    def unload(self) -> None:
        for seq in list(self.by_id.values()):
            self._release(seq)
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def describe(self) -> dict[str, Any]:
        llm = self._llm()
        return {
            "context_length": llm.n_ctx_per_seq,
            "max_concurrent": self.max_seqs,
            "n_vocab": llm.n_vocab,
            "n_ctx_train": llm.n_ctx_train,
            "architecture": llm.meta("general.architecture"),
            "chat_template": self.template is not None,
        }

    def stats(self) -> dict[str, float]:
        used = sum(s.n_past for s in self.running.values())
        total = self._llm().n_ctx_per_seq * self.max_seqs if self.llm else 0
        return {
            "running": float(len(self.running)),
            "waiting": float(len(self.waiting)),
            "kv_used": float(used),
            "kv_total": float(total),
        }

    def _llm(self) -> LlamaModel:
        if self.llm is None:
            raise RuntimeError("model is not loaded")
        return self.llm

    # admission

    def add(self, req_id: str, request: dict[str, Any]) -> None:
        held = len(self.by_id)
        if held >= self.max_seqs + self.max_waiting:
            raise QueueFull(
                f"{held} sequences are running or waiting for a slot; the replica holds "
                f"{self.max_seqs} running (limits.max_concurrent) and "
                f"limits.max_queue={self.max_waiting} waiting"
            )
        prompt = self._prompt_tokens(request)
        params = SamplingParams.from_request(
            {**request, "grammar": grammar_for(request.get("response_format"))}
        )
        max_tokens = self._max_tokens(len(prompt), request.get("max_tokens"))
        if request.get("max_tokens") is None and request.get("max_tokens_cap"):
            max_tokens = min(max_tokens, int(request["max_tokens_cap"]))
        chain = build_chain(params, self._llm().vocab, self._llm().n_vocab, self.penalty_window)
        seq = Sequence(
            req_id=req_id,
            prompt=prompt,
            max_tokens=max_tokens,
            params=params,
            deadline=request.get("deadline"),
            text=TextStream(stops=params.stop),
            t_added=time.time(),
            chain=chain,
        )
        self.by_id[req_id] = seq
        self.waiting.append(seq)

    @property
    def penalty_window(self) -> int:
        return self._llm().n_ctx_per_seq

    def _prompt_tokens(self, request: dict[str, Any]) -> list[int]:
        llm = self._llm()
        if request.get("messages") is not None:
            return self._chat_tokens(request["messages"])
        prompt = request.get("prompt", "")
        if isinstance(prompt, list):
            bad = [t for t in prompt if not isinstance(t, int) or not 0 <= t < llm.n_vocab]
            if bad or not prompt:
                raise InvalidInput(
                    f"prompt token ids must be a non-empty list of ints in [0, {llm.n_vocab})",
                    param="prompt",
                )
            return list(prompt)
        tokens = llm.tokenize(str(prompt), add_special=True)
        if not tokens:
            raise InvalidInput("prompt is empty", param="prompt")
        return tokens

    def _chat_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        llm = self._llm()
        if self.template is None:
            raise InvalidInput(
                f"model {self.spec.name!r} has no chat template: set options.chat_template "
                "in its spec or use /v1/completions",
                param="messages",
            )
        if not messages:
            raise InvalidInput("messages must not be empty", param="messages")
        text = render_chat(
            self.template,
            messages,
            bos_token=llm.piece(llm.bos, special=True).decode("utf-8", "replace"),
            eos_token=llm.piece(llm.eos, special=True).decode("utf-8", "replace"),
        )
        tokens = llm.tokenize(text, add_special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == llm.bos:
            tokens = tokens[1:]  # the template wrote bos_token itself
        return tokens

    def _max_tokens(self, n_prompt: int, requested: int | None) -> int:
        n_ctx = self._llm().n_ctx_per_seq
        if requested is None:
            if n_prompt >= n_ctx:
                raise InvalidInput(
                    f"the prompt has {n_prompt} tokens but the context holds {n_ctx} tokens "
                    "per sequence (options.n_ctx_per_seq)",
                    param="messages",
                )
            return n_ctx - n_prompt
        if requested < 1:
            raise InvalidInput(f"max_tokens must be >= 1, got {requested}", param="max_tokens")
        if n_prompt + requested > n_ctx:
            raise InvalidInput(
                f"the prompt has {n_prompt} tokens and max_tokens is {requested}: "
                f"{n_prompt + requested} exceeds the context of {n_ctx} tokens per sequence "
                "(options.n_ctx_per_seq); shorten the prompt or lower max_tokens",
                param="max_tokens",
            )
        return requested

    def cancel(self, req_id: str) -> None:
        seq = self.by_id.get(req_id)
        if seq is not None:
            self._release(seq)

    def _release(self, seq: Sequence) -> None:
        """Forget a sequence and free its sampler, slot and KV cells now."""
        self.by_id.pop(seq.req_id, None)
        if seq.slot >= 0:
            self.running.pop(seq.slot, None)
            self._llm().free_seq(seq.slot)
            seq.slot = -1
        else:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)
        if seq.chain is not None:
            lc.llama_sampler_free(seq.chain)
            seq.chain = None

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # the step

    def step(self) -> list[StepEvent]:
        events = self._expire(time.time())
        self._admit()
        events += self._decode_generating()
        events += self._prefill()
        return events

    def _admit(self) -> None:
        """Move waiting sequences into free slots (lowest slot first, FIFO order)."""
        free = [s for s in range(self.max_seqs) if s not in self.running]
        while self.waiting and free:
            seq = self.waiting.popleft()
            seq.slot = free.pop(0)
            self.running[seq.slot] = seq

    def _decode_generating(self) -> list[StepEvent]:
        """One ``llama_decode``: the next token of every generating sequence.

        Rows go in slot order, gaps filled with throw-away rows in idle slots, so llama.cpp
        keeps them in one micro-batch. llama.cpp's CPU matrix kernels round differently for
        different row counts, so with ``options.batch_invariant`` (default) every step is padded
        to all slots: a sequence's numbers, and so its greedy output, then never depend on what
        else runs. Without it a lone sequence decodes one row, exactly as llama-cpp-python does,
        and is about twice as fast, but batching may flip near-tied greedy choices.
        """
        llm = self._llm()
        gen = {slot: s for slot, s in self.running.items() if s.prefilled and s.generated}
        if not gen:
            return []
        self.batch.clear()
        rows = self.pad_rows or max(gen) + 1
        dummies: list[tuple[int, int]] = []
        rows_of: list[tuple[Sequence, int]] = []
        for slot in range(rows):
            seq = gen.get(slot)
            if seq is not None:
                rows_of.append((seq, self.batch.add([seq.generated[-1]], seq.n_past, slot, True)))
                seq.n_past += 1
            else:
                pos = self.running[slot].n_past if slot in self.running else 0
                self.batch.add([llm.bos], pos, slot, False)
                dummies.append((slot, pos))
        status = self.batch.decode(llm.ctx)
        for slot, pos in dummies:
            llm.drop_from(slot, pos)
        if status != 0:
            error = ModelFailed(f"llama_decode failed with status {status}")
            return [self._error(seq, error) for seq, _ in rows_of]
        now = time.time()
        events = []
        for seq, index in rows_of:
            event = self._on_token(seq, lc.llama_sampler_sample(seq.chain, llm.ctx, index), now)
            if event is not None:
                events.append(event)
        return events

    def _prefill(self) -> list[StepEvent]:
        """Prompt chunks, each its own ``llama_decode`` with fixed boundaries (multiples of
        ``prefill_chunk``), so a prompt is always cut and computed the same way; at most
        ``prefill_chunk`` prompt tokens per step keep the generating sequences moving."""
        budget = self.prefill_chunk
        events: list[StepEvent] = []
        for slot in sorted(self.running):
            seq = self.running.get(slot)
            if seq is None or seq.prefilled:
                continue
            end = min(len(seq.prompt), (seq.n_past // self.prefill_chunk + 1) * self.prefill_chunk)
            take = end - seq.n_past
            if take > budget:
                break
            budget -= take
            event = self._prefill_chunk(seq, end)
            if event is not None:
                events.append(event)
        return events

    def _prefill_chunk(self, seq: Sequence, end: int) -> StepEvent | None:
        """Decode prompt tokens up to ``end``; sample the first token once the prompt is in."""
        llm = self._llm()
        self.prefill_batch.clear()
        last = end == len(seq.prompt)
        index = self.prefill_batch.add(seq.prompt[seq.n_past : end], seq.n_past, seq.slot, last)
        status = self.prefill_batch.decode(llm.ctx)
        if status != 0:
            return self._error(seq, ModelFailed(f"llama_decode failed with status {status}"))
        seq.n_past = end
        if not last:
            return None
        token = lc.llama_sampler_sample(seq.chain, llm.ctx, index)
        return self._on_token(seq, token, time.time())

    def _on_token(self, seq: Sequence, token: int, now: float) -> StepEvent | None:
        if seq.t_first is None:
            seq.t_first = now
        llm = self._llm()
        if llm.is_eog(token):
            return self._finish(seq, "stop", seq.text.finish())
        seq.generated.append(token)
        delta = seq.text.push(llm.piece(token))
        if seq.text.stopped:
            return self._finish(seq, "stop", delta)
        if len(seq.generated) >= seq.max_tokens:
            return self._finish(seq, "length", delta + seq.text.finish())
        if not delta:
            return None
        data: dict[str, Any] = {"text": delta}
        if not seq.reported:  # gauges follow sequences as they start, not only as they end
            seq.reported = True
            data["stats"] = self.stats()
        return StepEvent(seq.req_id, data)

    def _finish(self, seq: Sequence, reason: str, delta: str) -> StepEvent:
        self._release(seq)
        data = {
            "text": delta,
            "finish_reason": reason,
            "usage": {
                "prompt_tokens": len(seq.prompt),
                "completion_tokens": len(seq.generated),
            },
            "timings": {
                "queued_at": seq.t_added,
                "first_token_at": seq.t_first,
                "finished_at": time.time(),
            },
            "stats": self.stats(),
        }
        return StepEvent(seq.req_id, data, done=True)

    def _expire(self, now: float) -> list[StepEvent]:
        late = [s for s in self.by_id.values() if s.deadline is not None and now > s.deadline]
        error = DeadlineExceeded("the request ran past its deadline (limits.timeout_s)")
        return [self._error(s, error) for s in late]

    def _error(self, seq: Sequence, error: AimassError) -> StepEvent:
        self._release(seq)
        return StepEvent(seq.req_id, {"error": error, "stats": self.stats()}, done=True)
