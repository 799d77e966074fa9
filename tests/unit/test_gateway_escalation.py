"""Escalation rules (pure): tier planning from the model name, tier and max-tier headers, the default cap and
prompt length; the answer judge for empty answers, refusals, low mean log-probability, tool calls and partial
(streamed) answers; the prompt-token estimate; views of complete chat and completions responses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.gateway.config import EscalationPolicy
from neuroscale.gateway.escalation import (
    AnswerJudge,
    AnswerView,
    Reason,
    estimate_prompt_tokens,
    plan_tiers,
    view_of_response,
)
from neuroscale.gateway.protocol import OpenAIError
from tests.support.gateway_harness import make_config, openai_tier


def three_tiers(**overrides: object) -> object:
    tiers = [
        openai_tier("small", "http://small/v1", max_prompt_tokens=100),
        openai_tier("medium", "http://medium/v1", max_prompt_tokens=1000),
        openai_tier("large", "http://large/v1"),
    ]
    return make_config(tiers, **overrides)


def judge(**policy: object) -> AnswerJudge:
    return AnswerJudge.from_policy(EscalationPolicy(**policy))


def test_cascade_model_plans_every_tier_cheapest_first() -> None:
    plan = plan_tiers(three_tiers(), "cascade", prompt_tokens=10)
    assert plan.tiers == (0, 1, 2)
    assert plan.skipped == ()


def test_prompt_length_skips_tiers_that_cannot_take_it() -> None:
    plan = plan_tiers(three_tiers(), "cascade", prompt_tokens=500)
    assert plan.tiers == (1, 2)
    assert [(s.tier, s.reason) for s in plan.skipped] == [(0, Reason.PROMPT_LENGTH)]


def test_model_naming_a_tier_starts_there() -> None:
    assert plan_tiers(three_tiers(), "medium", prompt_tokens=10).tiers == (1, 2)


def test_tier_header_starts_higher_but_never_lower_than_the_model() -> None:
    config = three_tiers()
    assert plan_tiers(config, "cascade", 10, tier_hint="large").tiers == (2,)
    assert plan_tiers(config, "medium", 10, tier_hint="small").tiers == (1, 2)


def test_max_tier_header_caps_the_plan() -> None:
    assert plan_tiers(three_tiers(), "cascade", 10, max_tier_hint="medium").tiers == (0, 1)


def test_default_max_tier_caps_and_the_header_cannot_raise_it() -> None:
    config = three_tiers(escalation={"default_max_tier": "medium"})
    assert plan_tiers(config, "cascade", 10).tiers == (0, 1)
    assert plan_tiers(config, "cascade", 10, max_tier_hint="large").tiers == (0, 1)


def test_start_above_the_cap_is_a_client_error() -> None:
    with pytest.raises(OpenAIError) as caught:
        plan_tiers(three_tiers(), "large", 10, max_tier_hint="small")
    assert caught.value.status == 400
    assert caught.value.param == "x-neuroscale-max-tier"


def test_unknown_model_is_404_listing_what_exists() -> None:
    with pytest.raises(OpenAIError) as caught:
        plan_tiers(three_tiers(), "gpt-4", 10)
    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    assert "cascade, small, medium, large" in caught.value.message


def test_unknown_tier_header_is_named() -> None:
    with pytest.raises(OpenAIError, match="unknown tier 'huge'"):
        plan_tiers(three_tiers(), "cascade", 10, tier_hint="huge")


def test_hints_ignored_or_refused_when_the_policy_forbids_them() -> None:
    config = three_tiers(escalation={"allow_client_hint": False})
    assert plan_tiers(config, "cascade", 10, tier_hint="large").tiers == (0, 1, 2)
    with pytest.raises(OpenAIError):
        plan_tiers(config, "large", 10)


def test_prompt_too_long_for_every_allowed_tier() -> None:
    with pytest.raises(OpenAIError) as caught:
        plan_tiers(three_tiers(), "cascade", 5000, max_tier_hint="medium")
    assert caught.value.code == "context_length_exceeded"


@given(
    start=st.sampled_from(["cascade", "small", "medium", "large"]),
    cap=st.sampled_from([None, "small", "medium", "large"]),
    tokens=st.integers(min_value=0, max_value=5000),
)
def test_plans_are_ascending_within_start_and_cap(start: str, cap: str | None, tokens: int) -> None:
    config = three_tiers()
    try:
        plan = plan_tiers(config, start, tokens, max_tier_hint=cap)
    except OpenAIError as error:
        assert error.status == 400
        return
    low = 0 if start == "cascade" else config.tier_index(start)
    high = 2 if cap is None else config.tier_index(cap)
    assert list(plan.tiers) == sorted(set(plan.tiers))
    assert all(low <= index <= high for index in plan.tiers)
    assert 2 in plan.tiers or high < 2
    for index in plan.tiers:
        limit = config.tiers[index].max_prompt_tokens
        assert limit is None or tokens <= limit


def test_judge_flags_empty_only_when_the_answer_is_complete() -> None:
    rules = judge()
    assert rules.judge(AnswerView("  ")) is Reason.EMPTY_ANSWER
    assert rules.judge(AnswerView("", complete=False)) is None
    assert judge(on_empty_answer=False).judge(AnswerView("")) is None


@pytest.mark.parametrize(
    "text", ["I'm sorry, but I can't help with that.", "I cannot do that.", "As an AI, I have no opinion.", "sorry, I won't"]
)
def test_judge_flags_refusals(text: str) -> None:
    assert judge().judge(AnswerView(text)) is Reason.REFUSAL
    assert judge(on_refusal=False).judge(AnswerView(text)) is None


def test_judge_does_not_flag_answers_that_mention_sorry_later() -> None:
    assert judge().judge(AnswerView("Paris. Sorry for the short answer.")) is None


def test_judge_low_mean_logprob_only_with_logprobs() -> None:
    rules = judge(min_mean_logprob=-1.0)
    assert rules.judge(AnswerView("maybe", logprobs=(-0.5, -2.0, -2.0))) is Reason.LOW_LOGPROB
    assert rules.judge(AnswerView("sure", logprobs=(-0.5, -1.0))) is None
    assert rules.judge(AnswerView("no logprobs from this engine")) is None


def test_tool_calls_are_never_empty_or_refusals() -> None:
    assert judge().judge(AnswerView("", has_tool_calls=True)) is None


def test_judge_activity_and_logprob_need() -> None:
    assert not judge(on_empty_answer=False, on_refusal=False).active
    assert judge(min_mean_logprob=-2.0).wants_logprobs
    assert not judge().wants_logprobs


def test_estimate_counts_characters_and_message_overhead() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 40}, {"role": "user", "content": [{"type": "text", "text": "y" * 4}]}]}
    assert estimate_prompt_tokens("chat", chat) == 10 + 1 + 1 + 8
    assert estimate_prompt_tokens("completions", {"prompt": "z" * 9}) == 3


def test_views_of_complete_responses() -> None:
    chat = {"choices": [{"message": {"content": "hi"}, "logprobs": {"content": [{"token": "hi", "logprob": -0.3}]}}]}
    assert view_of_response("chat", chat) == AnswerView("hi", False, (-0.3,))
    completion = {"choices": [{"text": "ok", "logprobs": {"token_logprobs": [-1.0, None]}}]}
    assert view_of_response("completions", completion) == AnswerView("ok", False, (-1.0,))
    tools = {"choices": [{"message": {"content": None, "tool_calls": [{"id": "1"}]}}]}
    assert view_of_response("chat", tools).has_tool_calls
