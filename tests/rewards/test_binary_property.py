"""Binary property reward (yes / no about one protein): the PPI parser's strictness, a boolean truth only."""

from __future__ import annotations

import pytest

from protein_llm_nemo.rewards import RewardInputError, score

from .conftest import INJECTION, OVERLONG, SEQUENCE, make_record

HOLDS = make_record("binary_property", answer=True)
FAILS = make_record("binary_property", answer=False)


@pytest.mark.parametrize(
    ("record", "completion", "total"),
    [
        (HOLDS, "Yes.", 1.0),
        (FAILS, "No.", 1.0),
        (HOLDS, "No.", 0.1),  # wrong, well formed: the format bonus only
        (FAILS, "The score is negative, so no.", 0.9),  # right, the verdict not first
        (HOLDS, "**Yes**", 1.0),
    ],
)
def test_hand_computed_scores(record, completion, total):
    result = score(record, completion)
    assert result.total == pytest.approx(total)
    assert result.components["correct"] == (1.0 if total >= 0.9 else 0.0)


@pytest.mark.parametrize(
    ("completion", "flag"),
    [
        ("yes and no", "ambiguous"),  # both answers: a format failure, never half credit
        ("Yes/No", "ambiguous"),
        ("", "no_answer"),
        ("Nobody knows; yesterday it was unclear.", "no_answer"),  # substrings of other words
        (SEQUENCE, "no_answer"),
        (INJECTION, "no_answer"),
        (OVERLONG, "overlong"),  # refused before parsing
    ],
)
def test_hacks_score_zero(completion, flag):
    result = score(HOLDS, completion)
    assert result.total == 0.0
    assert not result.format_ok
    assert result.components.get(flag) == 1.0


@pytest.mark.parametrize("truth", ["no", 1, "True"])
def test_truth_must_be_a_boolean(truth):
    with pytest.raises(RewardInputError, match="boolean"):
        score(make_record("binary_property", answer=truth), "Yes")


def test_missing_truth_is_an_input_error():
    with pytest.raises(RewardInputError, match="meta\\['answer'\\]"):
        score(make_record("binary_property"), "Yes")
