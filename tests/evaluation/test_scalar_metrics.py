"""Property metrics: stability regression, PPI and multiple-choice classification, structure pLDDT; every
value checked against a hand computation or the field's library."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import matthews_corrcoef

from protein_llm_nemo.evaluation.metrics.answers import (
    format_compliance,
    mean_answer_words,
    parse_failure_rate,
)
from protein_llm_nemo.evaluation.metrics.classification import (
    MCC_UNDEFINED_NOTE,
    mcc_from_confusion,
    multiple_choice_metrics,
    ppi_metrics,
)
from protein_llm_nemo.evaluation.metrics.regression import pearson_rows, regression_metrics, spearman_rows
from protein_llm_nemo.evaluation.metrics.structure import structure_metrics


def _answers(n: int) -> list[str]:
    return ["an answer"] * n


# --- answers (all tasks) ---


def test_format_compliance_parse_failures_and_answer_length() -> None:
    parsed = [1.0, None, 0.0, None, 2.5]
    assert format_compliance(parsed).value == pytest.approx(0.6)
    failures = parse_failure_rate(parsed)
    assert failures.value == pytest.approx(0.4) and failures.n == 5
    assert mean_answer_words(["one", "two words", "", "  three   spaced words "]).value == pytest.approx(
        6 / 4
    )


# --- stability (regression) ---


def test_regression_of_known_values() -> None:
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 6.0], _answers(4))
    # errors 0, -1, 1, -2
    assert metrics.mae.value == pytest.approx(1.0)
    assert metrics.rmse.value == pytest.approx(math.sqrt(6 / 4))
    # centred x: -1.5 -0.5 0.5 1.5; centred y: -2 0 -1 3 -> 7 / sqrt(5 * 14)
    assert metrics.pearson.value == pytest.approx(7 / math.sqrt(70))
    # rank differences 0 1 1 0 -> 1 - 6 * 2 / (4 * 15)
    assert metrics.spearman.value == pytest.approx(0.8)
    assert metrics.format_compliance.value == 1.0 and metrics.parse_failure_rate.value == 0.0
    for metric in (metrics.mae, metrics.rmse, metrics.pearson, metrics.spearman):
        assert metric.low <= metric.value <= metric.high and metric.n == 4


def test_regression_matches_scipy_on_random_data() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=300)
    guess = np.round(truth + rng.normal(size=300), 1)  # rounding makes ties for Spearman
    metrics = regression_metrics(guess.tolist(), truth.tolist(), _answers(300))
    assert metrics.pearson.value == pytest.approx(stats.pearsonr(guess, truth).statistic)
    assert metrics.spearman.value == pytest.approx(stats.spearmanr(guess, truth).statistic)
    assert metrics.rmse.value == pytest.approx(float(np.sqrt(np.mean((guess - truth) ** 2))))


def test_vectorised_correlations_match_scipy_row_by_row() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(6, 20)).astype(float)  # many ties
    y = x + rng.normal(size=(6, 20))
    for row, (r, rho) in enumerate(zip(pearson_rows(x, y), spearman_rows(x, y), strict=True)):
        assert r == pytest.approx(stats.pearsonr(x[row], y[row]).statistic)
        assert rho == pytest.approx(stats.spearmanr(x[row], y[row]).statistic)
    assert np.isnan(pearson_rows(np.ones((1, 5)), np.arange(5.0)[None]))[0]


def test_unparsed_answers_are_reported_apart_from_the_errors() -> None:
    metrics = regression_metrics([1.0, None, 3.0, None, 5.0], [2.0, 9.0, 3.0, 9.0, 4.0], _answers(5))
    assert metrics.mae.value == pytest.approx(2 / 3) and metrics.mae.n == 3
    assert metrics.parse_failure_rate.value == pytest.approx(0.4) and metrics.parse_failure_rate.n == 5
    assert metrics.format_compliance.value == pytest.approx(0.6)


def test_constant_predictions_give_nan_correlations_with_a_reason() -> None:
    metrics = regression_metrics([1.0, 1.0, 1.0], [0.0, 1.0, 2.0], _answers(3))
    assert math.isnan(metrics.pearson.value) and "same value" in metrics.pearson.note
    assert math.isnan(metrics.spearman.value) and metrics.spearman.note
    assert metrics.mae.value == pytest.approx(2 / 3)  # errors stay defined


def test_too_few_or_no_parsed_answers() -> None:
    one = regression_metrics([1.0, None], [0.0, 1.0], _answers(2))
    assert math.isnan(one.pearson.value) and "at least 2" in one.pearson.note
    assert one.mae.value == 1.0
    none = regression_metrics([None, None], [0.0, 1.0], _answers(2))
    assert math.isnan(none.mae.value) and math.isnan(none.rmse.value) and none.mae.n == 0
    assert none.format_compliance.value == 0.0 and none.parse_failure_rate.value == 1.0


@pytest.mark.parametrize(
    ("predicted", "reference", "completions", "message"),
    [
        ([1.0], [1.0, 2.0], _answers(2), "one entry per record"),
        ([], [], [], "no records"),
        ([math.nan, 1.0], [1.0, 2.0], _answers(2), "pass None"),
        ([1.0, 1.0], [math.inf, 2.0], _answers(2), "reference 0"),
        ([1.0, 1.0], [None, 2.0], _answers(2), "reference 0"),
    ],
)
def test_regression_refuses_bad_input(
    predicted: list, reference: list, completions: list, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        regression_metrics(predicted, reference, completions)


# --- PPI and multiple choice (classification) ---


def test_ppi_accuracy_and_binary_mcc_of_known_answers() -> None:
    predicted = [True, True, False, False, True]
    reference = [True, False, False, True, True]
    metrics = ppi_metrics(predicted, reference, _answers(5))
    assert metrics.accuracy.value == pytest.approx(3 / 5)
    # TP 2, FP 1, TN 1, FN 1: (2 * 1 - 1 * 1) / sqrt(3 * 3 * 2 * 2)
    assert metrics.mcc.value == pytest.approx(1 / 6)
    assert metrics.mcc.value == pytest.approx(matthews_corrcoef(reference, predicted))
    assert metrics.mcc.low <= metrics.mcc.value <= metrics.mcc.high


def test_unparsed_ppi_answers_are_wrong_and_their_own_class() -> None:
    metrics = ppi_metrics([True, None, False, False], [True, True, False, True], _answers(4))
    assert metrics.accuracy.value == 0.5
    assert metrics.parse_failure_rate.value == 0.25
    # classes yes / no / no answer; c = 2, s = 4, true counts (3, 1, 0), predicted counts (1, 2, 1)
    # (2 * 4 - (3 + 2 + 0)) / sqrt((16 - 6) * (16 - 10))
    assert metrics.mcc.value == pytest.approx(3 / math.sqrt(60))


def test_a_model_that_never_answers_scores_zero_not_minus_one() -> None:
    metrics = ppi_metrics([None] * 4, [True, False, True, False], _answers(4))
    assert metrics.accuracy.value == 0.0
    assert metrics.mcc.value == 0.0 and metrics.mcc.note == MCC_UNDEFINED_NOTE


def test_constant_predictions_report_zero_mcc_with_a_note() -> None:
    metrics = ppi_metrics([True] * 4, [True, False, True, False], _answers(4))
    assert metrics.mcc.value == 0.0 and metrics.mcc.note == MCC_UNDEFINED_NOTE
    assert metrics.accuracy.value == 0.5


def test_multiple_choice_multiclass_mcc_of_known_answers() -> None:
    predicted = [1, 2, 3, 1, 2, 3]
    reference = [1, 2, 3, 2, 3, 1]
    metrics = multiple_choice_metrics(predicted, reference, _answers(6))
    # c = 3, s = 6, every class twice in each: (3 * 6 - 12) / sqrt((36 - 12) * (36 - 12))
    assert metrics.mcc.value == pytest.approx(0.25)
    assert metrics.mcc.value == pytest.approx(matthews_corrcoef(reference, predicted))
    assert metrics.accuracy.value == 0.5


def test_multiple_choice_with_unparsed_answers_matches_sklearn_with_a_no_answer_label() -> None:
    rng = np.random.default_rng(2)
    reference = rng.integers(1, 5, size=200).tolist()
    predicted = [truth if rng.random() < 0.5 else int(rng.integers(1, 5)) for truth in reference]
    predicted = [None if rng.random() < 0.1 else guess for guess in predicted]
    metrics = multiple_choice_metrics(predicted, reference, _answers(200))
    labelled = [0 if guess is None else guess for guess in predicted]
    assert metrics.mcc.value == pytest.approx(matthews_corrcoef(reference, labelled))
    correct = sum(guess == truth for guess, truth in zip(predicted, reference, strict=True))
    assert metrics.accuracy.value == pytest.approx(correct / 200)
    assert metrics.mcc.low < metrics.mcc.value < metrics.mcc.high


def test_vectorised_mcc_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, size=100)
    guess = np.where(rng.random(100) < 0.6, truth, rng.integers(0, 4, size=100))
    confusion = np.zeros((4, 4), dtype=np.int64)
    np.add.at(confusion, (truth, guess), 1)
    assert mcc_from_confusion(confusion) == pytest.approx(matthews_corrcoef(truth, guess))


def test_classification_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="type"):
        multiple_choice_metrics(["B", "A"], [2, 1], _answers(2))  # letters against option numbers
    with pytest.raises(ValueError, match="True or False"):
        ppi_metrics(["yes", True], [True, False], _answers(2))
    with pytest.raises(ValueError, match="one entry per record"):
        ppi_metrics([True], [True, False], _answers(2))
    with pytest.raises(ValueError, match="reference 0 is None"):
        multiple_choice_metrics([1, 2], [None, 2], _answers(2))


def test_numpy_labels_are_the_same_class_as_python_labels() -> None:
    metrics = multiple_choice_metrics([np.int64(1), np.int64(2)], [1, 2], _answers(2))
    assert metrics.accuracy.value == 1.0


# --- structure (pLDDT) ---


def test_structure_of_known_answers() -> None:
    metrics = structure_metrics([85.0, 60.0, None, 40.0], [90.0, 45.0, 70.0, 30.0], _answers(4))
    assert metrics.plddt_mae.value == pytest.approx((5 + 15 + 10) / 3) and metrics.plddt_mae.n == 3
    # categories high/medium/-/low against high/low/medium/low
    assert metrics.category_accuracy.value == 0.5 and metrics.category_accuracy.n == 4
    assert metrics.format_compliance.value == 0.75 and metrics.parse_failure_rate.value == 0.25


def test_stated_categories_take_precedence_over_the_stated_plddt() -> None:
    metrics = structure_metrics(
        [85.0, 60.0, None, 40.0],
        [90.0, 45.0, 70.0, 30.0],
        _answers(4),
        predicted_category=["High", "low", "medium", None],
    )
    assert metrics.category_accuracy.value == 1.0
    assert metrics.format_compliance.value == 0.75  # compliance is about the pLDDT


def test_category_boundaries_follow_the_structure_records() -> None:
    # high > 80, medium 50-80, low < 50
    metrics = structure_metrics([81.0, 79.0, 51.0, 49.0], [80.5, 80.0, 50.0, 49.9], _answers(4))
    assert metrics.category_accuracy.value == 1.0


def test_structure_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="0-100"):
        structure_metrics([50.0], [120.0], _answers(1))
    with pytest.raises(ValueError, match="not one of"):
        structure_metrics([50.0], [50.0], _answers(1), predicted_category=["confident"])
    with pytest.raises(ValueError, match="pass None"):
        structure_metrics([math.nan], [50.0], _answers(1))
    with pytest.raises(ValueError, match="one entry per record"):
        structure_metrics([50.0], [50.0], _answers(1), predicted_category=[None, None])
    nothing = structure_metrics([None], [50.0], _answers(1))
    assert math.isnan(nothing.plddt_mae.value) and nothing.plddt_mae.note
