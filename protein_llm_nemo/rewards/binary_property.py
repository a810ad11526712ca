"""A yes / no question about a protein's property (task binary_property): "Does this protein contain a
cysteine?", "Is it cysteine-rich?", "Is it membrane-bound?". The truth is ``meta["answer"]`` (a boolean).

Parsing is the PPI reward's, equally strict: the whole words ``yes`` / ``no`` (case-insensitive) in the
answer region; exactly one of the two, possibly repeated, is the answer; both words, neither, or a negated one
("not yes") is a format failure (``ambiguous`` / ``no_answer`` / ``negated``) worth 0, never a half credit.

Scoring: ``correct`` is 1 when the answer equals ``meta["answer"]``; the format bonus is paid when the verdict
is the first word of the answer region. ``total = 0.9 * correct + 0.1 * format``.
"""

from __future__ import annotations

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.answer_text import strip_leading_decoration
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult, require_meta
from protein_llm_nemo.rewards.ppi import VERDICT, parse_verdict
from protein_llm_nemo.rewards.registry import register_reward

__all__ = ["BinaryPropertyReward"]


@register_reward("binary_property")
class BinaryPropertyReward(Reward):
    def __init__(self, config: RewardConfig | None = None):
        self.config = config or RewardConfig()

    @staticmethod
    def read_truth(record: ProteinRecord) -> bool:
        value = require_meta(record, "answer")
        # Only a real boolean: a string "no" or a count would silently read as True.
        if isinstance(value, bool):
            return value
        raise RewardInputError(
            "meta.answer", f"record {record.id!r}: meta['answer'] must be a boolean, got {value!r}"
        )

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        truth = self.read_truth(record)
        verdict = parse_verdict(answer)
        if isinstance(verdict, str):
            return RewardResult.failure(verdict)
        correct = 1.0 if verdict == truth else 0.0
        format_score = 1.0 if VERDICT.match(strip_leading_decoration(answer)) is not None else 0.0
        components = {"format": format_score, "correct": correct}
        return RewardResult(self.config.total(correct, format_score), components, verdict, True)
