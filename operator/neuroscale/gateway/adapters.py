"""LoRA adapters behind the gateway: each adapter a ModelDeployment tier serves is a model name of its own.

A request naming an adapter goes to the first tier that serves it, with the adapter's name as `model` (vLLM picks
the adapter by that name), and only there: an adapter is a fine-tuned model of its own, which no other tier can
stand in for, so it never escalates. Usage is counted per adapter (the `adapter` label of the token metric; empty
for the base models). Adapter names come from the ModelDeployments' specs, so the label's values are bounded by them.
"""

from __future__ import annotations

from neuroscale.gateway.config import GatewayConfig, OpenAITier
from neuroscale.gateway.escalation import TierPlan
from neuroscale.gateway.protocol import invalid

# The token metric's adapter label for requests served by a base model.
BASE_MODEL = ""


def adapter_names(config: GatewayConfig) -> list[str]:
    """Every adapter any tier serves, once, in tier order."""
    return list(dict.fromkeys(name for tier in config.tiers if tier.kind == "openai" for name in tier.adapters))


def adapter_plan(config: GatewayConfig, model: str, prompt_tokens: int) -> TierPlan | None:
    """The one tier serving adapter `model`; None when `model` names no adapter (the cascade's rules apply)."""
    index = next((i for i, tier in enumerate(config.tiers) if tier.kind == "openai" and model in tier.adapters), None)
    if index is None:
        return None
    limit = config.tiers[index].max_prompt_tokens
    if limit is not None and prompt_tokens > limit:
        raise invalid(
            f"The prompt (about {prompt_tokens} tokens) is longer than adapter '{model}' accepts.",
            param="messages", code="context_length_exceeded",
        )
    return TierPlan((index,))


def upstream_model(tier: OpenAITier, requested: str) -> str:
    """The model a tier is asked for: the client's when it is one of the tier's adapters, else the tier's own."""
    return requested if requested in tier.adapters else tier.model


def usage_adapter(config: GatewayConfig, tier_name: str, requested: str) -> str:
    """The adapter label a request's usage is counted under on tier `tier_name`."""
    index = config.tier_index(tier_name)
    if index is None:
        return BASE_MODEL
    tier = config.tiers[index]
    if tier.kind != "openai":
        return BASE_MODEL
    sent = upstream_model(tier, requested)
    return sent if sent in tier.adapters else BASE_MODEL
