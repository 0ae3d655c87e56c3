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
    grammar: str | None        GBNF that overrides response_format's grammar when set
    tools: list[dict] | None   OpenAI tool definitions, rendered by the chat template
    tool_choice: str | dict    "auto" | "required" | {"type": "function", "function": {name}}:
                               the last two force a call by a grammar (grammar.tool_grammar)
    parallel_tool_calls: bool  a forced answer may hold several calls (default True)
    logit_bias: dict[str, float] | None   token id -> bias in [-100, 100]
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
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aimass.errors import AimassError, DeadlineExceeded, InvalidInput, ModelFailed, QueueFull
from aimass.runtimes.base import GenerativeRuntime, StepEvent
from aimass.runtimes.llamacpp.batch import TokenBatch
from aimass.runtimes.llamacpp.chat import pick_template, render_chat
from aimass.runtimes.llamacpp.grammar import request_grammar
from aimass.runtimes.llamacpp.logprobs import MAX_TOP_LOGPROBS, token_logprob
from aimass.runtimes.llamacpp.model import ContextConfig, LlamaModel, Lora
from aimass.runtimes.llamacpp.prefix_cache import PrefixCache, exact_prefix
from aimass.runtimes.llamacpp.sampling import SamplingParams, build_chain
from aimass.runtimes.llamacpp.text import TextStream
from aimass.spec import ModelSpec

DEFAULT_MAX_CONCURRENT = 8
DEFAULT_CTX_PER_SEQ = 2048
DEFAULT_PREFILL_CHUNK = 512
DEFAULT_MAX_N = 8
ROW_BLOCK = 4
"""Slots are allocated in multiples of this (llama.cpp computes rows in blocks of 4)."""


@dataclass
class Request:
    """One request: its prompt, shared by its ``n`` choices, and what they have in common."""

    req_id: Any
    prompt: list[int]
    max_tokens: int
    deadline: float | None
    t_added: float
    top_logprobs: int | None
    """None: no logprobs; else how many alternatives to report per token (0..20)."""
    choices: list[Choice] = field(default_factory=list)
    cached: int = 0
    """Prompt tokens whose KV cells came from the prefix cache."""
    open: int = 0
    """Choices that have not sent their last event."""

    @property
    def leader(self) -> Choice:
        """Choice 0 reads the prompt; the others get a copy of its cells."""
        return self.choices[0]


