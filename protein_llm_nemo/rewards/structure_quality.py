"""Predicted structure quality (task structure_quality): mean pLDDT, its category and a qualitative claim.

Three parts, read separately from the answer region (an unreadable part scores 0, the others still count):

- ``numeric`` (weight 0.3): exactly one distinct number (values within 0.05 are one), on the 0-100 scale
  (``85%`` is 85), scored ``exp(-err^2 / (2 * 10^2))``. Several numbers (a range, the instruction's
  thresholds echoed), none, or one outside 0-100 score 0 (flags ``ambiguous_number`` / ``no_number`` /
  ``number_out_of_range``).
- ``category`` (weight 0.3): exactly one of the words ``high``, ``medium`` (or ``moderate``), ``low``,
  not negated, equal to the record's category (``meta["category"]``: high > 80, medium >= 50, low below,
  the converter's thresholds). "very high" is high; "highly", "lower" are not category words.
- ``alignment`` (weight 0.4, "quality alignment"): the answer's qualitative claim agrees with the true pLDDT.
  The claim is the single polarity of its quality words -- confident: high, confident, ordered,
  well-ordered, folded, well-folded, structured, well-structured, rigid, globular; moderate: medium,
  moderate, moderately; uncertain: low, uncertain, disordered, unstructured, unfolded, flexible -- matched as
  whole words ("unstructured" is not "structured", "disordered" not "ordered"). It agrees when the claim is
  confident and pLDDT > 70 (AlphaFold's confident-backbone threshold), moderate and 50 <= pLDDT <= 80, or
  uncertain and pLDDT < 50. Two polarities ("high or low", "ordered but flexible") or a negated quality
  word ("not disordered") give no claim: 0. Unlike ``category`` it tolerates one step near a boundary
  ("high" for 75 is aligned though the category is medium) and it accepts words instead of labels.

The format bonus is paid when both the number and the category were read (``format_ok``). Each unread
part is flagged in the components (``category_none``, ``claim_ambiguous`` ...), and ``no_answer`` when no
part was read. ``total = 0.9 * (0.4 alignment + 0.3 numeric + 0.3
category) + 0.1 * format``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from protein_llm_nemo.data.converters.structure_plddt import category as plddt_category
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import is_negated
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult, require_meta
from protein_llm_nemo.rewards.numbers import distinct_values, find_numbers
from protein_llm_nemo.rewards.registry import register_reward

CATEGORY_WORDS = {"high": "high", "medium": "medium", "moderate": "medium", "low": "low"}
CLAIM_WORDS = {
    "confident": (
        "high", "confident", "ordered", "well-ordered", "folded", "well-folded", "structured",
        "well-structured", "rigid", "globular",
    ),
    "moderate": ("medium", "moderate", "moderately"),
    "uncertain": ("low", "uncertain", "disordered", "unstructured", "unfolded", "flexible"),
}  # fmt: skip
_POLARITY = {word: polarity for polarity, words in CLAIM_WORDS.items() for word in words}


def _word_pattern(words) -> re.Pattern[str]:
    # Longest first so "well-folded" wins over "folded"; a hyphen or a space may join "well folded".
    alternatives = sorted((w.replace("-", r"[-\s]") for w in words), key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(alternatives) + r")(?!\w)", re.I)


_CATEGORY = _word_pattern(CATEGORY_WORDS)
_CLAIM = _word_pattern(_POLARITY)


@dataclass(frozen=True)
class StructureRewardConfig(RewardConfig):
    alignment_weight: float = 0.4
    numeric_weight: float = 0.3
    category_weight: float = 0.3
    sigma_plddt: float = 10.0
    same_value_tolerance: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        weights = self.alignment_weight + self.numeric_weight + self.category_weight
        if not math.isclose(weights, 1.0):
            raise ValueError(f"alignment, numeric and category weights must sum to 1, got {weights}")


@dataclass(frozen=True)
class StructureAnswer:
    """What was read; None for a part that could not be read."""

    plddt: float | None
    category: str | None
    claim: str | None


def _normalise(word: str) -> str:
    return re.sub(r"[-\s]+", "-", word.lower())


def _single(pattern: re.Pattern[str], answer: str, mapping: dict[str, str]) -> tuple[str | None, str]:
    """The one value the matched words map to, or (None, why not)."""
    matches = list(pattern.finditer(answer))
    if not matches:
        return None, "none"
    if any(is_negated(answer, m.start()) for m in matches):
        return None, "negated"
    values = {mapping[_normalise(m.group(1))] for m in matches}
    return (values.pop(), "") if len(values) == 1 else (None, "ambiguous")


def aligned(claim: str, plddt: float) -> bool:
    if claim == "confident":
        return plddt > 70
    if claim == "moderate":
        return 50 <= plddt <= 80
    return plddt < 50


@register_reward("structure_quality")
class StructureQualityReward(Reward):
    def __init__(self, config: StructureRewardConfig | None = None):
        self.config: StructureRewardConfig = config or StructureRewardConfig()

    def _number(self, answer: str) -> tuple[float | None, str]:
        values = distinct_values([q.value for q in find_numbers(answer)], self.config.same_value_tolerance)
        if not values:
            return None, "no_number"
        if len(values) > 1:
            return None, "ambiguous_number"
        if not 0 <= values[0] <= 100:
            return None, "number_out_of_range"
        return values[0], ""

    @staticmethod
    def read_truth(record: ProteinRecord) -> tuple[float, str]:
        """(mean pLDDT, its category)."""
        truth = require_meta(record, "plddt")
        if isinstance(truth, bool) or not isinstance(truth, int | float) or not 0 <= truth <= 100:
            raise RewardInputError(
                "meta.plddt", f"record {record.id!r}: meta['plddt'] must be in 0-100, got {truth!r}"
            )
        return float(truth), record.meta.get("category") or plddt_category(truth)

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth, true_category = self.read_truth(record)
        plddt, number_problem = self._number(answer)
        category, category_problem = _single(_CATEGORY, answer, CATEGORY_WORDS)
        claim, claim_problem = _single(_CLAIM, answer, _POLARITY)
        numeric = 0.0
        if plddt is not None:
            numeric = math.exp(-((plddt - truth) ** 2) / (2 * self.config.sigma_plddt**2))
        category_score = 1.0 if category == true_category else 0.0
        alignment = 1.0 if claim is not None and aligned(claim, truth) else 0.0
        format_ok = plddt is not None and category is not None
        format_score = 1.0 if format_ok else 0.0
        task_score = (
            self.config.alignment_weight * alignment
            + self.config.numeric_weight * numeric
            + self.config.category_weight * category_score
        )
        components = {
            "format": format_score,
            "alignment": alignment,
            "numeric": numeric,
            "category": category_score,
        }
        if plddt is not None:
            components["abs_error"] = abs(plddt - truth)
        for problem in (number_problem, f"category_{category_problem}", f"claim_{claim_problem}"):
            if problem and not problem.endswith("_"):
                components[problem] = 1.0
        if plddt is None and category is None and claim is None:
            components["no_answer"] = 1.0
        answer_read = StructureAnswer(plddt, category, claim)
        return RewardResult(self.config.total(task_score, format_score), components, answer_read, format_ok)
