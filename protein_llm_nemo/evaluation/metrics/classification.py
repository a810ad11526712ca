"""Categorical answers (PPI yes/no, multiple choice): accuracy and Matthews correlation, with bootstrap
intervals.

Both are computed over all records, so a model cannot gain by answering in a form the parser rejects:

- accuracy counts an unparsable answer (None) as wrong;
- MCC gives unparsable answers a class of their own, "no answer", which no reference has. With every answer
  parsed this is exactly the binary MCC for PPI and the multiclass MCC (Gorodkin's R_K, scikit-learn's
  `matthews_corrcoef`) for multiple choice. (Mapping a PPI non-answer to the opposite label instead would
  turn a model that never answers into a perfectly anti-correlated one, MCC -1.)

MCC is undefined when every prediction, or every reference, is one class; it is then reported as 0, the
limit value that scikit-learn also returns, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
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

__all__ = [
    "ClassificationMetrics",
    "classification_metrics",
    "mcc_from_confusion",
    "multiple_choice_metrics",
    "ppi_metrics",
]

MCC_UNDEFINED_NOTE = (
    "undefined (every prediction or every reference is one class): reported as 0 by convention"
)


@dataclass(frozen=True)
class ClassificationMetrics:
    accuracy: Metric  # over all records; an unparsable answer is wrong
    mcc: Metric  # over all records; an unparsable answer is its own "no answer" class
    parse_failure_rate: Metric
    format_compliance: Metric
    mean_answer_words: Metric

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcc_from_confusion(confusion: NDArray[np.int64]) -> NDArray[np.float64]:
    """Multiclass MCC of confusion matrices [..., true, predicted]; 0 where it is undefined."""
    confusion = confusion.astype(np.float64)
    total = confusion.sum(axis=(-2, -1))
    correct = np.trace(confusion, axis1=-2, axis2=-1)
    true_counts = confusion.sum(axis=-1)
    predicted_counts = confusion.sum(axis=-2)
    covariance = correct * total - (true_counts * predicted_counts).sum(axis=-1)
    spread_predicted = total**2 - (predicted_counts**2).sum(axis=-1)
    spread_true = total**2 - (true_counts**2).sum(axis=-1)
    denominator = np.sqrt(spread_predicted * spread_true)
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = covariance / denominator
    return np.where(denominator > 0, mcc, 0.0)


def _resampled_mcc(n_classes: int) -> Any:
    """Statistic over resampled (true, predicted) class codes: one confusion matrix per resample."""

    def statistic(samples: NDArray[np.float64]) -> NDArray[np.float64]:
        n_rows = samples.shape[0]
        cells = samples[..., 0].astype(np.int64) * n_classes + samples[..., 1].astype(np.int64)
        offsets = np.arange(n_rows, dtype=np.int64)[:, None] * n_classes * n_classes
        counts = np.bincount((cells + offsets).ravel(), minlength=n_rows * n_classes * n_classes)
        return mcc_from_confusion(counts.reshape(n_rows, n_classes, n_classes))

    return statistic


def _plain(labels: Sequence[Any]) -> list[Any]:
    """numpy scalars as Python values, so np.int64(2) and 2 are one class."""
    return [label.item() if isinstance(label, np.generic) else label for label in labels]


def classification_metrics(
    predicted: Sequence[Hashable | None],
    reference: Sequence[Hashable],
    completions: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> ClassificationMetrics:
    """Accuracy and MCC of parsed labels (None: unparsable) against reference labels."""
    check_paired("classification metrics", predicted=predicted, reference=reference, completions=completions)
    predicted, reference = _plain(predicted), _plain(reference)
    for index, label in enumerate(reference):
        if label is None:
            raise ValueError(f"classification metrics: reference {index} is None")
    # a parser returning "B" against references stored as 2 would score every answer wrong, silently
    reference_types = {type(label) for label in reference}
    predicted_types = {type(label) for label in predicted if label is not None}
    if not predicted_types <= reference_types:
        raise ValueError(
            "classification metrics: predictions are of type(s) "
            f"{sorted(t.__name__ for t in predicted_types)} but references of {sorted(t.__name__ for t in reference_types)}"
        )
    resampling = {"n_resamples": n_resamples, "seed": seed, "level": level}
    # class codes in first-seen order (MCC does not depend on the order); None -> the "no answer" class
    codes: dict[Hashable | None, int] = {}
    for label in [*reference, *predicted]:
        codes.setdefault(label, len(codes))
    pairs = np.array(
        [(codes[truth], codes[guess]) for truth, guess in zip(reference, predicted, strict=True)],
        dtype=np.int64,
    )
    with optional_import("classification metrics (MCC)", "train"):
        from sklearn.metrics import matthews_corrcoef
    undefined = len(np.unique(pairs[:, 0])) == 1 or len(np.unique(pairs[:, 1])) == 1
    mcc_value = 0.0 if undefined else float(matthews_corrcoef(pairs[:, 0], pairs[:, 1]))
    low, high = bootstrap_ci(pairs, _resampled_mcc(len(codes)), **resampling)
    compliance = format_compliance(predicted, **resampling)
    return ClassificationMetrics(
        accuracy=metric_from_values(pairs[:, 0] == pairs[:, 1], **resampling),
        mcc=Metric(mcc_value, low, high, len(pairs), MCC_UNDEFINED_NOTE if undefined else ""),
        parse_failure_rate=parse_failure_rate(predicted, **resampling),
        format_compliance=compliance,
        mean_answer_words=mean_answer_words(completions, **resampling),
    )


def ppi_metrics(
    predicted: Sequence[bool | None],
    reference: Sequence[bool],
    completions: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> ClassificationMetrics:
    """Protein-protein interaction (interacts: True/False): accuracy and binary MCC."""
    for what, labels in (("prediction", predicted), ("reference", reference)):
        for index, label in enumerate(labels):
            if not (isinstance(label, bool | np.bool_) or (label is None and what == "prediction")):
                raise ValueError(f"ppi metrics: {what} {index} must be True or False, got {label!r}")
    return classification_metrics(
        [None if label is None else bool(label) for label in predicted],
        [bool(label) for label in reference],
        completions,
        n_resamples,
        seed,
        level,
    )


def multiple_choice_metrics(
    predicted: Sequence[int | str | None],
    reference: Sequence[int | str],
    completions: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> ClassificationMetrics:
    """Multiple choice (option numbers or letters): accuracy and multiclass MCC."""
    return classification_metrics(predicted, reference, completions, n_resamples, seed, level)
