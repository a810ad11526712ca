"""Token-level constants shared by every stage: the Qwen3 vocabulary layout and control tokens, the protein
boundary tokens ``<|protein_start|>``, ``<|protein_embed|>``, ``<|protein_end|>`` (ids 151669-151671 on
Qwen3) with their ids, and the label value the loss ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "IGNORE_INDEX",
    "PROTEIN_EMBED_TOKEN",
    "PROTEIN_END_TOKEN",
    "PROTEIN_SPECIAL_TOKENS",
    "PROTEIN_START_TOKEN",
    "PROTEIN_TOKEN_IDS",
    "QWEN3_BASE_VOCAB_LEN",
    "QWEN3_EOS_ID",
    "QWEN3_EOS_TOKEN",
    "QWEN3_PADDED_VOCAB_SIZE",
    "QWEN3_PAD_ID",
    "QWEN3_PAD_TOKEN",
    "ProteinTokenIds",
]

QWEN3_BASE_VOCAB_LEN = 151_669  # len(tokenizer) before our tokens
# Real Qwen3 checkpoints pad the embedding table to 151,936 rows, so ids 151669-151671 already have rows.
QWEN3_PADDED_VOCAB_SIZE = 151_936
QWEN3_EOS_TOKEN = "<|im_end|>"
QWEN3_EOS_ID = 151_645
QWEN3_PAD_TOKEN = "<|endoftext|>"
QWEN3_PAD_ID = 151_643
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# What Qwen3's template inserts before the final assistant answer when thinking is disabled.
EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"

PROTEIN_START_TOKEN = "<|protein_start|>"
PROTEIN_EMBED_TOKEN = "<|protein_embed|>"
PROTEIN_END_TOKEN = "<|protein_end|>"
PROTEIN_SPECIAL_TOKENS: tuple[str, str, str] = (PROTEIN_START_TOKEN, PROTEIN_EMBED_TOKEN, PROTEIN_END_TOKEN)

IGNORE_INDEX = -100  # label value ignored by cross-entropy (torch and megatron conventions)


@dataclass(frozen=True)
class ProteinTokenIds:
    """Ids of the three protein boundary tokens in a tokenizer (151669-151671 on Qwen3)."""

    start: int
    embed: int
    end: int

    @property
    def all(self) -> tuple[int, int, int]:
        return (self.start, self.embed, self.end)

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> ProteinTokenIds:
        # convert_tokens_to_ids, not get_vocab(): the latter builds a 151k-entry dict on every call.
        found = tokenizer.convert_tokens_to_ids(list(PROTEIN_SPECIAL_TOKENS))
        missing = [
            t
            for t, i in zip(PROTEIN_SPECIAL_TOKENS, found, strict=True)
            if i is None or tokenizer.convert_ids_to_tokens(i) != t
        ]
        if missing:
            raise ValueError(
                f"tokenizer has no protein tokens {missing}; load it with load_tokenizer() or call "
                "add_protein_tokens(tokenizer) first"
            )
        return cls(*(int(i) for i in found))


PROTEIN_TOKEN_IDS = ProteinTokenIds(start=151_669, embed=151_670, end=151_671)
