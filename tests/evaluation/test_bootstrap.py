"""Percentile bootstrap over records: determinism, coverage on a known distribution, pairs kept together."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protein_llm_nemo.evaluation.metrics import bootstrap as bootstrap_module
from protein_llm_nemo.evaluation.metrics.bootstrap import (
    Metric,
    bootstrap_ci,
    mean_statistic,
    metric_from_values,
)


def _pearson_of_columns(samples: np.ndarray) -> np.ndarray:
    x, y = samples[..., 0], samples[..., 1]
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (dx * dy).sum(-1) / denominator, np.nan)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    values = np.random.default_rng(1).normal(size=200)
    first = bootstrap_ci(values, mean_statistic, n_resamples=500, seed=7)
    assert bootstrap_ci(values, mean_statistic, n_resamples=500, seed=7) == first
    assert bootstrap_ci(values, mean_statistic, n_resamples=500, seed=8) != first


def test_interval_contains_the_point_estimate_and_is_ordered() -> None:
    values = np.random.default_rng(2).exponential(size=300)
    low, high = bootstrap_ci(values, mean_statistic)
    assert low < values.mean() < high


def test_width_shrinks_with_more_records() -> None:
    rng = np.random.default_rng(3)
    small = bootstrap_ci(rng.normal(size=50), mean_statistic)
    large = bootstrap_ci(rng.normal(size=5000), mean_statistic)
    # the standard error falls as 1/sqrt(n): 10x here
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5


def test_width_matches_the_normal_theory_interval_of_a_mean() -> None:
    sigma, n = 2.0, 2000
    values = np.random.default_rng(4).normal(3.0, sigma, size=n)
    low, high = bootstrap_ci(values, mean_statistic, n_resamples=2000)
    expected_width = 2 * 1.959964 * values.std() / math.sqrt(n)
    assert (high - low) == pytest.approx(expected_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.02)


def test_covers_the_true_mean_about_level_of_the_time() -> None:
    rng = np.random.default_rng(5)
    true_mean, repeats = 0.3, 200
    covered = 0
    for repeat in range(repeats):
        sample = (rng.random(100) < true_mean).astype(float)  # Bernoulli: an accuracy
        low, high = bootstrap_ci(sample, mean_statistic, n_resamples=1000, seed=repeat)
        covered += low <= true_mean <= high
    # 95% nominal; the percentile bootstrap under-covers slightly at n=100 (binomial sd ~1.5%)
    assert 0.88 <= covered / repeats <= 0.99


def test_level_widens_the_interval() -> None:
    values = np.random.default_rng(6).normal(size=300)
    narrow = bootstrap_ci(values, mean_statistic, level=0.5)
    wide = bootstrap_ci(values, mean_statistic, level=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_tuples_are_resampled_as_pairs() -> None:
    x = np.random.default_rng(7).normal(size=100)
    records = list(zip(x, 2 * x + 1, strict=True))  # perfectly correlated pairs
    low, high = bootstrap_ci(records, _pearson_of_columns)
    # resampling the two columns independently would scatter r around 0
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_undefined_resamples_are_left_out() -> None:
    # two records: a resample drawing one record twice has no correlation (NaN), the others r = 1
    assert bootstrap_ci([(0.0, 0.0), (1.0, 1.0)], _pearson_of_columns) == pytest.approx((1.0, 1.0))
    low, high = bootstrap_ci([(0.0, 0.0)], _pearson_of_columns)
    assert math.isnan(low) and math.isnan(high)


def test_memory_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(8).normal(size=100)
    whole = bootstrap_ci(values, mean_statistic, n_resamples=300, seed=3)
    monkeypatch.setattr(bootstrap_module, "_MAX_VALUES_PER_CHUNK", 700)  # 7 resamples per chunk
    assert bootstrap_ci(values, mean_statistic, n_resamples=300, seed=3) == whole


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, "empty"),
        ([1.0, math.nan], {}, "NaN"),
        ([1.0, 2.0], {"level": 1.0}, "level"),
        ([1.0, 2.0], {"n_resamples": 0}, "n_resamples"),
        (np.zeros((2, 2, 2)), {}, "shape"),
    ],
)
def test_bad_input_is_refused(values: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values, mean_statistic, **kwargs)


def test_metric_from_values_is_the_mean_with_its_interval() -> None:
    metric = metric_from_values([0.0, 1.0, 1.0, 1.0])
    assert metric.value == 0.75 and metric.n == 4 and metric.note == ""
    assert 0.0 <= metric.low <= 0.75 <= metric.high <= 1.0
    constant = metric_from_values([2.0] * 10)
    assert (constant.low, constant.value, constant.high) == (2.0, 2.0, 2.0)


def test_undefined_metric_carries_its_reason() -> None:
    metric = Metric.undefined(3, "constant predictions")
    assert math.isnan(metric.value) and math.isnan(metric.low) and math.isnan(metric.high)
    assert (metric.n, metric.note) == (3, "constant predictions")
