"""Chat templates: render OpenAI-style messages into a prompt, as transformers does.

The template comes from the spec (``options.chat_template``), else from the GGUF metadata
(``tokenizer.chat_template``), else a built-in one chosen by the model architecture (Gemma
GGUFs often ship without one). Rendering follows ``transformers``' ``apply_chat_template``:
a sandboxed Jinja environment with ``trim_blocks``/``lstrip_blocks``, ``raise_exception``,
``strftime_now``, a ``tojson`` that keeps non-ASCII text, and ``bos_token``/``eos_token``/
``add_generation_prompt`` in the context.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aimass.errors import InvalidInput

TOOLS_INTRO = (
    "You may call functions to help with the answer. Their signatures are listed between "
    "<tools></tools>. To call functions, answer with one <tool_call></tool_call> block per "
    "call, each holding a JSON object with the function's name and its arguments:\n"
    '<tool_call>\n{"name": "function_name", "arguments": {"argument": "value"}}\n</tool_call>\n'
    "The results come back between <tool_response></tool_response>.\n"
)
"""How the built-in template teaches tool calls; the grammar of a forced call (grammar.py)
and the parser of the serving layer read and write exactly this ``<tool_call>`` form (the
Hermes/Qwen convention), so a model prompted this way answers in the form that is parsed."""

GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- if tools -%}
    {%- set first_user_prefix = first_user_prefix + tools_intro + '<tools>\n'
        + (tools | map('tojson') | join('\n')) + '\n</tools>\n\n' -%}
{%- endif -%}
{%- set ns = namespace(turns=0, last='') -%}
{%- for message in loop_messages -%}
    {%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}
    {%- if message['role'] == 'tool' and ns.last == 'tool' -%}
        {{ '\n' }}
    {%- else -%}
        {%- if (role == 'user') != (ns.turns % 2 == 0) -%}
            {{ raise_exception("Conversation roles must alternate "
                               "user/assistant/user/assistant/...") }}
        {%- endif -%}
        {%- if ns.turns > 0 -%}
            {{ '<end_of_turn>\n' }}
        {%- endif -%}
        {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if ns.turns == 0 else "") }}
        {%- set ns.turns = ns.turns + 1 -%}
    {%- endif -%}
    {%- if message['role'] == 'tool' -%}
        {{ '<tool_response>\n' + (message['content'] | trim) + '\n</tool_response>' }}
    {%- else -%}
        {{ message['content'] | trim }}
    {%- endif -%}
    {%- for call in message['tool_calls'] or [] -%}
        {%- set function = {'name': call['function']['name'],
                            'arguments': call['function']['arguments']} -%}
        {{ ('\n' if (message['content'] | trim) or not loop.first else '')
           + '<tool_call>\n' + (function | tojson) + '\n</tool_call>' }}
    {%- endfor -%}
    {%- set ns.last = message['role'] -%}
{%- endfor -%}
{%- if ns.turns > 0 -%}
    {{ '<end_of_turn>\n' }}
{%- endif -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""
"""Gemma 2/3 instruction format (``<start_of_turn>user ... <end_of_turn>``), system folded
into the first user turn as Google's template does. Gemma has no tool format of its own, so
this one teaches ``TOOLS_INTRO``'s: the tools go into the first user turn, an assistant's
tool calls follow its text as ``<tool_call>`` blocks, and tool results come back in a user
turn as ``<tool_response>`` blocks (consecutive results share one turn)."""

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
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """Render ``messages`` (and ``tools``, in transformers' shape: ``[{"type": "function",
    "function": {...}}]``); a template's ``raise_exception`` becomes a 400 with its message.

    Tool-call arguments arrive as JSON text and are handed to the template as objects, as
    transformers and vLLM do, since templates write them with ``tojson``."""
    if tools and "tools" not in source:
        raise InvalidInput(
            "the model's chat template does not render tools; give the model a template "
            "that does (options.chat_template) or send no tools",
            param="tools",
        )
    template = compile_template(source)
    msgs = [_for_template(m) for m in messages]
    try:
        return template.render(
            messages=msgs,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            tools=tools or None,
            tools_intro=TOOLS_INTRO,
        )
    except TemplateRaised as exc:
        raise InvalidInput(f"chat template refused the messages: {exc}", param="messages") from exc
    except TemplateError as exc:
        raise InvalidInput(f"chat template failed: {exc}", param="messages") from exc


def _for_template(message: dict[str, Any]) -> dict[str, Any]:
    out = {**message, "content": flatten_content(message.get("content"))}
    if message.get("tool_calls"):
        out["tool_calls"] = [_call_with_object_arguments(c) for c in message["tool_calls"]]
    return out


def _call_with_object_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            function["arguments"] = json.loads(arguments)
    return {**call, "function": function}
