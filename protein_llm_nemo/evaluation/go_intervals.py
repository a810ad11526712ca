"""Bootstrap intervals of F-max and S-min over proteins, computed the way CAFA-evaluator computes the values.

cafaeval gives the point values (`metrics.go.evaluate_go`) but no interval, and running it once per
resample would cost a thousand ontology parses. Its metrics are sums over proteins at each threshold, so a
resample of proteins only needs each protein's per-threshold counts, computed once here:

- per protein and threshold tau (cafaeval's grid, ``np.arange(step, 1, step)``; a term is predicted when
  its max-propagated score is >= tau; roots left out): precision (0 without a prediction), whether it has
  a prediction, recall, false positives and false negatives, and the same weighted by information
  accretion;
- per resample (CAFA normalisation): precision = sum of precisions / proteins with a prediction, recall =
  sum of recalls / proteins, F = 2PR / (P + R), remaining uncertainty = sum FN / proteins, misinformation =
  sum FP / proteins, S = sqrt(ru^2 + mi^2); F-max and S-min over the thresholds where some protein has a
  prediction (cafaeval drops the others).

The statistics on the full sample reproduce cafaeval's values (tested); `go_intervals` reports any
difference beyond 1e-6 in the metric's note rather than hiding it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protein_llm_nemo.evaluation.metrics.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap_ci
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure, resolve_namespace

__all__ = ["GoIntervals", "go_intervals", "protein_rows"]

# per-protein columns, each one value per threshold
COLUMNS = ("precision", "has", "recall", "fp", "fn", "precision_w", "has_w", "recall_w", "fp_w", "fn_w")


@dataclass(frozen=True)
class GoIntervals:
    """(value, low, high) of each metric as recomputed here; None where it does not apply (no IA)."""

    proteins: int
    f_max: tuple[float, float, float]
    s_min_unweighted: tuple[float, float, float]
    weighted_f_max: tuple[float, float, float] | None
    s_min: tuple[float, float, float] | None


def _thresholds(step: float) -> NDArray[np.float64]:
    return np.arange(step, 1, step)  # exactly cafaeval's grid (its float noise included)


def _scores(term_scores: Mapping[str, float], closure: TermClosure, namespace: str, step: float) -> dict:
    """Max-propagated scores of the namespace's terms (scores below the lowest threshold never count)."""
    out: dict[str, float] = {}
    for term, score in term_scores.items():
        if score < step or closure.namespace_of(term) != namespace:
            continue
        for ancestor in closure.closure(term):
            if score > out.get(ancestor, -1.0):
                out[ancestor] = score
    return out


def protein_rows(
    predictions: Mapping[str, Mapping[str, float]],
    ground_truth: Mapping[str, Iterable[str]],
    closure: TermClosure,
    namespace: str,
    information_accretion: Mapping[str, float] | None = None,
    exclude_roots: bool = True,
    step: float = 0.01,
) -> NDArray[np.float64]:
    """[proteins, len(COLUMNS), thresholds]: one row per protein with ground truth in `namespace`."""
    namespace = resolve_namespace(namespace)
    taus = _thresholds(step)
    ia = information_accretion or {}
    rows = []
    for protein in sorted(ground_truth):
        truth = closure.propagate(ground_truth[protein], namespace)
        if not truth:
            continue  # no term in this namespace: the protein is not scored here
        if exclude_roots:
            truth = {t for t in truth if not closure.is_orphan(t)}
        scores = _scores(predictions.get(protein, {}), closure, namespace, step)
        if exclude_roots:
            scores = {t: s for t, s in scores.items() if not closure.is_orphan(t)}
        terms = sorted(scores)
        values = np.array([scores[t] for t in terms], dtype=np.float64)
        hit = np.array([t in truth for t in terms], dtype=bool)
        weight = np.array([ia.get(t, 0.0) for t in terms], dtype=np.float64)
        predicted = values[None, :] >= taus[:, None]  # [thresholds, terms]
        columns = []
        for w, truth_size in ((np.ones_like(weight), float(len(truth))),
                              (weight, float(sum(ia.get(t, 0.0) for t in truth)))):  # fmt: skip
            n_pred = (predicted * w).sum(axis=1)
            tp = (predicted * (w * hit)).sum(axis=1)
            has = n_pred > 0
            precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=has)
            recall = tp / truth_size if truth_size > 0 else np.zeros_like(tp)
            columns += [precision, has.astype(np.float64), recall, n_pred - tp, truth_size - tp]
        rows.append(np.stack(columns))
    if not rows:
        return np.zeros((0, len(COLUMNS), len(taus)))
    return np.stack(rows)


