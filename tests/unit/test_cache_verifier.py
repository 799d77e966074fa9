"""The semantic verifier: paraphrases it accepts, and the hard negatives it must reject (antonym, negation,
number, name, unit, date, swapped direction, added qualifier); which refusals it leaves to the embedding check (words
only one question has) and with which texts; plus robustness on odd input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.cache.verifier import same_question


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reset my password?", "How can I reset my passwords?"),
        ("What is the capital of France?", "What's France's capital?"),
        ("How many calories are in 2 eggs?", "How many calories do two eggs have?"),
        ("How do I log in to my account?", "How can I sign in to my account?"),
        ("How do I delete my account?", "What are the steps to remove my account?"),
        ("How do I enable 2FA?", "How can I turn on two-factor authentication?"),
        ("When was the Eiffel Tower built?", "When did they build the Eiffel Tower?"),
        ("Who wrote Emma?", "Emma was written by whom?"),  # "whom" is "who", not framing
    ],
)
def test_paraphrases_pass(a: str, b: str) -> None:
    verdict = same_question(a, b)
    assert verdict.same, verdict.reason


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("How do I enable 2FA?", "How do I disable 2FA?", "words differ"),
        ("How do I upload a file?", "How do I download a file?", "words differ"),
        ("Is it safe to take ibuprofen with alcohol?", "Is it not safe to take ibuprofen with alcohol?", "negation"),
        ("Should I take ibuprofen with food?", "Should I take ibuprofen without food?", "negation"),
        ("Why doesn't my screen turn off?", "Why does my screen turn off?", "negation"),
        ("How many calories in 2 eggs?", "How many calories in 3 eggs?", "numbers"),
        ("How much does a 1,000 GB drive cost?", "How much does a 2000 GB drive cost?", "numbers"),
        ("What is the capital of France?", "What is the capital of Spain?", "words differ"),
        ("How many ounces are in a pound?", "How many grams are in a pound?", "words differ"),
        ("What time does the store open on Monday?", "What time does the store open on Sunday?", "words differ"),
        ("Flights from Paris to Rome", "Flights from Rome to Paris", "object after"),
        ("Is 5G faster than 4G?", "Is 4G faster than 5G?", "object after"),
        ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?", "object after"),
        ("How do I enable 2FA?", "How do I enable 2FA on GitHub?", "words only in one question"),
        ("Who wrote Pride and Prejudice?", "Who wrote Emma?", "words differ"),
        ("How do I log in?", "How do I log out?", "words differ"),
    ],
)
def test_hard_negatives_fail(a: str, b: str, reason: str) -> None:
    verdict = same_question(a, b)
    assert not verdict.same and reason in verdict.reason
    assert not same_question(b, a).same


@pytest.mark.parametrize(
    ("a", "b", "full", "reduced"),
    [
        ("What are examples of mammals?", "What are some examples of mammals?",
         "what are some examples of mammals", "what are examples of mammals"),
        ("How do I reset my router?", "How do I reset my router password?",
         "how do i reset my router password", "how do i reset my router"),
        ("Which city is the capital of France?", "What is the capital of France?",
         "which city is the capital of france", "which is the capital of france"),
    ],
)
def test_extra_words_are_left_to_the_embedding_check(a: str, b: str, full: str, reduced: str) -> None:
    verdict = same_question(a, b)
    assert not verdict.same and verdict.ablation == (full, reduced)
    assert same_question(b, a).ablation == (full, reduced)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I enable 2FA?", "How do I disable 2FA?"),  # a word swapped, not added
        ("How do I reset my router?", "How do I reset my home router admin password?"),  # three words added
        ("Flights to Rome", "Flights from Paris to Rome"),  # a direction word added
        ("Is it safe to eat eggs?", "Is it not safe to eat eggs?"),  # negation
        ("What are some good books about World War II?", "What are some good books about World War I?"),  # numeral
        ("What are the symptoms of diabetes?", "What are the symptoms of type 1 diabetes?"),  # a digit 1 counts
        ("What are good books about Rome?", "What are some bad books about Rome?"),  # opposite of a framing word
        ("Why do cats purr?", "How do cats purr?"),  # another question word
        ("What should I do if I get a flat tire?", "What should I do to avoid a flat tire?"),  # turned around
    ],
)
def test_refusals_the_embedding_check_never_overrules(a: str, b: str) -> None:
    verdict = same_question(a, b)
    assert not verdict.same and verdict.ablation is None, verdict


@given(st.text(max_size=60), st.text(max_size=60))
def test_never_crashes_and_is_symmetric(a: str, b: str) -> None:
    assert same_question(a, b).same == same_question(b, a).same
    assert same_question(a, b).ablation == same_question(b, a).ablation
    assert same_question(a, a).same
