"""The gateway's adapter rules and the operator's rendering of adapter tiers, pure.

Covers: adapter names listed once in tier order; a request naming an adapter planned onto the first tier serving
it alone (prompt-length bound kept), any other model left to the cascade's rules; the model sent upstream (the
client's adapter, else the tier's model) and the usage label; a config whose adapter shadows the cascade or a tier
name refused; the operator renders a ModelDeployment tier's adapters and, for a tier naming an adapter, that
adapter as the model, and reports the tier not ready when its ModelDeployment serves no such adapter.
"""

from __future__ import annotations

import pytest

from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.gateway.adapters import adapter_names, adapter_plan, upstream_model, usage_adapter
from neuroscale.gateway.config import GatewayConfig
from neuroscale.gateway.escalation import TierPlan
from neuroscale.gateway.protocol import OpenAIError
from neuroscale.render.inferencecascade import resolve_tiers
from tests.support.factories import make_model_deployment


def config(**small: object) -> GatewayConfig:
    return GatewayConfig.model_validate({"model_name": "chat", "tiers": [
        {"kind": "openai", "name": "small", "url": "http://a/v1", "model": "base", "adapters": ["sql", "support"],
         **small},
        {"kind": "openai", "name": "small-sql", "url": "http://a/v1", "model": "sql", "adapters": ["sql", "support"]},
        {"kind": "bedrock", "name": "large", "model_id": "m", "region": "us-east-1"},
    ]})


def test_adapter_names_are_listed_once_in_tier_order() -> None:
    assert adapter_names(config()) == ["sql", "support"]


def test_an_adapter_is_planned_onto_the_first_tier_serving_it_alone() -> None:
    assert adapter_plan(config(), "support", 10) == TierPlan((0,))
    assert adapter_plan(config(), "chat", 10) is None
    assert adapter_plan(config(), "large", 10) is None
    with pytest.raises(OpenAIError) as too_long:
        adapter_plan(config(max_prompt_tokens=100), "sql", 101)
    assert too_long.value.status == 400


def test_the_model_sent_upstream_and_the_usage_label() -> None:
    small, small_sql, _ = config().tiers
    assert upstream_model(small, "sql") == "sql"
    assert upstream_model(small, "chat") == "base"
    assert upstream_model(small_sql, "chat") == "sql"
    assert usage_adapter(config(), "small", "chat") == ""
    assert usage_adapter(config(), "small", "support") == "support"
    assert usage_adapter(config(), "small-sql", "chat") == "sql"
    assert usage_adapter(config(), "large", "sql") == ""


@pytest.mark.parametrize("shadowed", ["chat", "large", "small-sql"])
def test_an_adapter_may_not_shadow_the_cascade_or_a_tier(shadowed: str) -> None:
    with pytest.raises(ValueError, match=f"adapter names must differ .*{shadowed}"):
        config(adapters=[shadowed])


def test_the_operator_renders_adapter_tiers() -> None:
    spec = InferenceCascadeSpec.model_validate({"tiers": [
        {"name": "small", "modelDeployment": {"name": "llama"}},
        {"name": "small-sql", "modelDeployment": {"name": "llama", "adapter": "sql"}},
        {"name": "small-billing", "modelDeployment": {"name": "llama", "adapter": "billing"}},
    ]})
    llama = make_model_deployment("llama", adapters=[{"name": "sql", "source": "hf://org/sql-lora"}])
    llama["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    small, small_sql, billing = resolve_tiers(spec, "models", {"llama": llama})
    assert small.config["model"] == "Llama-3.1-8B-Instruct" and small.config["adapters"] == ["sql"]
    assert small_sql.config["model"] == "sql" and small_sql.ready == "True"
    assert billing.config["model"] == "billing"
    assert (billing.ready, billing.message) == ("False", "ModelDeployment llama serves no adapter billing")
    plain = make_model_deployment("llama")
    assert "adapters" not in resolve_tiers(spec, "models", {"llama": plain})[0].config
