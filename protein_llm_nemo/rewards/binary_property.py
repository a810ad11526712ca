"""A yes / no question about a protein's property (task binary_property): "Is the GRAVY hydropathy score of
this protein positive?", "Is it membrane-bound?". A strict yes / no (`rewards.yes_no`, as PPI), the truth
``meta["answer"]``, a real boolean only: a string "no" or a count would silently read as true."""

from __future__ import annotations

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.base import RewardInputError, require_meta
from protein_llm_nemo.rewards.registry import register_reward
from protein_llm_nemo.rewards.yes_no import YesNoReward

__all__ = ["BinaryPropertyReward"]


@register_reward("binary_property")
class BinaryPropertyReward(YesNoReward):
    @staticmethod
    def read_truth(record: ProteinRecord) -> bool:
        value = require_meta(record, "answer")
        if isinstance(value, bool):
            return value
        raise RewardInputError(
            "meta.answer", f"record {record.id!r}: meta['answer'] must be a boolean, got {value!r}"
        )
