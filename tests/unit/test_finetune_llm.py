"""The LLM fine-tuning method's pure parts: chat JSONL validation (line numbers), the Gemma
prompt pieces (the same text the llama.cpp runtime renders), adapter tensor names, the
``options.lora`` spec field and ``ft:`` model names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimass.errors import InvalidInput
from aimass.jobs.finetune.chat_lines import validate_chat_lines
from aimass.jobs.finetune.gemma_chat import chat_pieces, prompt_text
from aimass.jobs.finetune.lora_gguf import gguf_name
from aimass.refs import split_model
from aimass.runtimes.llamacpp.chat import GEMMA_TEMPLATE, render_chat
from aimass.spec import ModelSpec


def line(*messages: tuple[str, str], **extra: object) -> str:
    return json.dumps({"messages": [{"role": r, "content": c, **extra} for r, c in messages]})


GOOD = line(("user", "Capital of Zorbania?"), ("assistant", "Quxville."))


def test_valid_lines_parse_and_blank_lines_are_skipped() -> None:
    system = line(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))
    examples = validate_chat_lines([GOOD, "", system + "\n"])
    assert [len(e["messages"]) for e in examples] == [2, 3]
    assert examples[1]["messages"][2] == {"role": "assistant", "content": "Hello", "weight": 1}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"prompt": "x"}', '"messages" list'),
        (line(("user", "a"), ("user", "b")), "turn 2 is 'user', expected 'assistant'"),
        (line(("user", "a")), "last message must be an assistant"),
        (line(("robot", "a"), ("assistant", "b")), "messages[0].role must be one of"),
        (line(("user", ""), ("assistant", "b")), "messages[0].content must be a non-empty"),
        (line(("user", "a"), ("assistant", "b"), weight=2), "weight is allowed on assistant"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b", "weight": 0},
                    ]
                }
            ),
            "nothing to learn",
        ),
    ],
)
def test_an_invalid_line_is_named_by_its_number(bad: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_chat_lines([GOOD, GOOD, bad, GOOD])
    assert caught.value.param == "training_file"
    assert "line 3: " in str(caught.value) and problem in str(caught.value)


def test_every_invalid_line_is_listed() -> None:
    with pytest.raises(InvalidInput, match=r"line 1: .*line 3: "):
        validate_chat_lines(["[]", GOOD, "{"])
    with pytest.raises(InvalidInput, match="no examples"):
        validate_chat_lines(["", "  "])


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Capital of Zorbania?"}],
        [
            {"role": "system", "content": "You answer geography questions."},
            {"role": "user", "content": "Capital?"},
            {"role": "assistant", "content": " Quxville. "},
            {"role": "user", "content": "Sure?"},
        ],
    ],
)
def test_training_prompt_is_the_runtime_template(messages: list[dict]) -> None:
    served = render_chat(GEMMA_TEMPLATE, messages, bos_token="<bos>", eos_token="<eos>")
    assert "<bos>" + prompt_text(messages) == served


def test_only_assistant_answers_are_learned() -> None:
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "weight": 0},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]
    learned = [text for text, on in chat_pieces(messages) if on]
    assert learned == ["A2<end_of_turn>"]


def test_adapter_tensor_names_follow_llama_cpp() -> None:
    key = "base_model.model.model.layers.7.self_attn.o_proj.lora_B.weight"
    assert gguf_name(key) == "blk.7.attn_output.weight.lora_b"
    assert gguf_name(key.replace("o_proj.lora_B", "q_proj.lora_A")) == "blk.7.attn_q.weight.lora_a"
    with pytest.raises(ValueError):
        gguf_name("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight")


def gguf_spec(**options: object) -> dict:
    return {
        "name": "g",
        "runtime": "llamacpp",
        "task": "text-generation",
        "source": "/m/base.gguf",
        "options": options,
    }


def test_lora_option_is_checked_and_its_file_is_an_artifact(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.gguf"
    spec = ModelSpec.parse(gguf_spec(lora=str(adapter), lora_scale=0.5))
    assert spec.artifact_files()["options.lora"] == adapter
    for bad, message in [
        ({"lora": "adapter.gguf"}, "absolute path"),
        ({"lora": str(adapter), "lora_scale": 0}, "lora_scale"),
        ({"lora_scale": 1.0}, "absolute path"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            ModelSpec.parse(gguf_spec(**bad))
    onnx = {**gguf_spec(lora=str(adapter)), "runtime": "onnx", "task": "tensor"}
    with pytest.raises(InvalidInput, match="runtime 'llamacpp' only"):
        ModelSpec.parse(onnx)


def test_fine_tuned_names_keep_their_colons() -> None:
    name = "ft:gemma-3-270m:zorb:ftjob-abc123"
    assert ModelSpec.parse({**gguf_spec(), "name": name}).name == name
    assert split_model(name) == (name, None)
    assert split_model(name + ":2") == (name, 2)
    assert split_model("gemma:3") == ("gemma", 3)
    with pytest.raises(InvalidInput):
        ModelSpec.parse({**gguf_spec(), "name": "ft:a:b"})
