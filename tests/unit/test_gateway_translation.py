"""OpenAI ⇄ Bedrock Converse translation (system prompt, roles and merging, stop sequences, max tokens,
temperature/top_p, usage, finish reasons, completions as one user turn, stream events, stream exceptions,
unsupported parameters) and OpenAI ⇄ SageMaker LMI translation for both payload schemas, including stream decoding
of payload parts split at arbitrary byte boundaries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.gateway import bedrock_translation as bedrock
from neuroscale.gateway import sagemaker_translation as sagemaker
from neuroscale.gateway.protocol import OpenAIError
from neuroscale.gateway.streaming import StreamAssembler
from neuroscale.gateway.upstreams.base import UpstreamError


def chat_body(**overrides: object) -> dict:
    return {"model": "cascade", "messages": [{"role": "user", "content": "Capital of France?"}], **overrides}


def test_converse_request_maps_system_roles_and_inference_config() -> None:
    body = chat_body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And Spain?"},
        ],
        max_tokens=64, temperature=0.2, top_p=0.9, stop="\n\n",
    )
    kwargs = bedrock.to_converse("chat", body, "anthropic.claude-3-haiku")
    assert kwargs["modelId"] == "anthropic.claude-3-haiku"
    assert kwargs["system"] == [{"text": "Be brief."}, {"text": "Answer in English."}]
    assert kwargs["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "Capital of France?"}]},
        {"role": "assistant", "content": [{"text": "Paris."}]},
        {"role": "user", "content": [{"text": "And Spain?"}]},
    ]
    assert kwargs["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\n"]}


def test_converse_request_prefers_max_completion_tokens_and_omits_empty_config() -> None:
    assert bedrock.to_converse("chat", chat_body(max_completion_tokens=9, max_tokens=100), "m")["inferenceConfig"] == {
        "maxTokens": 9
    }
    assert "inferenceConfig" not in bedrock.to_converse("chat", chat_body(), "m")
    assert "system" not in bedrock.to_converse("chat", chat_body(), "m")


def test_completions_prompt_becomes_one_user_turn() -> None:
    kwargs = bedrock.to_converse("completions", {"model": "c", "prompt": "Once upon", "stop": ["a", "b"]}, "m")
    assert kwargs["messages"] == [{"role": "user", "content": [{"text": "Once upon"}]}]
    assert kwargs["inferenceConfig"]["stopSequences"] == ["a", "b"]


def test_conversation_must_start_with_user() -> None:
    with pytest.raises(OpenAIError, match="start with a non-empty user message"):
        bedrock.to_converse("chat", chat_body(messages=[{"role": "assistant", "content": "Hello"}]), "m")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_body(tools=[{"type": "function"}]), "tools"),
        (chat_body(logprobs=True), "logprobs"),
        (chat_body(seed=1), "seed"),
        (chat_body(messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}]), "messages[0]"),
        (chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
         "messages[0].content"),
    ],
)
def test_bedrock_names_parameters_it_cannot_translate(body: dict, param: str) -> None:
    assert bedrock.unsupported_parameter("chat", body) == param


def test_bedrock_accepts_neutral_values_of_untranslated_parameters() -> None:
    assert bedrock.unsupported_parameter("chat", chat_body(presence_penalty=0, logprobs=False, user="u")) is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("guardrail_intervened", "content_filter")],
)
def test_converse_response_becomes_chat_completion(stop_reason: str, finish: str) -> None:
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Paris"}, {"text": "."}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 15},
    }
    answer = bedrock.from_converse("chat", response, "m", "id-1", 100)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Paris."}
    assert answer["choices"][0]["finish_reason"] == finish
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    completion = bedrock.from_converse("completions", response, "m", "id-1", 100)
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == "Paris."


def converse_events(*texts: str, stop: str = "end_turn") -> list[dict]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text}}} for text in texts),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop}},
        {"metadata": {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 9}}},
    ]


def test_converse_stream_becomes_chunks_that_assemble_to_the_answer() -> None:
    translator = bedrock.ConverseStreamTranslator("chat", "m", "id-2", 5)
    assembler = StreamAssembler("chat")
    for event in converse_events("Par", "is."):
        for chunk in translator.translate(event):
            assert chunk["object"] == "chat.completion.chunk"
            assembler.add(chunk)
    assert translator.finished
    response = assembler.response()
    assert response["choices"][0]["message"]["content"] == "Paris."
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["total_tokens"] == 7


def test_converse_stream_exception_event_raises() -> None:
    translator = bedrock.ConverseStreamTranslator("chat", "m", "id", 0)
    with pytest.raises(UpstreamError, match="throttlingException"):
        translator.translate({"throttlingException": {"message": "slow down"}})


def test_sagemaker_messages_request_drops_model_and_keeps_openai_fields() -> None:
    body = chat_body(temperature=0, stream=True, stream_options={"include_usage": True}, logprobs=True)
    sent = json.loads(sagemaker.to_request("chat", "messages", body, stream=True))
    assert "model" not in sent and "stream_options" not in sent
    assert sent["messages"] == body["messages"]
    assert sent["stream"] is True and sent["logprobs"] is True


def test_sagemaker_inputs_request_renders_a_transcript_and_parameters() -> None:
    body = chat_body(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                     max_tokens=20, temperature=0.5, stop="END")
    sent = json.loads(sagemaker.to_request("chat", "inputs", body, stream=False))
    assert sent["inputs"] == "System: Be brief.\nUser: Hi\nAssistant:"
    assert sent["parameters"] == {"details": True, "max_new_tokens": 20, "temperature": 0.5, "do_sample": True,
                                  "stop": ["END"]}
    assert sent["stream"] is False
    assert sagemaker.unsupported_parameter("inputs", chat_body(tools=[{}])) == "tools"
    assert sagemaker.unsupported_parameter("messages", chat_body(tools=[{}])) is None


def test_sagemaker_inputs_response_with_details() -> None:
    raw = json.dumps([{"generated_text": "Paris.", "details": {"finish_reason": "eos_token", "generated_tokens": 2,
                                                                "tokens": [{"text": "Par", "log_prob": -0.1},
                                                                           {"text": "is.", "log_prob": -0.3}]}}]).encode()
    answer = sagemaker.from_response("chat", "inputs", raw, "ep", "id", 1)
    assert answer["choices"][0]["message"]["content"] == "Paris."
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert [item["logprob"] for item in answer["choices"][0]["logprobs"]["content"]] == [-0.1, -0.3]
    assert answer["usage"]["completion_tokens"] == 2


def test_sagemaker_messages_response_as_completion() -> None:
    raw = json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
    answer = sagemaker.from_response("completions", "messages", raw, "ep", "id", 1)
    assert answer["object"] == "text_completion"
    assert answer["choices"][0] == {"index": 0, "text": "Hi", "logprobs": None, "finish_reason": "length"}


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"choices": []}'])
def test_sagemaker_malformed_answers_are_upstream_errors(raw: bytes) -> None:
    with pytest.raises(UpstreamError):
        sagemaker.from_response("chat", "messages", raw, "ep", "id", 1)


def lmi_stream_lines() -> bytes:
    lines = [
        {"token": {"text": "Par", "log_prob": -0.1}, "generated_text": None, "details": None},
        {"token": {"text": "is.", "log_prob": -0.2}, "generated_text": "Paris.",
         "details": {"finish_reason": "length", "generated_tokens": 2}},
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_sagemaker_inputs_stream_survives_any_split(cuts: list[int]) -> None:
    raw = lmi_stream_lines()
    points = sorted({min(cut, len(raw)) for cut in cuts})
    parts = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    decoder = sagemaker.StreamDecoder("chat", "inputs", "ep", "id", 1)
    assembler = StreamAssembler("chat")
    for part in parts:
        for chunk in decoder.feed(part):
            assembler.add(chunk)
    for chunk in decoder.close():
        assembler.add(chunk)
    assert decoder.finished
    assert assembler.text == "Paris."
    assert assembler.finish_reason == "length"
    assert assembler.view(complete=True).logprobs == (-0.1, -0.2)


def test_sagemaker_messages_stream_accepts_sse_prefixes() -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"},
                                                                        "finish_reason": "stop"}]}
    decoder = sagemaker.StreamDecoder("completions", "messages", "ep", "id", 1)
    chunks = decoder.feed(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
    assert chunks[0]["choices"][0]["text"] == "Hi"
    assert decoder.finished
