import pytest

from aimass.errors import InvalidInput
from aimass.runtimes.llamacpp.chat import GEMMA_TEMPLATE, pick_template, render_chat


def render(messages, **kw):
    return render_chat(GEMMA_TEMPLATE, messages, bos_token="<bos>", eos_token="<eos>", **kw)


def test_gemma_template_matches_google_format():
    text = render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi "},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
        ]
    )
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhy?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_generation_prompt_can_be_left_out():
    text = render([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert text.endswith("<end_of_turn>\n")


def test_raise_exception_becomes_400_with_the_templates_message():
    with pytest.raises(InvalidInput, match="alternate"):
        render([{"role": "assistant", "content": "x"}])


def test_sandbox_blocks_attribute_escapes():
    with pytest.raises(InvalidInput):
        render_chat(
            "{{ messages.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}",
            [{"role": "user", "content": "x"}],
            bos_token="",
            eos_token="",
        )


def test_template_sees_bos_eos_and_tojson_keeps_unicode():
    src = "{{ bos_token }}{{ messages | tojson }}{{ eos_token }}"
    text = render_chat(src, [{"role": "user", "content": "é"}], bos_token="B", eos_token="E")
    assert text == 'B[{"role": "user", "content": "é"}]E'


def test_syntax_error_names_the_template():
    with pytest.raises(InvalidInput, match="chat template"):
        render_chat("{% if %}", [{"role": "user", "content": "x"}], bos_token="", eos_token="")


def test_template_choice_order():
    assert pick_template("mine", "gguf", "gemma3") == "mine"
    assert pick_template(None, "gguf", "gemma3") == "gguf"
    assert pick_template(None, None, "gemma3") == GEMMA_TEMPLATE
    assert pick_template(None, None, "llama") is None


TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
CALL = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}


def test_gemma_template_renders_tools_calls_and_results():
    text = render(
        [
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "2"},
            {"role": "tool", "tool_call_id": "c2", "content": "3"},
        ],
        tools=TOOLS,
    )
    assert text.startswith("<bos><start_of_turn>user\nYou may call functions")
    assert '<tools>\n{"type": "function", "function": {"name": "add"' in text
    assert text.endswith(
        "1+1?<end_of_turn>\n"
        '<start_of_turn>model\n<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n'
        "</tool_call><end_of_turn>\n"
        "<start_of_turn>user\n<tool_response>\n2\n</tool_response>\n"
        "<tool_response>\n3\n</tool_response><end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_template_without_tools_is_refused_with_tools():
    with pytest.raises(InvalidInput) as info:
        render_chat("{{ messages }}", [{"role": "user", "content": "x"}], bos_token="",
                    eos_token="", tools=TOOLS)  # fmt: skip
    assert info.value.param == "tools"


def test_a_gguf_template_gets_tools_and_object_arguments():
    src = "{{ tools[0].function.name }}|{{ messages[0].tool_calls[0].function.arguments.a }}"
    msgs = [{"role": "assistant", "content": None, "tool_calls": [CALL]}]
    assert render_chat(src, msgs, bos_token="", eos_token="", tools=TOOLS) == "add|1"
