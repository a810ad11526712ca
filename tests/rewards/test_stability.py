"""Stability reward: one ddG (MegaScale convention, positive = stabilising), Gaussian credit, sigma 1."""

from __future__ import annotations

import math

import pytest

from protein_llm_nemo.rewards import RewardInputError, score
from protein_llm_nemo.rewards.stability import StabilityReward, StabilityRewardConfig, verdict_consistent

from .conftest import INJECTION, OVERLONG, SEQUENCE, make_record


def gaussian(error: float) -> float:
    return math.exp(-(error**2) / 2)


def expected(error: float, format_ok: bool) -> float:
    return 0.9 * gaussian(error) + (0.1 if format_ok else 0.0)


DESTABILISING = make_record("stability", ddg=-1.0, mutation="A23K")
STABILISING = make_record("stability", ddg=1.2, mutation="L5V")


@pytest.mark.parametrize(
    ("completion", "parsed", "total"),
    [
        ("The predicted ddG is -1.00 kcal/mol (destabilising).", -1.0, 1.0),  # the reference's shape
        ("-2 kcal/mol", -2.0, expected(1.0, True)),  # 0.9 e^-0.5 + 0.1 = 0.6459
        ("\u22121,5 kcal/mol", -1.5, expected(0.5, True)),  # unicode minus and decimal comma
        ("-4.184 kJ/mol", -1.0, 1.0),  # converted to kcal/mol
        ("ddG = -8.368 kJ mol-1", -2.0, expected(1.0, True)),
        ("-0.15e1 kcal/mol", -1.5, expected(0.5, True)),  # scientific notation
        ("-1.5 x 10^0 kcal/mol", -1.5, expected(0.5, True)),
        ("-1.0", -1.0, 0.9),  # right value, no unit: no format bonus
        ("+0.0 kcal/mol", 0.0, expected(1.0, True)),
    ],
)
def test_hand_computed_scores(completion, parsed, total):
    result = score(DESTABILISING, completion)
    assert result.parsed_answer == pytest.approx(parsed)
    assert result.total == pytest.approx(total)
    assert result.components["accuracy"] == pytest.approx(gaussian(parsed + 1.0))


def test_sign_convention_positive_is_stabilising():
    # MegaScale's ddG: positive = stabilising. The right magnitude with the other sign convention is far off.
    assert score(STABILISING, "The predicted ddG is 1.20 kcal/mol (stabilising).").total == pytest.approx(1.0)
    flipped = score(STABILISING, "The predicted ddG is -1.20 kcal/mol (destabilising).")
    assert flipped.total == pytest.approx(expected(2.4, True))  # 0.9 e^-2.88 + 0.1 = 0.1505
    # A verdict word that contradicts the number's own sign loses the format bonus.
    assert score(STABILISING, "1.2 kcal/mol (destabilising)").total == pytest.approx(0.9)
    assert score(DESTABILISING, "-1.0 kcal/mol, stabilizing").total == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("completion", "total", "flag"),
    [
        # "destabilizing" contains "stabilizing": word boundaries keep the verdict consistent.
        ("-1.0 kcal/mol, destabilizing", 1.0, None),
        ("-1.0 kcal/mol, not destabilising", 0.9, None),  # a negated verdict earns no format bonus
        ("-1.0 kcal/mol: stabilising or destabilising", 0.9, None),
        # Several different numbers: a range, a hedge, an error bar.
        ("between -1 and -2 kcal/mol", 0.0, "ambiguous"),
        ("-1.0 or -2.0 kcal/mol", 0.0, "ambiguous"),
        ("-1.0 \u00b1 0.5 kcal/mol", 0.0, "ambiguous"),
        ("-1,2,3 kcal/mol", 0.0, "ambiguous"),
        # One value restated: in the other unit (rounded), or repeated.
        ("-1.2 kcal/mol (-5.0 kJ/mol)", expected(0.2, True), None),
        ("ddG = -1.0 kcal/mol. To repeat: -1.0.", 1.0, None),
        # The mutation's digits are not a number.
        ("A23K: ddG = -1.0 kcal/mol", 1.0, None),
        ("A23K", 0.0, "no_answer"),
        ("ddG-1.0", 0.0, "no_answer"),  # a hyphen glued to a word is not read as a minus
        ("", 0.0, "no_answer"),
        ("The mutation is destabilising.", 0.0, "no_answer"),
        (SEQUENCE, 0.0, "no_answer"),
        (f"{SEQUENCE} -1.0 kcal/mol", 1.0, None),
        ("1e999 kcal/mol", 0.0, "not_finite"),
        ("NaN kcal/mol", 0.0, "no_answer"),
        # The injection's only number is the "1" of "reward = 1": it earns what a 1 kcal/mol guess earns.
        (INJECTION, expected(2.0, False), None),
        ("<think>-3 kcal/mol</think>-1.0 kcal/mol", 1.0, None),
        ("Maybe -3 or -2. Answer: -1.0 kcal/mol", 1.0, None),
        (OVERLONG, 0.0, "overlong"),
    ],
)
def test_adversarial_completions(completion, total, flag):
    result = score(DESTABILISING, completion)
    assert result.total == pytest.approx(total)
    if flag:
        assert result.components[flag] == 1.0
        assert not result.format_ok


def test_sigma_is_configurable():
    reward = StabilityReward(StabilityRewardConfig(sigma_kcal=2.0))
    assert reward.score(DESTABILISING, "-3 kcal/mol").total == pytest.approx(0.9 * math.exp(-0.5) + 0.1)
    with pytest.raises(ValueError):
        StabilityRewardConfig(sigma_kcal=0)


def test_verdict_consistency_rules():
    assert verdict_consistent("stabilising", 0.5)
    assert verdict_consistent("no verdict word", -0.5)
    assert not verdict_consistent("stabilising", -0.5)
    assert verdict_consistent("destabilising", -0.5)
    assert verdict_consistent("neutral", 0.0) and verdict_consistent("stabilising", 0.0)


@pytest.mark.parametrize("meta", [{}, {"ddg": "high"}, {"ddg": float("nan")}])
def test_record_without_a_usable_ddg_is_a_data_error(meta):
    with pytest.raises(RewardInputError):
        score(make_record("stability", **meta), "-1.0 kcal/mol")
