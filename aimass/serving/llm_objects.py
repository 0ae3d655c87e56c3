"""The OpenAI objects of one LLM response: whole answers, stream chunks, logprobs.

``ResponseShape`` turns what ``serving.llm`` gathered (its ``Generation`` and ``Choice``
records, the engine's ``TokenLogprob`` entries) into the wire types of ``protocols.openai``,
for chat and for the legacy completions endpoint, so the service itself deals with events
and the pipeline only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aimass.engine.local.messages import TokenLogprob
from aimass.protocols import openai as oa
from aimass.serving.toolcalls import ParsedCall

if TYPE_CHECKING:
    from aimass.engine.deployment import GenerationEvent
    from aimass.serving.llm import Choice, Generation


def chat_logprobs(entries: Sequence[TokenLogprob]) -> oa.ChoiceLogprobs:
    """Chat's shape: one object per token, with its alternatives."""
    return oa.ChoiceLogprobs(
        content=[
            oa.TokenLogprob(
                token=e.token,
                logprob=e.logprob,
                bytes=list(e.bytes),
                top_logprobs=[
                    oa.TopLogprob(token=t.token, logprob=t.logprob, bytes=list(t.bytes))
                    for t in e.top_logprobs
                ],
            )
            for e in entries
        ]
    )


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int) -> oa.CompletionLogprobs:
    """The legacy completions shape; ``offset`` is where the first token starts in the
    choice's text (after an echoed prompt and the tokens before it)."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return oa.CompletionLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[e.logprob for e in entries],
        top_logprobs=[{t.token: t.logprob for t in e.top_logprobs} for e in entries],
        text_offset=offsets,
    )


def tool_calls(calls: Sequence[ParsedCall]) -> list[oa.ToolCall] | None:
    if not calls:
        return None
    return [
        oa.ToolCall(id=c.id, function=oa.FunctionCall(name=c.name, arguments=c.arguments))
        for c in calls
    ]


_SLOT = "\x00text\x00"
"""Stands for a chunk's text while its template is made (JSON writes it as ``\\u0000text``)."""


def sse_line(obj: dict[str, Any]) -> str:
    """One server-sent event holding ``obj`` as compact JSON."""
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


