"""Escalation rules, pure: which tiers a request may use, and whether a tier's answer is good enough.

Two kinds of rule, applied at two moments:

* Before the request (`plan_tiers`): the client's model (a tier name) or tier header picks the starting tier; the
  max-tier header (or the configured default) caps the highest tier; tiers whose `max_prompt_tokens` is below the
  estimated prompt size are skipped. Estimated tokens = ceil(characters / 4) + 4 per chat message: the usual
  English-text rule of thumb, cheap enough for the hot path, and erring long for code or CJK text, which only
  escalates earlier.
* After (part of) an answer (`AnswerJudge.judge`): an upstream error or timeout, an empty answer, a refusal, or a
  mean token log-probability below the threshold (only when the engine returned log-probs) moves the request on.

Streaming and answer-quality rules: a rule that needs the answer conflicts with passing tokens through as they
arrive. The gateway resolves it with a bounded inspection window: on a tier that still has a tier above it, it holds
back the first `stream_inspect_tokens` chunks and judges them (a refusal shows in its opening words; a low-confidence
answer usually shows in its first tokens; an answer that ends inside the window is judged whole). If they pass, the
held chunks are flushed and the rest streams through unbuffered; once bytes have reached the client the tier is
committed, so a failure after that ends the stream with an error event instead of escalating. The cost is a time to
first token delayed by at most the window on lower tiers; the final tier, and any tier when no quality rule is
enabled, streams from its first chunk. A window of 0 turns inspection off.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from neuroscale.gateway.config import EscalationPolicy, GatewayConfig
from neuroscale.gateway.protocol import Endpoint, OpenAIError, invalid, message_text, prompt_text


class Reason(StrEnum):
    """Why a request left a tier (the `reason` label of the escalation metric)."""

    PROMPT_LENGTH = "prompt_length"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    EMPTY_ANSWER = "empty_answer"
    REFUSAL = "refusal"
    LOW_LOGPROB = "low_logprob"
    COLD = "cold"  # scaled to zero and not awake within the hold deadline: bridged to the next tier


@dataclass(frozen=True)
class Skip:
    tier: int
    reason: Reason


@dataclass(frozen=True)
class TierPlan:
    """Tier indices to try, cheapest first, and the tiers skipped before trying any."""

    tiers: tuple[int, ...]
    skipped: tuple[Skip, ...] = ()


def estimate_prompt_tokens(endpoint: Endpoint, body: dict[str, Any]) -> int:
    overhead = 4 * len(body.get("messages", ())) if endpoint == "chat" else 0
    return math.ceil(len(prompt_text(endpoint, body)) / 4) + overhead


def plan_tiers(
    config: GatewayConfig,
    model: str,
    prompt_tokens: int,
    tier_hint: str | None = None,
    max_tier_hint: str | None = None,
) -> TierPlan:
    """Decide which tiers a request may visit; raise OpenAIError when no tier can take it."""
    policy = config.escalation
    start = 0
    if model != config.model_name:
        index = config.tier_index(model)
        if index is None:
            names = ", ".join([config.model_name, *(tier.name for tier in config.tiers)])
            raise OpenAIError(
                404, f"The model '{model}' does not exist; available: {names}.", param="model", code="model_not_found"
            )
        if not policy.allow_client_hint:
            raise invalid("This gateway does not accept tier names as model.", param="model", code="unsupported_value")
        start = index
    if tier_hint is not None and policy.allow_client_hint:
        start = max(start, _tier_from_header(config, tier_hint, policy.tier_header))
    last = len(config.tiers) - 1
    default_cap = config.tier_index(policy.default_max_tier) if policy.default_max_tier else None
    if default_cap is not None:
        last = default_cap
    if max_tier_hint is not None:
        last = min(last, _tier_from_header(config, max_tier_hint, policy.max_tier_header))
    if start > last:
        raise invalid(
            f"The requested tier '{config.tiers[start].name}' is above the maximum tier '{config.tiers[last].name}'.",
            param=policy.max_tier_header,
        )
    usable, skipped = [], []
    for index in range(start, last + 1):
        limit = config.tiers[index].max_prompt_tokens
        if limit is not None and prompt_tokens > limit:
            skipped.append(Skip(index, Reason.PROMPT_LENGTH))
        else:
            usable.append(index)
    if not usable:
        raise invalid(
            f"The prompt (about {prompt_tokens} tokens) is longer than any allowed tier accepts.",
            param="messages",
            code="context_length_exceeded",
        )
    return TierPlan(tuple(usable), tuple(skipped))


def _tier_from_header(config: GatewayConfig, value: str, header: str) -> int:
    index = config.tier_index(value.strip())
    if index is None:
        names = ", ".join(tier.name for tier in config.tiers)
        raise invalid(f"Header {header} names unknown tier '{value}'; tiers are {names}.", param=header)
    return index


@dataclass(frozen=True)
class AnswerView:
    """What the judge needs from an answer (whole or its first chunks)."""

    text: str
    has_tool_calls: bool = False
    logprobs: tuple[float, ...] = ()
    complete: bool = True


@dataclass(frozen=True)
class AnswerJudge:
    """The answer-quality rules of a policy, with its patterns compiled once."""

    on_empty: bool
    refusals: tuple[re.Pattern[str], ...]
    min_mean_logprob: float | None
    inspect_chunks: int

    @classmethod
    def from_policy(cls, policy: EscalationPolicy) -> AnswerJudge:
        refusals = tuple(re.compile(p, re.IGNORECASE) for p in policy.refusal_patterns) if policy.on_refusal else ()
        return cls(policy.on_empty_answer, refusals, policy.min_mean_logprob, policy.stream_inspect_tokens)

    @property
    def active(self) -> bool:
        return self.on_empty or bool(self.refusals) or self.min_mean_logprob is not None

    @property
    def wants_logprobs(self) -> bool:
        return self.min_mean_logprob is not None

    def judge(self, answer: AnswerView) -> Reason | None:
        """The reason to escalate, or None when the answer (so far) passes."""
        if answer.has_tool_calls:
            return None
        text = answer.text.strip()
        if not text:
            return Reason.EMPTY_ANSWER if self.on_empty and answer.complete else None
        if any(pattern.search(text) for pattern in self.refusals):
            return Reason.REFUSAL
        if self.min_mean_logprob is not None and answer.logprobs:
            if sum(answer.logprobs) / len(answer.logprobs) < self.min_mean_logprob:
                return Reason.LOW_LOGPROB
        return None


def view_of_response(endpoint: Endpoint, response: dict[str, Any]) -> AnswerView:
    """Extract the judged parts of a complete OpenAI response."""
    choices = response.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    if endpoint == "chat":
        message = choice.get("message") or {}
        return AnswerView(
            text=message_text(message.get("content")),
            has_tool_calls=bool(message.get("tool_calls")),
            logprobs=chat_logprobs(choice.get("logprobs")),
        )
    return AnswerView(text=str(choice.get("text") or ""), logprobs=completion_logprobs(choice.get("logprobs")))


def chat_logprobs(logprobs: Any) -> tuple[float, ...]:
    if not isinstance(logprobs, dict):
        return ()
    return tuple(float(item["logprob"]) for item in logprobs.get("content") or () if "logprob" in item)


def completion_logprobs(logprobs: Any) -> tuple[float, ...]:
    if not isinstance(logprobs, dict):
        return ()
    return tuple(float(value) for value in logprobs.get("token_logprobs") or () if value is not None)
