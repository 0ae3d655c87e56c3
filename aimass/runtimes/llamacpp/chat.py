"""Chat templates: render OpenAI-style messages into a prompt, as transformers does.

The template comes from the spec (``options.chat_template``), else from the GGUF metadata
(``tokenizer.chat_template``), else a built-in one chosen by the model architecture (Gemma
GGUFs often ship without one). Rendering follows ``transformers``' ``apply_chat_template``:
a sandboxed Jinja environment with ``trim_blocks``/``lstrip_blocks``, ``raise_exception``,
``strftime_now``, a ``tojson`` that keeps non-ASCII text, and ``bos_token``/``eos_token``/
``add_generation_prompt`` in the context.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aimass.errors import InvalidInput

GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""
"""Gemma 2/3 instruction format (``<start_of_turn>user ... <end_of_turn>``), system folded
into the first user turn as Google's template does."""

BUILTIN_TEMPLATES = {"gemma": GEMMA_TEMPLATE, "gemma2": GEMMA_TEMPLATE, "gemma3": GEMMA_TEMPLATE}


class TemplateRaised(Exception):
    """``raise_exception`` inside a template: the conversation does not fit the format."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kw)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str):
    """Compile once per distinct template source; a syntax error names the problem."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise InvalidInput(f"chat template does not compile: {exc}", param="chat_template") from exc


def pick_template(override: str | None, metadata: str | None, architecture: str) -> str | None:
    """The template to use: the spec's override, the GGUF's own, or a built-in one."""
    return override or metadata or BUILTIN_TEMPLATES.get(architecture)


def flatten_content(content: Any) -> str:
    """OpenAI content may be a list of parts; templates expect a string, so join text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def render_chat(
    source: str,
    messages: list[dict[str, Any]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
    extra: dict[str, Any] | None = None,
) -> str:
    """Render ``messages``; a template's ``raise_exception`` becomes a 400 with its message."""
    template = compile_template(source)
    msgs = [{**m, "content": flatten_content(m.get("content"))} for m in messages]
    try:
        return template.render(
            messages=msgs,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            **(extra or {}),
        )
    except TemplateRaised as exc:
        raise InvalidInput(f"chat template refused the messages: {exc}", param="messages") from exc
    except TemplateError as exc:
        raise InvalidInput(f"chat template failed: {exc}", param="messages") from exc
