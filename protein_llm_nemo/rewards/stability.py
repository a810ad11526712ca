"""Mutation stability (task stability): one ddG value, Gaussian credit around the truth.

Sign convention (MegaScale, Tsuboyama et al. 2023, as the converter writes ``meta["ddg"]``): ddG =
dG(mutant) - dG(wild type) of unfolding, so POSITIVE = STABILISING, negative = destabilising (the opposite
of the FoldX / ProTherm habit). Predictions are compared in that convention, and the reference answers say
it in words ("1.23 kcal/mol (stabilising)").

Parsing (`numbers.find_numbers`): every number of the answer region, signs including the unicode minus,
decimal commas, scientific notation; ``kJ/mol`` is divided by 4.184, no unit means kcal/mol (the
instruction asks kcal/mol); digits inside identifiers (the mutation ``A23K``) are not numbers. Exactly one
value is expected: values within 0.05 kcal/mol of each other count as one (``-1.2 kcal/mol (-5.0 kJ/mol)``),
several different values (a range, a hedge, an echoed threshold) are a format failure (``ambiguous``), none
is ``no_answer``.

Scoring: ``accuracy = exp(-err^2 / (2 sigma^2))`` with err = predicted - true ddG, sigma = 1 kcal/mol. The
format bonus needs a unit written next to the number, and no verdict word contradicting the number's sign
(``stabilising`` with a negative value, ``destabilising`` with a positive one, both words, or a negated
one). ``total = 0.9 * accuracy + 0.1 * format``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import is_negated
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult, require_meta
from protein_llm_nemo.rewards.numbers import KJ_PER_KCAL, distinct_values, find_numbers
from protein_llm_nemo.rewards.registry import register_reward

# Word-bounded: "destabilising" does not contain the word "stabilising".
_STABILISING = re.compile(r"\b(?:stabili[sz]ing|stabili[sz]ed|more\s+stable)\b", re.I)
_DESTABILISING = re.compile(r"\b(?:destabili[sz]ing|destabili[sz]ed|less\s+stable)\b", re.I)


@dataclass(frozen=True)
class StabilityRewardConfig(RewardConfig):
    """sigma_kcal: width of the Gaussian credit; same_value_tolerance: values this close (kcal/mol) are one
    value restated (e.g. in the other unit, rounded)."""

    sigma_kcal: float = 1.0
    same_value_tolerance: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma_kcal <= 0:
            raise ValueError(f"sigma_kcal must be positive, got {self.sigma_kcal}")


def verdict_consistent(answer: str, ddg: float) -> bool:
    """No stabilising / destabilising word contradicts the sign of `ddg` (positive = stabilising)."""
    stabilising = list(_STABILISING.finditer(answer))
    destabilising = list(_DESTABILISING.finditer(answer))
    if any(is_negated(answer, m.start()) for m in stabilising + destabilising):
        return False
    if stabilising and destabilising:
        return False
    return not ((stabilising and ddg < 0) or (destabilising and ddg > 0))


@register_reward("stability")
class StabilityReward(Reward):
    def __init__(self, config: StabilityRewardConfig | None = None):
        self.config: StabilityRewardConfig = config or StabilityRewardConfig()

    @staticmethod
    def read_truth(record: ProteinRecord) -> float:
        truth = require_meta(record, "ddg")
        if isinstance(truth, bool) or not isinstance(truth, int | float) or not math.isfinite(truth):
            raise RewardInputError(
                "meta.ddg", f"record {record.id!r}: meta['ddg'] must be a finite number, got {truth!r}"
            )
        return float(truth)

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth = self.read_truth(record)
        quantities = find_numbers(answer)
        if not quantities:
            return RewardResult.failure("no_answer")
        values = [q.value / KJ_PER_KCAL if q.unit == "kj" else q.value for q in quantities]
        distinct = distinct_values(values, self.config.same_value_tolerance)
        if len(distinct) > 1:
            return RewardResult.failure("ambiguous", numbers=float(len(distinct)))
        predicted = distinct[0]
        if not math.isfinite(predicted):  # an exponent beyond float range
            return RewardResult.failure("not_finite")
        error = predicted - truth
        accuracy = math.exp(-(error**2) / (2 * self.config.sigma_kcal**2))
        unit_written = any(q.unit for q in quantities)
        format_score = 1.0 if unit_written and verdict_consistent(answer, predicted) else 0.0
        components = {
            "format": format_score,
            "accuracy": accuracy,
            "abs_error": abs(error),
            "numbers": float(len(quantities)),
        }
        return RewardResult(self.config.total(accuracy, format_score), components, predicted, True)
