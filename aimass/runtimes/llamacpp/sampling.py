"""Per-sequence sampling: request fields checked into ``SamplingParams``, then a llama.cpp
sampler chain built from them.

Each sequence owns its chain, so penalties, grammar state and the random generator (seeded
per request) never mix between sequences decoded in the same batch. At temperature 0 the
chain ends in llama.cpp's greedy sampler (argmax), as llama-cpp-python's own greedy path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as lc

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


def build_chain(params: SamplingParams, vocab: Any, n_vocab: int, penalty_window: int) -> Any:
    """A llama.cpp sampler chain for one sequence; the caller frees it with llama_sampler_free.

    Order as llama.cpp's own defaults: logit bias, grammar, penalties, top-k, top-p, min-p,
    temperature, then the final pick (greedy at temperature 0, a seeded draw otherwise).
    """
    bias = _logit_bias_sampler(params.logit_bias, n_vocab) if params.logit_bias else None
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    add = lc.llama_sampler_chain_add
    if bias is not None:
        add(chain, bias)
    if params.grammar:
        grammar = lc.llama_sampler_init_grammar(vocab, params.grammar.encode(), b"root")
        if not grammar:
            lc.llama_sampler_free(chain)
            raise InvalidInput("the grammar for response_format does not parse", param="grammar")
        add(chain, grammar)
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
        return chain
    if params.top_k > 0:
        add(chain, lc.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(chain, lc.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, lc.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    add(chain, lc.llama_sampler_init_dist(seed))
    return chain
