"""Structure confidence answers (mean pLDDT, 0-100, and its category): pLDDT MAE and category accuracy.

Categories are the ones the structure records are built with (`data.converters.structure_plddt.category`):
high above 80, medium from 50 to 80, low below 50, so a reference of exactly 50 is medium.

- pLDDT MAE is over the records whose pLDDT parsed (its `n`); format compliance is that fraction.
- Category accuracy is over all records: the category the answer states when the caller passes one, else
  the category of the stated pLDDT; an answer with neither counts as wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from protein_llm_nemo.data.converters.structure_plddt import category as plddt_category
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
    metric_from_values,
)

__all__ = ["CATEGORIES", "StructureMetrics", "structure_metrics"]

CATEGORIES = ("high", "medium", "low")


@dataclass(frozen=True)
class StructureMetrics:
    plddt_mae: Metric  # over parsed pLDDTs
    category_accuracy: Metric  # over all records
    parse_failure_rate: Metric  # pLDDT not parsed
    format_compliance: Metric
    mean_answer_words: Metric

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _checked_reference(index: int, value: float) -> float:
    if value is None or not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"structure metrics: reference pLDDT {index} must lie within 0-100, got {value!r}")
    return float(value)


def _checked_prediction(index: int, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(
            f"structure metrics: predicted pLDDT {index} is {value!r}; pass None for an unparsable answer"
        )
    return value


def _stated_category(index: int, stated: str | None, plddt: float | None) -> str | None:
    if stated is None:
        return None if plddt is None else plddt_category(plddt)
    label = stated.strip().lower()
    if label not in CATEGORIES:
        raise ValueError(
            f"structure metrics: predicted category {index} is {stated!r}, not one of {CATEGORIES}"
        )
    return label


def structure_metrics(
    predicted_plddt: Sequence[float | None],
    reference_plddt: Sequence[float],
    completions: Sequence[str],
    predicted_category: Sequence[str | None] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> StructureMetrics:
    """pLDDT error and category accuracy of parsed answers (None: unparsable) against reference pLDDTs."""
    stated = [None] * len(predicted_plddt) if predicted_category is None else predicted_category
    check_paired(
        "structure metrics",
        predicted_plddt=predicted_plddt,
        reference_plddt=reference_plddt,
        completions=completions,
        predicted_category=stated,
    )
    resampling = {"n_resamples": n_resamples, "seed": seed, "level": level}
    references = [_checked_reference(index, value) for index, value in enumerate(reference_plddt)]
    predictions = [_checked_prediction(index, value) for index, value in enumerate(predicted_plddt)]
    errors = [
        abs(guess - truth) for guess, truth in zip(predictions, references, strict=True) if guess is not None
    ]
    if errors:
        mae = metric_from_values(np.asarray(errors), **resampling)
    else:
        mae = Metric.undefined(0, "undefined: no pLDDT parsed")
    answered = [
        _stated_category(index, *answer) for index, answer in enumerate(zip(stated, predictions, strict=True))
    ]
    correct = [label == plddt_category(truth) for label, truth in zip(answered, references, strict=True)]
    compliance = format_compliance(predictions, **resampling)
    return StructureMetrics(
        plddt_mae=mae,
        category_accuracy=metric_from_values(correct, **resampling),
        parse_failure_rate=parse_failure_rate(predictions, **resampling),
        format_compliance=compliance,
        mean_answer_words=mean_answer_words(completions, **resampling),
    )
