"""The strict yes / no answer shared by the PPI and binary-property rewards.

Parsing: the words ``yes`` and ``no`` (case-insensitive, whole words: "nobody", "yesterday", "not" do not
count) in the answer region. Exactly one of the two, possibly repeated, is the answer; both words ("yes and
no", "yes, with no doubt"), neither, or a negated one ("not yes", "cannot say no") is a format failure
(``ambiguous`` / ``no_answer`` / ``negated``) and scores 0, never a half credit: a hedge must not pay.

Scoring: ``correct`` is 1 when the answer equals the record's truth (each subclass's ``read_truth``). The
format bonus is paid when the verdict is the first word of the answer region ("Yes, they interact.",
"Answer: no"). ``total = 0.9 * correct + 0.1 * format``.
"""

from __future__ import annotations

import re

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import is_negated, strip_leading_decoration
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardResult

__all__ = ["VERDICT", "YesNoReward", "parse_verdict"]

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


class YesNoReward(Reward):
    """A yes / no question; subclasses say where the truth is (``read_truth``)."""

    def __init__(self, config: RewardConfig | None = None):
        self.config = config or RewardConfig()

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth = self.read_truth(record)
        verdict = parse_verdict(answer)
        if isinstance(verdict, str):
            return RewardResult.failure(verdict)
        correct = 1.0 if verdict == truth else 0.0
        format_score = 1.0 if VERDICT.match(strip_leading_decoration(answer)) is not None else 0.0
        components = {"format": format_score, "correct": correct}
        return RewardResult(self.config.total(correct, format_score), components, verdict, True)
