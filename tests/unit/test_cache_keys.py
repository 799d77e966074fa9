"""Cache keys: canonical form (defaults, nulls, text parts, transport fields), scope isolation (property-based),
the context/question split that gates semantic matching, and the scope tag that groups a scope's keys in one Redis
Cluster slot."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from neuroscale.cache.keys import canonical_json, request_keys, scope_tag, split_question


def make_chat(question: str = "How do I reset my password?", **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": "llama-3-8b",
        "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": question}],
        "temperature": 0,
    }
    request.update(overrides)
    return request


def test_equivalent_spellings_share_a_key() -> None:
    plain = make_chat()
    parts = make_chat()
    parts["messages"][1] = {"role": "user", "content": [{"type": "text", "text": "How do I reset my password?"}]}
    spelled = {**make_chat(temperature=0.0, n=1, stream=True, stream_options={"include_usage": True}), "top_p": None}
    keys = {request_keys("chat", r, "tenant").exact for r in (plain, parts, spelled)}
    assert len(keys) == 1


def test_anything_that_changes_the_answer_changes_the_key() -> None:
    base = request_keys("chat", make_chat(), "tenant").exact
    variants = [
        make_chat(model="llama-3-70b"),
        make_chat(temperature=0.1),
        make_chat(max_tokens=10),
        make_chat(seed=7),
        make_chat(question="How do I reset my passwords?"),
        make_chat(messages=[{"role": "user", "content": "How do I reset my password?"}]),
        make_chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    ]
    assert all(request_keys("chat", v, "tenant").exact != base for v in variants)
    assert request_keys("completions", make_chat(), "tenant").exact != base


def test_context_ignores_only_the_last_user_turn() -> None:
    a = request_keys("chat", make_chat("How do I reset my password?"), "t")
    b = request_keys("chat", make_chat("What is the way to reset a password?"), "t")
    other_system = make_chat()
    other_system["messages"][0]["content"] = "Answer in French."
    c = request_keys("chat", other_system, "t")
    assert a.exact != b.exact and a.context == b.context
    assert c.context != a.context
    assert a.question == "How do I reset my password?"


def test_no_semantic_split_without_a_trailing_user_text_turn() -> None:
    assistant_last = make_chat(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}])
    image = make_chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    for request in (assistant_last, image, make_chat(messages=[]), make_chat(messages="nope")):
        assert split_question("chat", request) == (None, None)
        assert request_keys("chat", request, "t").context is None
    assert split_question("completions", {"model": "m", "prompt": "Say hi"})[0] == "Say hi"
    assert split_question("completions", {"model": "m", "prompt": ["a", "b"]}) == (None, None)


def test_canonical_json_is_stable_under_key_order() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "x", "role": "user"}], "model": "m"}
    assert canonical_json("chat", a) == canonical_json("chat", b)


@given(scope_a=st.text(max_size=40), scope_b=st.text(max_size=40), question=st.text(min_size=1, max_size=80))
def test_keys_never_cross_scopes(scope_a: str, scope_b: str, question: str) -> None:
    a = request_keys("chat", make_chat(question), scope_a)
    b = request_keys("chat", make_chat(question), scope_b)
    if scope_a == scope_b:
        assert a == b
    else:
        assert a.exact != b.exact
        assert a.context is None or a.context != b.context


@given(prefix=st.text(max_size=10), suffix=st.text(max_size=10))
def test_scope_boundary_cannot_be_shifted(prefix: str, suffix: str) -> None:
    # Moving characters between the scope and the body must never reproduce another tenant's key.
    request = make_chat(question=suffix or "q")
    a = request_keys("chat", request, prefix)
    b = request_keys("chat", request, prefix + "x")
    assert a.exact != b.exact


@given(st.text(max_size=40), st.text(max_size=40))
def test_scope_tag_names_the_scope_alone_and_fits_a_hash_tag(a: str, b: str) -> None:
    tag = scope_tag(a)
    assert len(tag) == 16 and set(tag) <= set("0123456789abcdef")
    assert (scope_tag(b) == tag) == (a == b)
    # Every request of one scope carries the same tag, whatever it asks.
    assert request_keys("chat", make_chat("one?"), a).scope_tag == request_keys("chat", make_chat("two?"), a).scope_tag == tag
