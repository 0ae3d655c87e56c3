"""OpenAI objects built from engine events: n choices, logprobs in both shapes, tool calls
as a message and as stream deltas."""

from aimass.engine.local.messages import GenerationEvent, TokenLogprob, TopLogprob, Usage
from aimass.serving.llm import Generation
from aimass.serving.llm_objects import ResponseShape


def entry(token: str, logprob: float) -> TokenLogprob:
    top = [TopLogprob(token, logprob, list(token.encode())), TopLogprob("x", -9.0, [120])]
    return TokenLogprob(token, logprob, list(token.encode()), top)


def feed(gen: Generation, *events: GenerationEvent) -> list:
    return [gen.choice(e.index).add(e) for e in events]


def done(index: int, text: str, tokens: int, reason: str = "stop") -> GenerationEvent:
    usage = Usage(prompt_tokens=5, completion_tokens=tokens, cached_tokens=2)
    return GenerationEvent(index=index, text=text, finish_reason=reason, usage=usage)


def test_whole_chat_answer_with_two_choices_and_logprobs():
    gen = Generation(call=None, started=0.0, n=2)
    events = [
        GenerationEvent(index=1, text="Hi", logprobs=[entry("Hi", -0.5)]),
        GenerationEvent(index=0, text="Yo", logprobs=[entry("Yo", -0.1)]),
        done(0, "", 1),
        done(1, "", 1, "length"),
    ]
    for event in events:
        gen.gather(event)
    body = ResponseShape("id", "m", chat=True, logprobs=True).whole(gen)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][1]["message"]["content"] == "Hi"
    assert body["choices"][1]["finish_reason"] == "length"
    lp = body["choices"][0]["logprobs"]["content"][0]
    assert (lp["token"], lp["logprob"], lp["bytes"]) == ("Yo", -0.1, [89, 111])
    assert [t["token"] for t in lp["top_logprobs"]] == ["Yo", "x"]
    assert body["usage"]["completion_tokens"] == 2 and body["usage"]["prompt_tokens"] == 5
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}


def test_completion_logprobs_offsets_follow_the_echo():
    gen = Generation(call=None, started=0.0)
    gen.gather(GenerationEvent(text=" a b", logprobs=[entry(" a", -1.0), entry(" b", -2.0)]))
    gen.gather(done(0, "", 2))
    shape = ResponseShape("id", "m", chat=False, logprobs=True, echo="Say")
    (choice,) = shape.whole(gen)["choices"]
    assert choice["text"] == "Say a b"
    assert choice["logprobs"] == {
        "tokens": [" a", " b"],
        "token_logprobs": [-1.0, -2.0],
        "top_logprobs": [{" a": -1.0, "x": -9.0}, {" b": -2.0, "x": -9.0}],
        "text_offset": [3, 5],
    }


def test_tool_calls_as_a_message_and_as_deltas():
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    shape = ResponseShape("id", "m", chat=True)
    cut = call.index(": 1")
    pieces = [call[:20], call[20:cut], call[cut:], ""]
    streamed = Generation(call=None, started=0.0, tools=frozenset({"add"}), stream=True)
    chunks = []
    for k, text in enumerate(pieces):
        event = done(0, text, 9) if k == len(pieces) - 1 else GenerationEvent(text=text)
        choice, content, _ = streamed.gather(event)
        chunks += list(shape.pieces(choice, event, content))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"][0]["function"] == {"name": "add", "arguments": ""}
    assert deltas[0]["tool_calls"][0]["id"].startswith("call_")
    assert deltas[1] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any("content" in d for d in deltas)
    gen = Generation(call=None, started=0.0, tools=frozenset({"add"}))
    feed(gen, GenerationEvent(text=call), done(0, "", 9))
    message = shape.whole(gen)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 1}'}
