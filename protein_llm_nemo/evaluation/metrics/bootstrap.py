"""Percentile bootstrap confidence intervals over records, and the `Metric` every metric function returns.

A resample draws n records with replacement; a record keeps all its columns together (prediction and
reference of one answer), so correlations and confusion matrices are resampled as pairs. Statistics are
vectorised: they receive every resample of a chunk at once, shape (resamples, n) for one value per record
or (resamples, n, k) for k values per record, and return one value per resample.

A resample whose statistic is undefined (NaN: e.g. a Pearson correlation of a resample that drew one record
n times) is left out of the percentiles; when every resample is undefined the interval is (NaN, NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Metric", "Statistic", "bootstrap_ci", "mean_statistic", "metric_from_values"]

# Maps resampled records, (resamples, n) or (resamples, n, k), to one value per resample.
Statistic = Callable[[NDArray[np.float64]], NDArray[np.float64]]

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
# Upper bound on resampled values held in memory at once (float64: 8 bytes each, so ~32 MB).
_MAX_VALUES_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class Metric:
    """A point estimate with its percentile bootstrap interval over the `n` records it was computed on.

    `note` says why a value is NaN or follows a convention (e.g. "constant predictions: Pearson undefined");
    it is empty for an ordinary value.
    """

    value: float
    low: float
    high: float
    n: int
    note: str = ""

    @classmethod
    def undefined(cls, n: int, reason: str) -> Metric:
        return cls(math.nan, math.nan, math.nan, n, reason)


def mean_statistic(samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """The mean of each resample of one-value-per-record data."""
    return samples.mean(axis=-1)


def _as_records(values: ArrayLike) -> NDArray[np.float64]:
    records = np.asarray(values, dtype=np.float64)
    if records.ndim not in (1, 2):
        raise ValueError(
            f"records must be one value or one tuple per record; got an array of shape {records.shape}"
        )
    if records.shape[0] == 0:
        raise ValueError("cannot bootstrap an empty list of records")
    if np.isnan(records).any():
        raise ValueError("records contain NaN: drop or mark unparsed records before bootstrapping")
    return records


def bootstrap_ci(
    values: ArrayLike | Sequence[tuple[float, ...]],
    statistic: Statistic,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over records.

    `values` holds one number per record (shape (n,)) or one tuple per record (shape (n, k)). The same
    `seed` gives the same interval. Returns (low, high): the (1 - level) / 2 and (1 + level) / 2 quantiles
    of the statistic over the resamples that are defined.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    records = _as_records(values)
    n = records.shape[0]
    per_record = 1 if records.ndim == 1 else records.shape[1]
    chunk = max(1, _MAX_VALUES_PER_CHUNK // (n * per_record))
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        estimates[start:stop] = statistic(records[indices])
    defined = estimates[~np.isnan(estimates)]
    if defined.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return float(low), float(high)


def metric_from_values(
    values: ArrayLike,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Metric:
    """The mean of per-record values (scores, 0/1 outcomes, lengths) with its bootstrap interval."""
    records = _as_records(values)
    if records.ndim != 1:
        raise ValueError("metric_from_values takes one value per record")
    low, high = bootstrap_ci(records, mean_statistic, n_resamples, seed, level)
    return Metric(float(records.mean()), low, high, int(records.shape[0]))