def _column(samples: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    return samples[..., COLUMNS.index(name), :]


def _f_max(weighted: bool):
    suffix = "_w" if weighted else ""

    def statistic(samples: NDArray[np.float64]) -> NDArray[np.float64]:
        n = samples.shape[-3]
        covered = _column(samples, "has").sum(axis=-2)  # proteins with a prediction (unweighted)
        with_prediction = _column(samples, "has" + suffix).sum(axis=-2)
        precision = np.divide(
            _column(samples, "precision" + suffix).sum(axis=-2),
            with_prediction,
            out=np.zeros(with_prediction.shape),
            where=with_prediction > 0,
        )
        recall = _column(samples, "recall" + suffix).sum(axis=-2) / n
        total = precision + recall
        f = np.divide(2 * precision * recall, total, out=np.zeros(total.shape), where=total > 0)
        f = np.where(covered > 0, f, -np.inf)
        best = f.max(axis=-1)
        return np.where(np.isfinite(best), best, 0.0)

    return statistic


def _s_min(weighted: bool):
    suffix = "_w" if weighted else ""

    def statistic(samples: NDArray[np.float64]) -> NDArray[np.float64]:
        n = samples.shape[-3]
        covered = _column(samples, "has").sum(axis=-2)
        misinformation = _column(samples, "fp" + suffix).sum(axis=-2) / n
        remaining = _column(samples, "fn" + suffix).sum(axis=-2) / n
        s = np.sqrt(remaining**2 + misinformation**2)
        s = np.where(covered > 0, s, np.inf)
        best = s.min(axis=-1)
        return np.where(np.isfinite(best), best, np.nan)  # nothing predicted at any threshold: undefined

    return statistic


def go_intervals(
    predictions: Mapping[str, Mapping[str, float]],
    ground_truth: Mapping[str, Iterable[str]],
    closure: TermClosure,
    namespace: str,
    information_accretion: Mapping[str, float] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    step: float = 0.01,
) -> GoIntervals:
    """Point values and percentile bootstrap intervals (proteins resampled) of the namespace's F-max,
    unweighted S-min and, with information accretion, weighted F-max and S-min."""
    rows = protein_rows(predictions, ground_truth, closure, namespace, information_accretion, step=step)
    n = rows.shape[0]
    if n == 0:
        raise ValueError(f"no protein with ground truth in {namespace}")
    flat = rows.reshape(n, -1)  # bootstrap_ci resamples records of (n, k) values
    shape = rows.shape[1:]

    def interval(statistic) -> tuple[float, float, float]:
        def on_flat(samples: NDArray[np.float64]) -> NDArray[np.float64]:
            return statistic(samples.reshape(*samples.shape[:-1], *shape))

        value = float(statistic(rows[None])[0])
        low, high = bootstrap_ci(flat, on_flat, n_resamples, seed, level)
        return value, low, high

    weighted = information_accretion is not None
    return GoIntervals(
        proteins=n,
        f_max=interval(_f_max(False)),
        s_min_unweighted=interval(_s_min(False)),
        weighted_f_max=interval(_f_max(True)) if weighted else None,
        s_min=interval(_s_min(True)) if weighted else None,
    )


def agrees(recomputed: float, reference: float | None, tolerance: float = 1e-6) -> bool:
    """Whether a value recomputed here matches cafaeval's (both undefined counts as agreement)."""
    if reference is None or (isinstance(reference, float) and math.isnan(reference)):
        return math.isnan(recomputed)
    return abs(recomputed - reference) <= tolerance
