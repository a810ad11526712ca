"""What every reward returns and shares: `RewardResult`, the common config, and the `Reward` base class.

A reward scores one completion against one record's ground truth (``record.meta``). Its total mixes a task
score (how right the answer is, in [0, 1]) with a small format bonus (the answer has the task's expected
shape): ``total = (1 - format_weight) * task_score + format_weight * format``. A completion whose answer
cannot be read unambiguously is a format failure: ``total == 0``, ``format_ok`` False, and a flag in
``components`` names why (``overlong``, ``no_answer``, ``ambiguous`` ...).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import answer_region

# The format bonus stays small: a well-shaped wrong answer must never come close to a right one.
MAX_FORMAT_WEIGHT = 0.1


class RewardInputError(ValueError):
    """The record lacks the ground truth its reward needs (a data bug, not a bad completion); ``field`` is
    the short name of what is missing or invalid (``meta.ddg``), usable as a drop-count key."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RewardResult:
    """One scored completion.

    total:         the reward, in [0, 1]
    components:    every part of the total as a raw sub-score in [0, 1] (``format``, ``f1``, ``numeric`` ...)
                   plus diagnostics (counts such as ``unknown_ids``, errors such as ``abs_error``, failure
                   flags set to 1.0); each reward's documentation says which keys are which
    parsed_answer: what was read from the completion (None when nothing could be read)
    format_ok:     the answer was read unambiguously
    """

    total: float
    components: dict[str, float]
    parsed_answer: Any
    format_ok: bool

    def __post_init__(self) -> None:
        if not (math.isfinite(self.total) and 0.0 <= self.total <= 1.0):
            raise ValueError(f"reward total must be in [0, 1], got {self.total}")

    @classmethod
    def failure(cls, reason: str, **diagnostics: float) -> RewardResult:
        """No readable answer: zero reward, no format bonus, the reason as a 1.0 flag."""
        return cls(0.0, {"format": 0.0, reason: 1.0, **diagnostics}, None, False)


@dataclass(frozen=True)
class RewardConfig:
    """Settings every reward shares.

    format_weight:        share of the total paid for the expected answer shape (at most 0.1)
    max_completion_chars: longer completions are a format failure (``overlong``) before any parsing, which
                          also bounds the cost of a pathological completion; 10k characters is ~2.5k tokens,
                          five times the longest generation budget GRPO uses (512 new tokens)
    """

    format_weight: float = 0.1
    max_completion_chars: int = 10_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.format_weight <= MAX_FORMAT_WEIGHT:
            raise ValueError(f"format_weight must be in [0, {MAX_FORMAT_WEIGHT}], got {self.format_weight}")
        if self.max_completion_chars <= 0:
            raise ValueError(f"max_completion_chars must be positive, got {self.max_completion_chars}")

    def total(self, task_score: float, format_score: float) -> float:
        # min(): float rounding of w * 1 + (1 - w) * 1 can land a hair above 1.0.
        return min(1.0, (1.0 - self.format_weight) * task_score + self.format_weight * format_score)


class Reward(ABC):
    """A reward for one or more record tasks (``tasks`` is set by `register_reward`).

    Subclasses implement `read_truth` (the record's ground truth, needing no resource, or a
    `RewardInputError`) and `score_answer` on the answer region of the completion (thinking blocks removed,
    text after the last ``Answer:`` marker when there is one); `score` handles what every task shares.
    """

    tasks: ClassVar[tuple[str, ...]] = ()
    config: RewardConfig

    def score(self, record: ProteinRecord, completion: str) -> RewardResult:
        if len(completion) > self.config.max_completion_chars:
            return RewardResult.failure("overlong", completion_chars=float(len(completion)))
        return self.score_answer(record, answer_region(completion))

    @staticmethod
    @abstractmethod
    def read_truth(record: ProteinRecord) -> Any:
        """The record's ground truth, validated; raises `RewardInputError`."""

    @classmethod
    def ground_truth_problem(cls, record: ProteinRecord) -> str | None:
        """None when the record can be scored, else the short name of what its ground truth lacks."""
        try:
            cls.read_truth(record)
        except RewardInputError as exc:
            return exc.field
        return None

    @abstractmethod
    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        """Score the answer region of a completion against ``record.meta``."""


def require_meta(record: ProteinRecord, key: str) -> Any:
    """The record's ground truth under `key`, or a `RewardInputError` naming the record."""
    value = record.meta.get(key)
    if value is None:
        raise RewardInputError(
            f"meta.{key}",
            f"record {record.id!r} (task {record.task!r}) has no meta[{key!r}]: its reward needs it",
        )
    return value


__all__ = [
    "MAX_FORMAT_WEIGHT",
    "Reward",
    "RewardConfig",
    "RewardInputError",
    "RewardResult",
    "require_meta",
]
