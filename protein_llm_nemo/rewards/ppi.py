"""Protein-protein interaction (task ppi): a strict yes / no (`rewards.yes_no`), the truth
``meta["interacts"]`` (a boolean, or 0 / 1)."""

from __future__ import annotations

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.base import RewardInputError, require_meta
from protein_llm_nemo.rewards.registry import register_reward
from protein_llm_nemo.rewards.yes_no import YesNoReward, parse_verdict

__all__ = ["PpiReward", "parse_verdict"]


@register_reward("ppi")
class PpiReward(YesNoReward):
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
