"""Per-sequence sampling: request fields checked into ``SamplingParams``, then a llama.cpp
sampler chain built from them.

Each sequence owns its chain, so penalties, grammar state and the random generator (seeded
per request) never mix between sequences decoded in the same batch. At temperature 0 the
chain ends in llama.cpp's greedy sampler (argmax), as llama-cpp-python's own greedy path.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as lc
import numpy as np

from aimass.errors import InvalidInput

_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "repetition_penalty": (0.01, 10.0),
}


@dataclass
class SamplingParams:
    """Everything that decides the next token of one sequence."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    """Token id -> bias added to its logit before anything else (OpenAI's ``logit_bias``)."""

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> SamplingParams:
        """Read and range-check the sampling fields of a runtime request (400 when off)."""
        values: dict[str, Any] = {}
        for name, (low, high) in _RANGES.items():
            value = request.get(name)
            if value is None:
                continue
            if not low <= float(value) <= high:
                raise InvalidInput(f"{name} must be in [{low}, {high}], got {value}", param=name)
            values[name] = float(value)
        top_k = request.get("top_k")
        if top_k is not None:
            if int(top_k) < 0:
                raise InvalidInput(f"top_k must be >= 0, got {top_k}", param="top_k")
            values["top_k"] = int(top_k)
        if request.get("seed") is not None:
            values["seed"] = int(request["seed"]) & 0xFFFFFFFF
        values["stop"] = _stops(request.get("stop"))
        values["grammar"] = request.get("grammar")
        values["logit_bias"] = _logit_bias(request.get("logit_bias"))
        return cls(**values)

    @property
    def penalized(self) -> bool:
        return (
            self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise InvalidInput("stop must be up to 4 non-empty strings", param="stop")
    return stops


def _logit_bias(bias: Any) -> dict[int, float]:
    if not bias:
        return {}
    try:
        out = {int(token): float(value) for token, value in dict(bias).items()}
    except (TypeError, ValueError):
        raise InvalidInput("logit_bias maps token ids to numbers", param="logit_bias") from None
    if any(not -100.0 <= v <= 100.0 for v in out.values()) or any(t < 0 for t in out):
        raise InvalidInput(
            "logit_bias maps token ids (>= 0) to biases in [-100, 100]", param="logit_bias"
        )
    return out


def _logit_bias_sampler(bias: dict[int, float], n_vocab: int) -> Any:
    """llama.cpp's logit-bias sampler; -100 is a ban (minus infinity), as OpenAI's is."""
    outside = [t for t in bias if t >= n_vocab]
    if outside:
        raise InvalidInput(
            f"logit_bias names token {outside[0]}; the vocabulary has {n_vocab} tokens",
            param="logit_bias",
        )
    items = (lc.llama_logit_bias * len(bias))()
    for item, (token, value) in zip(items, bias.items(), strict=True):
        item.token = token
        item.bias = float("-inf") if value <= -100.0 else value
    return lc.llama_sampler_init_logit_bias(n_vocab, len(bias), items)


_CANDIDATE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Sampler:
    """One sequence's llama.cpp sampler chain, with its grammar (if any) kept beside it.

    Without a grammar, ``sample`` is llama.cpp's ``llama_sampler_sample``. With one, it does
    what llama.cpp's own ``common_sampler_sample`` does: pick a token without the grammar,
    check that one token against it, and only when it is refused pick again with the grammar
    over the whole vocabulary. A grammar judges a token by its text, so judging Gemma's 262k
    tokens at every step is the expensive part: measured on the 2-core machine (loaded),
    a ``json_object`` answer took 2.1 s per token with the grammar in the chain against
    0.4 s unconstrained. A greedy pick is the same either way (the argmax of the allowed
    tokens); a seeded draw follows the same distribution (the allowed tokens' renormalized
    probabilities). Free with ``free``.
    """

    def __init__(self, chain: Any, grammar: Any, n_vocab: int, argmax: bool = False):
        self.chain = chain
        self.grammar = grammar
        self.n_vocab = n_vocab
        self.argmax = argmax
        """Plain greedy (no grammar, bias or penalties): the pick is the logits' argmax, taken
        in numpy. ``llama_sampler_sample`` copies all 262k candidates of Gemma first: 0.32 ms
        per row against 0.025 ms (one sequence's token costs ~15 ms on 2 cores, so 2%; eight
        rows per step, 4%). Both take the first of equal maxima: the same token."""
        self._all = np.zeros(n_vocab if grammar else 0, dtype=_CANDIDATE)
        self._all["id"] = np.arange(len(self._all), dtype=np.int32)
        self._one = np.zeros(1, dtype=_CANDIDATE)

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits of batch row ``index``, accepted by the samplers."""
        if self.argmax:
            logits = lc.llama_get_logits_ith(ctx, index)
            return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())
        if self.grammar is None:
            return lc.llama_sampler_sample(self.chain, ctx, index)
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        token = self._pick(logits, self.chain)
        if not self._allowed(token, logits):
            token = self._pick(logits, self.grammar, self.chain)
            if not self._allowed(token, logits):
                raise InvalidInput(
                    "no token is left that the grammar (response_format, tools or grammar) "
                    "allows and the sampling settings keep (logit_bias, penalties, top_k, "
                    "top_p, min_p)",
                    param="response_format",
                )
        lc.llama_sampler_accept(self.grammar, token)
        lc.llama_sampler_accept(self.chain, token)
        return token

    def _allowed(self, token: int, logits: np.ndarray) -> bool:
        """Whether the grammar accepts ``token`` now. The second pick is checked too: when
        the settings leave no allowed token, the chain's pick is arbitrary, and llama.cpp
        accepting a token its grammar refuses throws a C++ exception that ends the process
        (found by tests/integration/test_llm_fuzz.py)."""
        self._one[0] = (token, logits[token], 0.0)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(_array(self._one)))
        return not np.isneginf(self._one[0]["logit"])

    def _pick(self, logits: np.ndarray, *samplers: Any) -> int:
        self._all["logit"] = logits
        self._all["p"] = 0.0
        candidates = _array(self._all)
        for sampler in samplers:
            lc.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def free(self) -> None:
        for sampler in (self.chain, self.grammar):
            if sampler is not None:
                lc.llama_sampler_free(sampler)
        self.chain = self.grammar = None


def _array(candidates: np.ndarray) -> Any:
    """A ``llama_token_data_array`` over a numpy candidate array (no copy)."""
    return lc.llama_token_data_array(
        data=candidates.ctypes.data_as(lc.llama_token_data_p),
        size=len(candidates),
        selected=-1,
        sorted=False,
    )


def build_chain(params: SamplingParams, vocab: Any, n_vocab: int, penalty_window: int) -> Sampler:
    """The ``Sampler`` of one sequence; the caller frees it with ``Sampler.free``.

    Order as llama.cpp's own defaults: logit bias, (grammar), penalties, top-k, top-p, min-p,
    temperature, then the final pick (greedy at temperature 0, a seeded draw otherwise).
    """
    grammar = None
    if params.grammar:
        grammar = lc.llama_sampler_init_grammar(vocab, params.grammar.encode(), b"root")
        if not grammar:
            raise InvalidInput("the grammar for response_format does not parse", param="grammar")
    try:
        bias = _logit_bias_sampler(params.logit_bias, n_vocab) if params.logit_bias else None
    except InvalidInput:
        if grammar is not None:
            lc.llama_sampler_free(grammar)
        raise
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    add = lc.llama_sampler_chain_add
    if bias is not None:
        add(chain, bias)
    if params.penalized:
        add(
            chain,
            lc.llama_sampler_init_penalties(
                n_vocab,
                penalty_window,
                params.repetition_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            ),
        )
    if params.temperature == 0.0:
        add(chain, lc.llama_sampler_init_greedy())
        plain = grammar is None and bias is None and not params.penalized
        return Sampler(chain, grammar, n_vocab, argmax=plain)
    if params.top_k > 0:
        add(chain, lc.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(chain, lc.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, lc.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    add(chain, lc.llama_sampler_init_dist(seed))
    return Sampler(chain, grammar, n_vocab)
