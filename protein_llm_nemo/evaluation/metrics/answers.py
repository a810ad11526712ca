"""What every task reports about the answers themselves, whatever their content: how many could be parsed
(format compliance) and how long they are.

Lengths are whitespace-separated words of the completion text: they need no tokenizer and compare across
models with different vocabularies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protein_llm_nemo.evaluation.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    Metric,
    metric_from_values,
)

__all__ = [
    "answer_words",
    "check_paired",
    "format_compliance",
    "mean_answer_words",
    "parse_failure_rate",
]


def check_paired(what: str, **columns: Sequence[Any]) -> int:
    """The common length of per-record columns; a clear error when one is empty or the lengths differ."""
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"{what}: one entry per record in every list is required, got {described}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"{what}: no records")
    return n


def answer_words(completion: str) -> int:
    return len(completion.split())


def mean_answer_words(
    completions: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Metric:
    """Mean number of whitespace-separated words per completion."""
    check_paired("mean_answer_words", completions=completions)
    return metric_from_values([answer_words(text) for text in completions], n_resamples, seed, level)


def format_compliance(
    parsed: Sequence[Any | None],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Metric:
    """Fraction of records whose answer was parsed (anything but None)."""
    check_paired("format_compliance", parsed=parsed)
    return metric_from_values([value is not None for value in parsed], n_resamples, seed, level)


def parse_failure_rate(
    parsed: Sequence[Any | None],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Metric:
    """Fraction of records whose answer could not be parsed (None): 1 - format compliance."""
    check_paired("parse_failure_rate", parsed=parsed)
    return metric_from_values([value is None for value in parsed], n_resamples, seed, level)
