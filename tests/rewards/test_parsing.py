"""Shared parsing: the answer region of a completion, negation, numbers in free text."""

from __future__ import annotations

import pytest

from protein_llm_nemo.rewards.answer_text import answer_region, is_negated, without_thinking
from protein_llm_nemo.rewards.numbers import KJ_PER_KCAL, distinct_values, find_numbers


@pytest.mark.parametrize(
    ("completion", "region"),
    [
        ("Yes, they interact.", "Yes, they interact."),
        ("<think>maybe no</think>\nYes", "Yes"),
        ("<THINK>no</THINK> yes", "yes"),
        ("reasoning the prompt opened</think>\n\nAnswer: no", "no"),  # Qwen3's prompt can open the block
        ("Yes <think>unclosed thinking hides the rest", "Yes"),
        ("First guess: A. Answer: B. On reflection, Final answer: C", "C"),
        ("**Answer:** B", "B"),
        ("**Answer**: B", "B"),
        ("The answer: 2", "2"),
        ("", ""),
    ],
)
def test_answer_region(completion, region):
    assert answer_region(completion) == region


def test_without_thinking_keeps_text_between_blocks():
    assert without_thinking("a<think>x</think>b<think>y</think>c") == "abc"


@pytest.mark.parametrize(
    ("text", "word", "negated"),
    [
        ("not high", "high", True),
        ("is not a high", "high", True),
        ("isn't yes", "yes", True),
        ("I cannot say no", "no", True),
        ("non-globular", "globular", True),
        ("notably high", "high", False),
        ("high", "high", False),
    ],
)
def test_is_negated(text, word, negated):
    assert is_negated(text, text.rindex(word)) is negated


@pytest.mark.parametrize(
    ("text", "values", "units"),
    [
        ("ddG is -1.2 kcal/mol", [-1.2], ["kcal"]),
        ("\u22121,5 kcal/mol", [-1.5], ["kcal"]),  # unicode minus, decimal comma
        ("\u20130.5", [-0.5], [None]),  # en dash used as a minus
        ("-5.0 kJ mol-1", [-5.0], ["kj"]),
        ("5 kcal\u00b7mol\u207b\u00b9", [5.0], ["kcal"]),
        ("0.8kcal/mol", [0.8], ["kcal"]),
        ("2.5e-1", [0.25], [None]),
        ("1.5 \u00d7 10^-1 kJ/mol", [0.15], ["kj"]),
        ("+2", [2.0], [None]),
        ("85%", [85.0], [None]),
        ("1-2", [1.0, 2.0], [None, None]),  # a range is two numbers
        ("1,2,3", [1.2, 3.0], [None, None]),
        ("value 3.", [3.0], [None]),
        # Not numbers: inside identifiers, ordinals, a hyphen glued to a word.
        ("A23K", [], []),
        ("ESM2", [], []),
        ("2nd", [], []),
        ("3D", [], []),
        ("ddG-1.2", [], []),
        ("1.2.3", [], []),
    ],
)
def test_find_numbers(text, values, units):
    found = find_numbers(text)
    assert [q.value for q in found] == pytest.approx(values)
    assert [q.unit for q in found] == units


def test_huge_exponent_is_infinite_not_an_error():
    assert find_numbers("1e999999")[0].value == float("inf")


def test_distinct_values_merges_restatements():
    assert distinct_values([-1.2, -5.0 / KJ_PER_KCAL, -1.2], 0.05) == [-1.2]
    assert distinct_values([1.0, 2.0], 0.05) == [1.0, 2.0]
