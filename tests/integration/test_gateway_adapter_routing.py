"""LoRA adapters through the real gateway, configured the way the operator renders it, in front of stub engines.

The gateway config comes from the operator's own renderer (`resolve_tiers` + `gateway_config`) for a cascade over a
ModelDeployment with two adapters (the cheap tier), a tier naming one of those adapters, and an external tier; only
the tiers' in-cluster URLs are pointed at the stubs. Covers, with the official `openai` client: `/v1/models` lists
both adapters next to the cascade and tier names, and `GET /v1/models/{adapter}` answers; a request naming an
adapter is served by the tier of its base ModelDeployment with the adapter's name as `model` upstream and in the
answer, even when that tier fails (an adapter never escalates to another model) and when the client pins a higher
tier by header; streaming does the same; the cascade's own requests still send the base model's name; a tier that
names an adapter sends the adapter's name; token usage is counted per adapter (the `adapter` label, empty for base
models); an unknown model is still a 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.gateway.config import GatewayConfig
from neuroscale.render.inferencecascade import gateway_config, resolve_tiers
from tests.support.factories import make_model_deployment
from tests.support.gateway_harness import RunningGateway, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "Which table holds the orders?"}]
ADAPTERS = [{"name": "sql", "source": "hf://org/llama-3.1-8b-sql-lora", "rank": 16},
            {"name": "support", "source": "s3://loras/support", "rank": 32}]


def rendered_config(base: StubUpstream, sql_tier: StubUpstream, large: StubUpstream) -> GatewayConfig:
    """The gateway config the operator renders for the cascade, with the tiers' URLs pointed at the stubs."""
    llama = make_model_deployment("llama", adapters=ADAPTERS)
    llama["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    spec = InferenceCascadeSpec.model_validate({"tiers": [
        {"name": "small", "modelDeployment": {"name": "llama"}},
        {"name": "small-sql", "modelDeployment": {"name": "llama", "adapter": "sql"}},
        {"name": "large", "openai": {"url": "https://llm.example.com/v1", "model": "large-model"}},
    ], "auth": {"mode": "none"}})  # callers unauthenticated here: test_gateway_tenants.py covers API keys
    tiers = resolve_tiers(spec, "models", {"llama": llama})
    assert [t.ready for t in tiers] == ["True", "True", "Unknown"]
    config = gateway_config("chat", spec, tiers, None)
    urls = {"small": base.base_url, "small-sql": sql_tier.base_url, "large": large.base_url}
    return config.model_copy(update={
        "host": "127.0.0.1", "port": 0,
        "tiers": [tier.model_copy(update={"url": urls[tier.name]}) for tier in config.tiers],
    })


@pytest.fixture
async def stubs() -> AsyncIterator[tuple[StubUpstream, StubUpstream, StubUpstream]]:
    async with (StubUpstream("small", answer="SELECT * FROM orders;") as base,
                StubUpstream("small-sql", answer="orders") as sql_tier,
                StubUpstream("large", answer="The orders table.") as large):
        yield base, sql_tier, large


@pytest.fixture
async def gateway(stubs: tuple[StubUpstream, StubUpstream, StubUpstream]) -> AsyncIterator[RunningGateway]:
    async with serve_gateway(rendered_config(*stubs)) as running:
        yield running


@pytest.fixture
async def client(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="test-key", max_retries=0) as client:
        yield client


def test_the_rendered_config_carries_the_adapters(stubs) -> None:
    config = rendered_config(*stubs)
    small, small_sql, large = config.tiers
    assert small.kind == "openai" and small.model == "Llama-3.1-8B-Instruct" and small.adapters == ("sql", "support")
    assert small_sql.kind == "openai" and small_sql.model == "sql" and small_sql.adapters == ("sql", "support")
    assert large.kind == "openai" and large.adapters == ()


async def test_models_lists_every_adapter(client: openai.AsyncOpenAI) -> None:
    listed = [model.id async for model in client.models.list()]
    assert listed == ["chat", "small", "small-sql", "large", "sql", "support"]
    assert (await client.models.retrieve("support")).id == "support"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("billing")


async def test_an_adapter_is_served_by_its_base_deployment_under_its_name(stubs, gateway, client) -> None:
    base, sql_tier, large = stubs
    raw = await client.chat.completions.with_raw_response.create(model="support", messages=QUESTION)
    assert raw.headers["x-neuroscale-tier"] == "small"
    completion = raw.parse()
    assert completion.model == "support"
    assert completion.choices[0].message.content == "SELECT * FROM orders;"
    assert [r["model"] for r in base.requests] == ["support"]
    assert sql_tier.requests == [] and large.requests == []
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="small", kind="completion", adapter="support") == 4
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="small", kind="completion", adapter="") == 0


async def test_an_adapter_streams_from_its_base_deployment(stubs, gateway, client) -> None:
    base, _, _ = stubs
    stream = await client.chat.completions.create(model="sql", messages=QUESTION, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert {chunk.model for chunk in chunks} == {"sql"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "SELECT * FROM orders;"
    assert base.requests[0]["model"] == "sql" and base.requests[0]["stream"] is True
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="small", kind="completion", adapter="sql") == 4


async def test_an_adapter_never_escalates_to_another_model(stubs, gateway, client) -> None:
    base, sql_tier, large = stubs
    base.behaviour.status = 503
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="sql", messages=QUESTION,
                                             extra_headers={"x-neuroscale-tier": "large"})
    assert failed.value.status_code == 502
    assert [r["model"] for r in base.requests] == ["sql"]
    assert sql_tier.requests == [] and large.requests == []


async def test_the_cascade_sends_base_models_and_the_adapter_a_tier_names(stubs, gateway, client) -> None:
    base, sql_tier, large = stubs
    base.behaviour.answer = "I'm sorry, I can't help with that."  # a refusal: the cascade moves on
    sql_tier.behaviour.answer = ""  # an empty answer: on to the last tier
    raw = await client.chat.completions.with_raw_response.create(model="chat", messages=QUESTION)
    assert raw.headers["x-neuroscale-tier"] == "large"
    assert raw.headers["x-neuroscale-escalations"] == "small:refusal,small-sql:empty_answer"
    assert [r["model"] for r in base.requests] == ["Llama-3.1-8B-Instruct"]
    assert [r["model"] for r in sql_tier.requests] == ["sql"]
    assert [r["model"] for r in large.requests] == ["large-model"]
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="small-sql", kind="prompt", adapter="sql") > 0
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="large", kind="completion", adapter="") == 3
