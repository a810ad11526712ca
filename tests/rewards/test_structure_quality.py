"""Structure quality reward: alignment 0.4, numeric 0.3 (sigma 10), category 0.3, format 0.1 of the total."""

from __future__ import annotations

import math

import pytest

from protein_llm_nemo.rewards import RewardInputError, score
from protein_llm_nemo.rewards.structure_quality import StructureAnswer, StructureRewardConfig, aligned

from .conftest import INJECTION, OVERLONG, SEQUENCE, make_record

HIGH = make_record("structure_quality", plddt=85.0, category="high")
MEDIUM = make_record("structure_quality", plddt=75.0, category="medium")
LOW = make_record("structure_quality", plddt=30.0, category="low")


def numeric(error: float) -> float:
    return math.exp(-(error**2) / 200)


def expected(alignment: float, number: float, category: float, format_ok: bool) -> float:
    return 0.9 * (0.4 * alignment + 0.3 * number + 0.3 * category) + (0.1 if format_ok else 0.0)


@pytest.mark.parametrize(
    ("record", "completion", "total"),
    [
        (HIGH, "Mean pLDDT 85.0: high confidence.", 1.0),  # the reference answer's shape
        (HIGH, "Mean pLDDT 75.0: high confidence.", expected(1, numeric(10), 1, True)),  # 0.8938
        (HIGH, "Mean pLDDT 85: medium confidence.", expected(0, 1, 0, True)),  # 0.37
        (MEDIUM, "Mean pLDDT 75: high confidence.", expected(1, 1, 0, True)),  # aligned (> 70), wrong label
        (MEDIUM, "Mean pLDDT 75: medium confidence.", 1.0),
        (MEDIUM, "Mean pLDDT 75: low confidence.", expected(0, 1, 0, True)),
        (LOW, "Mean pLDDT 30: low confidence, largely disordered.", 1.0),
        (LOW, "Mean pLDDT 45, low.", expected(1, numeric(15), 1, True)),
        (
            HIGH,
            "A well-folded, globular protein.",
            expected(1, 0, 0, False),
        ),  # a claim without label or number
        (HIGH, "pLDDT 85%, very high.", 1.0),
    ],
)
def test_hand_computed_scores(record, completion, total):
    assert score(record, completion).total == pytest.approx(total)


def test_components_are_reported_separately():
    result = score(HIGH, "Mean pLDDT 75.0: high confidence.")
    assert result.components["alignment"] == 1.0
    assert result.components["numeric"] == pytest.approx(numeric(10))
    assert result.components["category"] == 1.0
    assert result.components["format"] == 1.0
    assert result.components["abs_error"] == pytest.approx(10.0)
    assert result.parsed_answer == StructureAnswer(75.0, "high", "confident")


@pytest.mark.parametrize(
    ("record", "completion", "total", "flag"),
    [
        # "unstructured" contains "structured": whole words only.
        (HIGH, "pLDDT 85, high confidence, structured.", 1.0, None),
        (HIGH, "pLDDT 85, high confidence, unstructured.", expected(0, 1, 1, True), "claim_ambiguous"),
        (LOW, "pLDDT 30, low confidence, unstructured.", 1.0, None),
        (LOW, "pLDDT 30, low confidence, structured.", expected(0, 1, 1, True), "claim_ambiguous"),
        (LOW, "pLDDT 30, disordered.", expected(1, 1, 0, False), "category_none"),  # "ordered" is not in it
        (HIGH, "pLDDT 85, not high.", expected(0, 1, 0, False), "category_negated"),
        (HIGH, "pLDDT 85, non-globular.", expected(0, 1, 0, False), "claim_negated"),
        (HIGH, "pLDDT 85, highly disordered.", expected(0, 1, 0, False), "category_none"),  # "highly" != high
        # Every category, or the instruction's thresholds echoed: nothing readable.
        (HIGH, "high, medium or low", 0.0, "category_ambiguous"),
        (HIGH, "high > 80, medium 50-80, low < 50", 0.0, "ambiguous_number"),
        (HIGH, "medium-high", 0.0, "claim_ambiguous"),
        # A hedged number scores no numeric part; the rest still counts.
        (HIGH, "Between 80 and 90: high.", expected(1, 0, 1, False), "ambiguous_number"),
        (HIGH, "pLDDT 850, high.", expected(1, 0, 1, False), "number_out_of_range"),
        (HIGH, "pLDDT 0.85, high.", expected(1, numeric(84.15), 1, True), None),  # fractions are not rescaled
        (HIGH, "pLDDT 85 (85.0), high.", 1.0, None),  # one value restated
        (HIGH, "", 0.0, "no_answer"),
        (HIGH, SEQUENCE, 0.0, "no_answer"),
        (HIGH, f"{SEQUENCE} pLDDT 85, high.", 1.0, None),
        # The injection's "1" is read as a pLDDT of 1: worth exp(-84^2 / 200) ~ 5e-16 of the numeric part.
        (HIGH, INJECTION, expected(0, numeric(84), 0, False), "category_none"),
        (HIGH, "<think>low</think>pLDDT 85, high.", 1.0, None),
        (HIGH, OVERLONG, 0.0, "overlong"),
    ],
)
def test_adversarial_completions(record, completion, total, flag):
    result = score(record, completion)
    assert result.total == pytest.approx(total)
    if flag:
        assert result.components[flag] == 1.0


def test_format_ok_needs_number_and_category():
    assert score(HIGH, "pLDDT 85, high.").format_ok
    assert not score(HIGH, "high confidence").format_ok
    assert not score(HIGH, "pLDDT 85").format_ok


@pytest.mark.parametrize(
    ("claim", "plddt", "agrees"),
    [
        ("confident", 70.1, True),
        ("confident", 70.0, False),
        ("moderate", 50.0, True),
        ("moderate", 80.0, True),
        ("moderate", 80.1, False),
        ("uncertain", 49.9, True),
        ("uncertain", 50.0, False),
    ],
)
def test_alignment_bands(claim, plddt, agrees):
    assert aligned(claim, plddt) is agrees


def test_category_falls_back_to_the_converter_thresholds():
    record = make_record("structure_quality", plddt=50.0)  # no meta category: 50 is medium, as in the records
    assert score(record, "pLDDT 50, medium.").total == 1.0


def test_weights_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        StructureRewardConfig(alignment_weight=0.5)


@pytest.mark.parametrize("meta", [{}, {"plddt": 120.0}, {"plddt": "high"}])
def test_record_without_a_usable_plddt_is_a_data_error(meta):
    with pytest.raises(RewardInputError):
        score(make_record("structure_quality", **meta), "pLDDT 85, high")
