"""The official `openai` Python client, unchanged, against the gateway over HTTP: chat and completions, streaming
(including usage), the tier header through `with_raw_response`, model listing, and errors surfacing as the
client's own exception types (bad request, not found, upstream failure, a stream that fails after it started)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def stubs() -> AsyncIterator[tuple[StubUpstream, StubUpstream]]:
    async with StubUpstream("small", answer="I'm sorry, I can't.") as small, StubUpstream("large") as large:
        yield small, large


@pytest.fixture
async def gateway(stubs: tuple[StubUpstream, StubUpstream]) -> AsyncIterator[RunningGateway]:
    small, large = stubs
    async with serve_gateway(make_config([openai_tier("small", small.base_url), openai_tier("large", large.base_url)])) as gw:
        yield gw


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="test-key", max_retries=0) as client:
        yield client


async def test_chat_completion(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="cascade", messages=QUESTION)
    assert raw.headers["x-neuroscale-tier"] == "large"
    assert raw.headers["x-neuroscale-escalations"] == "small:refusal"
    completion = raw.parse()
    assert completion.choices[0].message.content == "The capital of France is Paris."
    assert completion.usage is not None and completion.usage.completion_tokens == 6


async def test_chat_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="cascade", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == "The capital of France is Paris."
    assert len(pieces) == 6
    assert usage is not None and usage.completion_tokens == 6


async def test_legacy_completions_stream(client: openai.AsyncOpenAI, stubs) -> None:
    stream = await client.completions.create(model="large", prompt="The capital of France is", stream=True)
    text = "".join([chunk.choices[0].text async for chunk in stream])
    assert text == "The capital of France is Paris."


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    assert [model.id async for model in client.models.list()] == ["cascade", "small", "large"]


async def test_errors_are_client_exceptions(client: openai.AsyncOpenAI, stubs) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="cascade", messages=QUESTION, extra_body={"guided_regex": "x"})
    assert bad.value.param == "guided_regex" and bad.value.code == "unknown_parameter"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    for stub in stubs:
        stub.behaviour.status = 503
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(model="cascade", messages=QUESTION)
    assert failed.value.status_code == 502


async def test_stream_failing_after_start_raises_in_the_client(client: openai.AsyncOpenAI, stubs) -> None:
    _, large = stubs
    large.behaviour.error_after_chunks = 3
    stream = await client.chat.completions.create(model="large", messages=QUESTION, stream=True)
    received = []
    # The engine's own words ("engine crashed") stay in the gateway's log.
    with pytest.raises(openai.APIError, match="Tier 'large' failed to answer"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "The capital of "