@dataclass
class Choice:
    """One generated sequence of a request: a slot, a sampler chain, its own text."""

    request: Request
    index: int
    params: SamplingParams
    text: TextStream
    chain: Any = None
    slot: int = -1
    n_past: int = 0
    generated: list[int] = field(default_factory=list)
    t_first: float | None = None
    reported: bool = False
    done: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Logprobs of tokens whose text ``TextStream`` still holds back."""

    @property
    def prefilled(self) -> bool:
        return self.n_past >= len(self.request.prompt)

    def exact_tokens(self, chunk: int) -> list[int]:
        """The tokens of the cells in this choice's slot that a later prompt may reuse exactly
        (see ``prefix_cache``): whole prompt chunks while reading the prompt, then the prompt
        cut by ``exact_prefix``; never generated tokens."""
        prompt = self.request.prompt
        if self.n_past < len(prompt):
            return prompt[: self.n_past - self.n_past % chunk]
        return prompt[: exact_prefix(len(prompt), chunk)]


class LlamaCppRuntime(GenerativeRuntime):
    """Any GGUF model through llama.cpp, many sequences decoded together."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        opts = spec.options
        self.max_seqs = int(
            spec.limits.max_concurrent or opts.get("n_parallel", DEFAULT_MAX_CONCURRENT)
        )
        self.max_waiting = spec.limits.max_queue
        self.max_n = min(int(opts.get("max_n", DEFAULT_MAX_N)), self.max_seqs)
        self.prefill_chunk = int(opts.get("prefill_chunk", DEFAULT_PREFILL_CHUNK))
        self.invariant = bool(opts.get("batch_invariant", False))
        self.llm: LlamaModel | None = None
        self.template: str | None = None
        self.waiting: deque[Request] = deque()
        self.running: dict[int, Choice] = {}
        self.by_id: dict[Any, Request] = {}
        cache = bool(opts.get("prefix_cache", not self.invariant))
        self.prefix = PrefixCache(self.max_seqs, cache, self.prefill_chunk)
        self.prefilled_tokens = 0
        """Prompt tokens decoded since load (cached and copied ones are not)."""

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
        lora = Lora(opts["lora"], float(opts.get("lora_scale", 1.0))) if opts.get("lora") else None
        self.llm = LlamaModel(self.spec.source, config, lora)
        self.batch = TokenBatch(streams)
        self.prefill_batch = TokenBatch(self.prefill_chunk)
        self.pad_rows = streams if self.invariant else 0
        self.template = pick_template(
            opts.get("chat_template"),
            self.llm.meta("tokenizer.chat_template"),
            self.llm.meta("general.architecture") or "",
        )

    def unload(self) -> None:
        for request in list(self.by_id.values()):
            self._release(request)
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def describe(self) -> dict[str, Any]:
        llm = self._llm()
        return {
            "context_length": llm.n_ctx_per_seq,
            "max_concurrent": self.max_seqs,
            "max_n": self.max_n,
            "n_vocab": llm.n_vocab,
            "n_ctx_train": llm.n_ctx_train,
            "architecture": llm.meta("general.architecture"),
            "chat_template": self.template is not None,
            "batch_invariant": self.invariant,
            "prefix_cache": self.prefix.enabled,
        }

    def stats(self) -> dict[str, float]:
        used = sum(c.n_past for c in self.running.values())
        total = self._llm().n_ctx_per_seq * self.max_seqs if self.llm else 0
        return {
            "running": float(len(self.running)),
            "waiting": float(sum(len(r.choices) for r in self.waiting)),
            "kv_used": float(used),
            "kv_cached": float(self.prefix.cached_tokens),
            "kv_total": float(total),
        }

    def _llm(self) -> LlamaModel:
        if self.llm is None:
            raise RuntimeError("model is not loaded")
        return self.llm

    # admission

    def add(self, req_id: Any, request: dict[str, Any]) -> None:
        n = self._n(request.get("n"))
        held = sum(len(r.choices) for r in self.by_id.values())
        if held + n > self.max_seqs + self.max_waiting:
            raise QueueFull(
                f"{held} sequences are running or waiting for a slot; the replica holds "
                f"{self.max_seqs} running (limits.max_concurrent) and "
                f"limits.max_queue={self.max_waiting} waiting"
            )
        prompt = self._prompt_tokens(request)
        grammar = request_grammar(request)  # own, a forced tool call's, response_format's
        params = SamplingParams.from_request({**request, "grammar": grammar})
        max_tokens = self._max_tokens(len(prompt), request.get("max_tokens"))
        if request.get("max_tokens") is None and request.get("max_tokens_cap"):
            max_tokens = min(max_tokens, int(request["max_tokens_cap"]))
        req = Request(
            req_id=req_id,
            prompt=prompt,
            max_tokens=max_tokens,
            deadline=request.get("deadline"),
            t_added=time.time(),
            top_logprobs=_top_logprobs(request),
        )
        llm = self._llm()
        try:
            for i in range(n):
                choice_params = _choice_params(params, i)
                choice = Choice(req, i, choice_params, TextStream(stops=params.stop))
                req.choices.append(choice)
                choice.chain = build_chain(
                    choice_params, llm.vocab, llm.n_vocab, self.penalty_window
                )
        except BaseException:
            self._free_chains(req)
            raise
        req.open = n
        self.by_id[req_id] = req
        self.waiting.append(req)

    def _n(self, value: Any) -> int:
        n = 1 if value is None else int(value)
        if not 1 <= n <= self.max_n:
            raise InvalidInput(
                f"n must be in [1, {self.max_n}] for model {self.spec.name!r} "
                f"(options.max_n, at most limits.max_concurrent), got {n}",
                param="n",
            )
        return n

    @property
    def penalty_window(self) -> int:
        return self._llm().n_ctx_per_seq

    def _prompt_tokens(self, request: dict[str, Any]) -> list[int]:
        llm = self._llm()
        if request.get("messages") is not None:
            return self._chat_tokens(request["messages"], request.get("tools"))
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

    def _chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
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
            tools=tools,
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

    def cancel(self, req_id: Any) -> None:
        request = self.by_id.get(req_id)
        if request is not None:
            self._release(request)

    def _release(self, request: Request) -> None:
        """Forget a request: its choices leave their slots now (their cells stay behind as a
        prefix-cache entry, or are freed), and their samplers are freed."""
        self.by_id.pop(request.req_id, None)
        with contextlib.suppress(ValueError):
            self.waiting.remove(request)
        for choice in request.choices:
            self._leave(choice)
        self._free_chains(request)

    def _leave(self, choice: Choice) -> None:
        """Take a choice out of its slot, keeping its cells as a cache entry if enabled."""
        if choice.slot < 0:
            return
        self.running.pop(choice.slot, None)
        kept = self.prefix.keep(choice.slot, choice.exact_tokens(self.prefill_chunk))
        self._llm().drop_from(choice.slot, kept)
        choice.slot = -1

    @staticmethod
    def _free_chains(request: Request) -> None:
        for choice in request.choices:
            if choice.chain is not None:
                choice.chain.free()
                choice.chain = None

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
        """Give waiting requests (FIFO) the lowest free slots, one per choice, and start the
        leader on the longest cached prefix of its prompt (see ``prefix_cache``)."""
        while self.waiting:
            request = self.waiting[0]
            free = [s for s in range(self.max_seqs) if s not in self.running]
            n = len(request.choices)
            if len(free) < n:
                return
            self.waiting.popleft()
            live = {s: c.exact_tokens(self.prefill_chunk) for s, c in self.running.items()}
            source, reuse = self.prefix.best(request.prompt, live)
            slots, spare = free[:n], free[n:]
            for slot in slots:
                if slot != source:
                    self._shelter(slot, spare, keep=source)
            self._start_leader(request.leader, slots[0], source, reuse)
            for choice, slot in zip(request.choices, slots, strict=True):
                self.prefix.drop(slot)
                choice.slot = slot
                self.running[slot] = choice

    def _shelter(self, slot: int, spare: list[int], keep: int) -> None:
        """``slot`` is about to be taken: its cache entry, if any, moves to a spare free slot
        holding an older one (evicting the least recently used prefix), or is dropped."""
        shelter = self.prefix.shelter(slot, spare, keep)
        if shelter is not None:
            self._llm().copy_seq(slot, shelter)
            self.prefix.move(slot, shelter)

    def _start_leader(self, leader: Choice, slot: int, source: int, reuse: int) -> None:
        """Set the leader's slot up: the reused prefix copied in (or kept in place), the rest
        of the cells dropped."""
        llm = self._llm()
        if reuse and source != slot:
            llm.copy_seq(source, slot)
        if reuse:
            llm.drop_from(slot, reuse)
        else:
            llm.free_seq(slot)
        leader.n_past = reuse
        leader.request.cached = reuse

    def _decode_generating(self) -> list[StepEvent]:
        """One ``llama_decode``: the next token of every generating sequence.

        Rows go in slot order, gaps filled with throw-away rows in idle slots, so llama.cpp
        keeps them in one micro-batch (it computes the consecutive streams of a step
        together). By default only slots ``0..max`` are computed: a lone sequence decodes one
        row, exactly as llama-cpp-python does. llama.cpp's CPU matrix kernels round
        differently for different row counts, so batching may flip near-tied greedy choices;
        with ``options.batch_invariant`` every step is padded to all slots, and a sequence's
        numbers then never depend on what else runs (at about half the single-stream speed).
        """
        llm = self._llm()
        gen = {slot: c for slot, c in self.running.items() if c.prefilled and c.generated}
        if not gen:
            return []
        self.batch.clear()
        rows = self.pad_rows or max(gen) + 1
        dummies: list[tuple[int, int]] = []
        rows_of: list[tuple[Choice, int]] = []
        for slot in range(rows):
            choice = gen.get(slot)
            if choice is not None:
                index = self.batch.add([choice.generated[-1]], choice.n_past, slot, True)
                rows_of.append((choice, index))
                choice.n_past += 1
            else:
                pos = self._idle_pos(slot)
                self.batch.add([llm.bos], pos, slot, False)
                dummies.append((slot, pos))
        status = self.batch.decode(llm.ctx)
        for slot, pos in dummies:
            llm.drop_from(slot, pos)
        if status != 0:
            error = ModelFailed(f"llama_decode failed with status {status}")
            failed = {id(c.request): c.request for c, _ in rows_of}
            return [self._error(r, error) for r in failed.values()]
        now = time.time()
        events = []
        for choice, index in rows_of:
            if choice.request.req_id not in self.by_id:
                continue  # a sibling choice's error ended the request in this step
            event = self._sample(choice, index, now)
            if event is not None:
                events.append(event)
        return events

    def _idle_pos(self, slot: int) -> int:
        """Where a throw-away row in ``slot`` goes: after the cells the slot holds."""
        choice = self.running.get(slot)
        if choice is not None:
            return choice.n_past
        entry = self.prefix.entries[slot]
        return len(entry.tokens) if entry is not None else 0

    def _prefill(self) -> list[StepEvent]:
        """Prompt chunks, each its own ``llama_decode`` with fixed boundaries (multiples of
        ``prefill_chunk``), so a prompt is always cut and computed the same way; at most
        ``prefill_chunk`` prompt tokens per step keep the generating sequences moving."""
        budget = self.prefill_chunk
        events: list[StepEvent] = []
        for slot in sorted(self.running):
            choice = self.running.get(slot)
            if choice is None or choice.index or choice.prefilled:
                continue
            prompt = choice.request.prompt
            end = min(len(prompt), (choice.n_past // self.prefill_chunk + 1) * self.prefill_chunk)
            take = end - choice.n_past
            if take > budget:
                break
            budget -= take
            events += self._prefill_chunk(choice, end)
        return events

    def _prefill_chunk(self, leader: Choice, end: int) -> list[StepEvent]:
        """Decode prompt tokens up to ``end``; once the prompt is in, copy its cells to the
        other choices and sample every choice's first token from the same logits."""
        llm = self._llm()
        request = leader.request
        self.prefill_batch.clear()
        last = end == len(request.prompt)
        chunk = request.prompt[leader.n_past : end]
        index = self.prefill_batch.add(chunk, leader.n_past, leader.slot, last)
        status = self.prefill_batch.decode(llm.ctx)
        if status != 0:
            return [self._error(request, ModelFailed(f"llama_decode failed with status {status}"))]
        self.prefilled_tokens += len(chunk)
        leader.n_past = end
        if not last:
            return []
        for choice in request.choices[1:]:
            llm.copy_seq(leader.slot, choice.slot)
            choice.n_past = end
        now = time.time()
        events = []
        for choice in request.choices:
            if request.req_id not in self.by_id:
                break  # a sibling choice's error ended the request
            event = self._sample(choice, index, now)
            if event is not None:
                events.append(event)
        return events

    def _sample(self, choice: Choice, index: int, now: float) -> StepEvent | None:
        llm = self._llm()
        try:
            token = choice.chain.sample(llm.ctx, index)
        except InvalidInput as exc:
            return self._error(choice.request, exc)
        top = choice.request.top_logprobs
        if top is not None and not llm.is_eog(token):
            choice.pending.append(token_logprob(llm.logits(index), token, top, llm.piece))
        return self._on_token(choice, token, now)

    def _on_token(self, choice: Choice, token: int, now: float) -> StepEvent | None:
        if choice.t_first is None:
            choice.t_first = now
        llm = self._llm()
        if llm.is_eog(token):
            return self._finish(choice, "stop", choice.text.finish())
        choice.generated.append(token)
        delta = choice.text.push(llm.piece(token))
        if choice.text.stopped:
            return self._finish(choice, "stop", delta)
        if len(choice.generated) >= choice.request.max_tokens:
            return self._finish(choice, "length", delta + choice.text.finish())
        if not delta:
            return None
        data: dict[str, Any] = {"index": choice.index, "text": delta}
        self._attach_logprobs(choice, data, delta)
        if not choice.reported:  # gauges follow sequences as they start, not only as they end
            choice.reported = True
            data["stats"] = self.stats()
        return StepEvent(choice.request.req_id, data)

    def _attach_logprobs(self, choice: Choice, data: dict[str, Any], text: str) -> None:
        """Put the logprobs of the tokens whose text is released now on the event; after a
        stop string, only those of the tokens before it."""
        if choice.request.top_logprobs is None:
            return
        entries, choice.pending = choice.pending, []
        if choice.text.stopped:
            kept, length = [], 0
            for entry in entries:
                length += len(entry["token"])
                if length > len(text):
                    break
                kept.append(entry)
            entries = kept
        data["logprobs"] = entries

    def _finish(self, choice: Choice, reason: str, delta: str) -> StepEvent:
        request = choice.request
        self._leave(choice)
        choice.done = True
        request.open -= 1
        data: dict[str, Any] = {
            "index": choice.index,
            "text": delta,
            "finish_reason": reason,
            "usage": {
                "prompt_tokens": len(request.prompt),
                "completion_tokens": len(choice.generated),
                "cached_tokens": request.cached,
            },
            "timings": {
                "queued_at": request.t_added,
                "first_token_at": choice.t_first,
                "finished_at": time.time(),
            },
        }
        self._attach_logprobs(choice, data, delta)
        if request.open == 0:
            self._release(request)
        data["stats"] = self.stats()
        return StepEvent(request.req_id, data, done=request.open == 0)

    def _expire(self, now: float) -> list[StepEvent]:
        late = [r for r in self.by_id.values() if r.deadline is not None and now > r.deadline]
        error = DeadlineExceeded("the request ran past its deadline (limits.timeout_s)")
        return [self._error(r, error) for r in late]

    def _error(self, request: Request, error: AimassError) -> StepEvent:
        self._release(request)
        return StepEvent(request.req_id, {"error": error, "stats": self.stats()}, done=True)


def _choice_params(params: SamplingParams, index: int) -> SamplingParams:
    """Choice ``index`` of a seeded request draws with ``seed + index``: the n choices differ,
    and the same request gives the same n answers every time."""
    if params.seed is None or index == 0:
        return params
    return dataclasses.replace(params, seed=(params.seed + index) & 0xFFFFFFFF)


def _top_logprobs(request: dict[str, Any]) -> int | None:
    """None when no logprobs are asked for; else the number of alternatives (0..20)."""
    top = request.get("top_logprobs")
    if top is not None and not 0 <= int(top) <= MAX_TOP_LOGPROBS:
        raise InvalidInput(
            f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {top}", param="top_logprobs"
        )
    if not request.get("logprobs"):
        return None
    return int(top or 0)
