"""Protein-protein interaction (task ppi): a strict yes / no.

Parsing: the words ``yes`` and ``no`` (case-insensitive, whole words: "nobody", "yesterday", "not" do not
count) in the answer region. Exactly one of the two, possibly repeated, is the answer; both words ("yes and
no", "yes, with no doubt"), neither, or a negated one ("not yes", "cannot say no") is a format failure
(``ambiguous`` / ``no_answer`` / ``negated``) and scores 0, never a half credit: a hedge must not pay.

Scoring: ``correct`` is 1 when the answer equals ``meta["interacts"]``. The format bonus is paid when the
verdict is the first word of the answer region ("Yes, they interact.", "Answer: no").
``total = 0.9 * correct + 0.1 * format``.
"""

from __future__ import annotations

import re

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import is_negated, strip_leading_decoration
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult, require_meta
from protein_llm_nemo.rewards.registry import register_reward

VERDICT = re.compile(r"\b(yes|no)\b", re.I)


def parse_verdict(answer: str) -> bool | str:
    """True / False, or the failure reason (``no_answer``, ``ambiguous``, ``negated``)."""
    matches = list(VERDICT.finditer(answer))
    if not matches:
        return "no_answer"
    if len({m.group(1).lower() for m in matches}) > 1:
        return "ambiguous"
    if any(is_negated(answer, m.start()) for m in matches):
        return "negated"
    return matches[0].group(1).lower() == "yes"


@register_reward("ppi")
class PpiReward(Reward):
    def __init__(self, config: RewardConfig | None = None):
        self.config = config or RewardConfig()

    @staticmethod
    def read_truth(record: ProteinRecord) -> bool:
        value = require_meta(record, "interacts")
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise RewardInputError(
            "meta.interacts", f"record {record.id!r}: meta['interacts'] must be a boolean, got {value!r}"
        )

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth = self.read_truth(record)
        verdict = parse_verdict(answer)
        if isinstance(verdict, str):
            return RewardResult.failure(verdict)
        correct = 1.0 if verdict == truth else 0.0
        first_word = VERDICT.match(strip_leading_decoration(answer)) is not None
        format_score = 1.0 if first_word else 0.0
        components = {"format": format_score, "correct": correct}
        return RewardResult(self.config.total(correct, format_score), components, verdict, True)
