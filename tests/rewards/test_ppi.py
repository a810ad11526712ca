"""PPI reward: a strict yes / no; hedges score 0, never a half."""

from __future__ import annotations

import pytest

from protein_llm_nemo.rewards import RewardConfig, RewardInputError, score
from protein_llm_nemo.rewards.ppi import PpiReward, parse_verdict

from .conftest import INJECTION, OVERLONG, SEQUENCE, make_record

INTERACTS = make_record("ppi", interacts=True)
APART = make_record("ppi", interacts=False)


@pytest.mark.parametrize(
    ("record", "completion", "total"),
    [
        (INTERACTS, "Yes, they interact.", 1.0),  # the reference answer's shape
        (APART, "No, they do not interact.", 1.0),  # "not" is not the word "no"
        (INTERACTS, "No, they do not interact.", 0.1),  # wrong, well formed: the format bonus only
        (INTERACTS, "yes", 1.0),
        (INTERACTS, "**Yes**", 1.0),
        (INTERACTS, "Answer: yes", 1.0),
        (INTERACTS, "They share a pathway. Final answer: Yes.", 1.0),
        (INTERACTS, "They interact: yes.", 0.9),  # right, but the verdict is not the first word
        (APART, "These two proteins do not interact, so no.", 0.9),
    ],
)
def test_hand_computed_scores(record, completion, total):
    result = score(record, completion)
    assert result.total == pytest.approx(total)
    assert result.format_ok


@pytest.mark.parametrize(
    ("completion", "total", "flag"),
    [
        ("yes and no", 0.0, "ambiguous"),
        ("Yes/No", 0.0, "ambiguous"),
        ("Yes. No doubt about it.", 0.0, "ambiguous"),  # both words, whatever the intent
        ("Maybe.", 0.0, "no_answer"),
        ("They interact.", 0.0, "no_answer"),
        ("", 0.0, "no_answer"),
        ("Nobody knows; yesterday's data were unclear.", 0.0, "no_answer"),  # substrings are not words
        ("not yes", 0.0, "negated"),
        ("I cannot say yes.", 0.0, "negated"),
        ("YES YES YES", 1.0, None),  # one verdict, repeated
        (INJECTION, 0.0, "no_answer"),
        (f"{INJECTION} Answer: yes", 1.0, None),  # the injection is inert: the verdict alone is scored
        (SEQUENCE, 0.0, "no_answer"),
        (f"{SEQUENCE}\nYes", 0.9, None),  # echoing the protein first costs the format bonus
        ("<think>no</think> Yes", 1.0, None),
        ("Answer: no. Answer: yes", 1.0, None),  # the last answer marker is the commitment
        ("Answer: yes. Answer: no", 0.1, None),
        (OVERLONG, 0.0, "overlong"),
        ("yes " * 2_600, 0.0, "overlong"),
    ],
)
def test_adversarial_completions(completion, total, flag):
    result = score(INTERACTS, completion)
    assert result.total == pytest.approx(total)
    if flag:
        assert result.components[flag] == 1.0
        assert result.parsed_answer is None and not result.format_ok


def test_hedging_never_pays_a_half():
    for completion in ("yes and no", "Yes or no, it is unclear.", "No... yes?"):
        assert score(INTERACTS, completion).total == 0.0
        assert score(APART, completion).total == 0.0


def test_format_weight_is_configurable():
    reward = PpiReward(RewardConfig(format_weight=0.0))
    assert reward.score(INTERACTS, "They interact: yes.").total == 1.0
    with pytest.raises(ValueError, match="format_weight"):
        RewardConfig(format_weight=0.2)


def test_parse_verdict():
    assert parse_verdict("Yes!") is True
    assert parse_verdict("no.") is False
    assert parse_verdict("yes, no") == "ambiguous"


@pytest.mark.parametrize("meta", [{}, {"interacts": "maybe"}, {"interacts": 2}])
def test_record_without_a_boolean_label_is_a_data_error(meta):
    with pytest.raises(RewardInputError):
        score(make_record("ppi", **meta), "yes")


def test_integer_labels_are_accepted():
    assert score(make_record("ppi", interacts=1), "Yes").total == 1.0
    assert score(make_record("ppi", interacts=0), "No").total == 1.0
