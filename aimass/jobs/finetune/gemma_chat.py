"""A chat example as the token pieces the served Gemma sees, each marked learned or not.

Training must see exactly the prompt the runtime builds at serving time, or the model learns
a format it is never asked in. The pieces below are those of the llama.cpp runtime's Gemma
template (``runtimes/llamacpp/chat.py`` ``GEMMA_TEMPLATE``; a unit test checks that joined
they equal its rendering): ``<bos>``, then per turn ``<start_of_turn>user|model\\n``, the
content, ``<end_of_turn>\\n``; a system message is put before the first user turn's content.
An assistant turn's content and its ``<end_of_turn>`` are learned (so the model learns to
stop), everything else only read.
"""

from __future__ import annotations

from typing import Any

START, END = "<start_of_turn>", "<end_of_turn>"


def chat_pieces(messages: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """``(text, learned)`` pieces of one example, in order (``<bos>`` not included)."""
    prefix = ""
    turns = messages
    if messages and messages[0]["role"] == "system":
        prefix = messages[0]["content"] + "\n\n"
        turns = messages[1:]
    pieces: list[tuple[str, bool]] = []
    for i, message in enumerate(turns):
        content = message["content"].strip()
        if message["role"] == "assistant":
            pieces.append((f"{START}model\n", False))
            pieces.append((content + END, bool(message.get("weight", 1))))
            pieces.append(("\n", False))
        else:
            pieces.append(
                (f"{START}user\n" + (prefix if i == 0 else "") + content + f"{END}\n", False)
            )
    return pieces


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The served prompt of the messages, with the generation prompt (``<bos>`` not included)."""
    return "".join(text for text, _ in chat_pieces(messages)) + f"{START}model\n"
