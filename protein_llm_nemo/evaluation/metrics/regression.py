"""Numeric answers (stability: ddG in kcal/mol): MAE, RMSE, Pearson and Spearman, with bootstrap intervals.

Error and correlation metrics are computed over the records whose answer parsed (their `n`); unparsed
answers are reported apart as the parse-failure rate over all records, rather than imputed with a value that
would make the error depend on an arbitrary choice. A correlation is NaN, with the reason in `note`, when it
is undefined: fewer than two parsed answers, or constant predictions or references (never reported as 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protein_llm_nemo.evaluation.metrics.answers import (
    check_paired,
    format_compliance,
    mean_answer_words,
    parse_failure_rate,
)
from protein_llm_nemo.evaluation.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    Metric,
    bootstrap_ci,
    metric_from_values,
)
from protein_llm_nemo.optional import optional_import

__all__ = ["RegressionMetrics", "pearson_rows", "regression_metrics", "spearman_rows"]


@dataclass(frozen=True)
class RegressionMetrics:
    mae: Metric
    rmse: Metric
    pearson: Metric
    spearman: Metric
    parse_failure_rate: Metric  # over all records
    format_compliance: Metric  # over all records
    mean_answer_words: Metric  # over all completions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pearson_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pearson correlation along the last axis, NaN where either row is constant."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((dx * dx).sum(axis=-1) * (dy * dy).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (dx * dy).sum(axis=-1) / denominator
    # rounding can push |r| a hair above 1
    return np.where(denominator > 0, np.clip(r, -1.0, 1.0), np.nan)


def spearman_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman correlation along the last axis: Pearson of average ranks (ties share their mean rank)."""
    with optional_import("stability metrics (Spearman)", "train"):
        from scipy.stats import rankdata
    return pearson_rows(rankdata(x, axis=-1), rankdata(y, axis=-1))


def _pairs(predicted: Sequence[float | None], reference: Sequence[float]) -> NDArray[np.float64]:
    """(n_parsed, 2) array of (prediction, reference) for the parsed records, with input checks."""
    pairs = []
    for index, (prediction, truth) in enumerate(zip(predicted, reference, strict=True)):
        if truth is None or not math.isfinite(truth):
            raise ValueError(f"regression metrics: reference {index} is not a finite number: {truth!r}")
        if prediction is None:
            continue
        if not math.isfinite(prediction):
            raise ValueError(
                f"regression metrics: prediction {index} is {prediction!r}; pass None for an unparsable answer"
            )
        pairs.append((float(prediction), float(truth)))
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def _correlation_undefined(pairs: NDArray[np.float64]) -> str:
    """Why a correlation of these pairs is undefined, or "" when it is defined."""
    if pairs.shape[0] < 2:
        return f"undefined: {pairs.shape[0]} parsed answer(s), a correlation needs at least 2"
    if np.ptp(pairs[:, 0]) == 0:
        return "undefined: every parsed prediction is the same value"
    if np.ptp(pairs[:, 1]) == 0:
        return "undefined: every reference is the same value"
    return ""


def _correlation(pairs: NDArray[np.float64], kind: str, resampling: dict[str, Any]) -> Metric:
    n = int(pairs.shape[0])
    reason = _correlation_undefined(pairs)
    if reason:
        return Metric.undefined(n, reason)
    with optional_import("stability metrics (correlations)", "train"):
        from scipy import stats
    library = stats.pearsonr if kind == "pearson" else stats.spearmanr
    rows = pearson_rows if kind == "pearson" else spearman_rows
    value = float(library(pairs[:, 0], pairs[:, 1]).statistic)
    low, high = bootstrap_ci(pairs, lambda s: rows(s[..., 0], s[..., 1]), **resampling)
    return Metric(value, low, high, n)


def regression_metrics(
    predicted: Sequence[float | None],
    reference: Sequence[float],
    completions: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> RegressionMetrics:
    """Metrics of parsed numeric answers (None: unparsable) against finite references; `completions` are
    the raw answers, for their length."""
    check_paired("regression metrics", predicted=predicted, reference=reference, completions=completions)
    resampling = {"n_resamples": n_resamples, "seed": seed, "level": level}
    pairs = _pairs(predicted, reference)
    compliance = format_compliance(predicted, **resampling)
    if pairs.shape[0] == 0:
        none_parsed = Metric.undefined(0, "undefined: no answer parsed")
        mae = rmse = pearson = spearman = none_parsed
    else:
        errors = pairs[:, 0] - pairs[:, 1]
        mae = metric_from_values(np.abs(errors), **resampling)
        squared = errors * errors
        rmse_low, rmse_high = bootstrap_ci(squared, lambda s: np.sqrt(s.mean(axis=-1)), **resampling)
        rmse = Metric(float(np.sqrt(squared.mean())), rmse_low, rmse_high, int(pairs.shape[0]))
        pearson = _correlation(pairs, "pearson", resampling)
        spearman = _correlation(pairs, "spearman", resampling)
    return RegressionMetrics(
        mae=mae,
        rmse=rmse,
        pearson=pearson,
        spearman=spearman,
        parse_failure_rate=parse_failure_rate(predicted, **resampling),
        format_compliance=compliance,
        mean_answer_words=mean_answer_words(completions, **resampling),
    )