@dataclass
class ResponseShape:
    """Builds the OpenAI objects of one response (ids, timestamps, chat vs. completion)."""

    rid: str
    model: str
    chat: bool
    logprobs: bool = False
    """The request asked for logprobs: every choice carries them (possibly empty)."""
    echo: str = ""
    """A completion's prompt, put in front of each choice's text."""
    created: int = field(default_factory=lambda: int(time.time()))
    _templates: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)
    """Per choice index: the SSE line of a plain text chunk, cut where its text goes."""

    # whole answers

    def whole(self, gen: Generation) -> dict[str, Any]:
        choices = [gen.choices[i] for i in sorted(gen.choices)]
        if self.chat:
            resp: Any = oa.ChatCompletionResponse(
                id=self.rid, created=self.created, model=self.model,
                choices=[self._chat_choice(c) for c in choices], usage=gen.usage,
            )  # fmt: skip
        else:
            resp = oa.CompletionResponse(
                id=self.rid, created=self.created, model=self.model,
                choices=[self._completion_choice(c) for c in choices], usage=gen.usage,
            )  # fmt: skip
        return resp.model_dump()

    def _chat_choice(self, choice: Choice) -> oa.ChatChoice:
        content: str | None = "".join(choice.content)
        if choice.calls:
            content = content.strip() or None
        message = oa.AssistantMessage(content=content, tool_calls=tool_calls(choice.calls))
        return oa.ChatChoice(
            index=choice.index,
            message=message,
            finish_reason=choice.finish_reason,
            logprobs=chat_logprobs(choice.logprobs) if self.logprobs else None,
        )

    def _completion_choice(self, choice: Choice) -> oa.CompletionChoice:
        logprobs = completion_logprobs(choice.logprobs, len(self.echo)) if self.logprobs else None
        return oa.CompletionChoice(
            index=choice.index,
            text=self.echo + "".join(choice.text),
            finish_reason=choice.finish_reason,
            logprobs=logprobs,
        )

    # streams

    def opening(self, index: int) -> Iterator[dict[str, Any]]:
        """The chunks a choice's stream starts with: chat's role, an echoed prompt."""
        if self.chat:
            yield self._chat_chunk(index, {"role": "assistant", "content": ""})
        elif self.echo:
            yield self._completion_chunk(index, self.echo)

    def pieces(
        self, choice: Choice, event: GenerationEvent, content: str
    ) -> Iterator[dict[str, Any]]:
        """The chunks one event of ``choice`` makes: its text (with its logprobs), the tool
        call pieces its parser queued (as OpenAI streams them: id and name, then the
        arguments as they are written), and the choice's end."""
        entries = event.logprobs or []
        if self.chat:
            if content or entries:
                logprobs = chat_logprobs(entries) if self.logprobs else None
                yield self._chat_chunk(choice.index, {"content": content or None}, None, logprobs)
            for delta in choice.parser.take_deltas() if choice.parser else ():
                piece: dict[str, Any] = {"index": delta.index}
                if delta.id is not None:
                    piece |= {"id": delta.id, "type": "function"}
                    piece["function"] = {"name": delta.name, "arguments": ""}
                else:
                    piece["function"] = {"arguments": delta.arguments}
                yield self._chat_chunk(choice.index, {"tool_calls": [piece]})
            if event.finish_reason is not None:
                yield self._chat_chunk(choice.index, {}, choice.finish_reason)
            return
        if event.text or entries:
            logprobs = None
            if self.logprobs:
                before = choice.logprobs[: len(choice.logprobs) - len(entries)]
                offset = len(self.echo) + sum(len(e.token) for e in before)
                logprobs = completion_logprobs(entries, offset)
            yield self._completion_chunk(choice.index, event.text, None, logprobs)
        if event.finish_reason is not None:
            yield self._completion_chunk(choice.index, "", choice.finish_reason)

    def plain_line(self, choice: Choice, event: GenerationEvent, content: str) -> str | None:
        """The SSE line of the most common chunk, a choice's next text and nothing else (no
        logprobs, no tool call, not its end), written into a template made once per choice;
        None for any other event (``pieces`` shapes those). It is the same line that
        ``pieces`` would give, without building and dumping the objects for every token:
        one streaming client costs the server less CPU per token, which on a small machine
        is taken from the model's own threads."""
        text = content if self.chat else event.text
        plain = not (self.logprobs or event.logprobs or event.finish_reason is not None)
        if not (plain and text and choice.parser is None):
            return None
        template = self._templates.get(choice.index)
        if template is None:
            template = self._templates[choice.index] = self._template(choice.index)
        head, tail = template
        return head + json.dumps(text, ensure_ascii=False) + tail

    def _template(self, index: int) -> tuple[str, str]:
        if self.chat:
            chunk = self._chat_chunk(index, {"content": _SLOT})
        else:
            chunk = self._completion_chunk(index, _SLOT)
        head, tail = sse_line(chunk).split(json.dumps(_SLOT), 1)
        return head, tail

    def _chat_chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: oa.ChoiceLogprobs | None = None,
    ) -> dict[str, Any]:
        choice = oa.ChatChunkChoice(
            index=index,
            delta=oa.ChatDelta.model_validate(delta),
            finish_reason=finish_reason,
            logprobs=logprobs,
        )
        return oa.ChatCompletionChunk(
            id=self.rid, created=self.created, model=self.model, choices=[choice]
        ).model_dump()

    def _completion_chunk(
        self,
        index: int,
        text: str,
        finish_reason: str | None = None,
        logprobs: oa.CompletionLogprobs | None = None,
    ) -> dict[str, Any]:
        choice = oa.CompletionChoice(
            index=index, text=text, finish_reason=finish_reason, logprobs=logprobs
        )
        return oa.CompletionResponse(
            id=self.rid, created=self.created, model=self.model, choices=[choice]
        ).model_dump()

    def usage_chunk(self, gen: Generation) -> dict[str, Any]:
        cls = oa.ChatCompletionChunk if self.chat else oa.CompletionResponse
        return cls(
            id=self.rid, created=self.created, model=self.model, choices=[], usage=gen.usage
        ).model_dump()
