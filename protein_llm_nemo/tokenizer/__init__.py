"""Qwen3 tokenizer, protein special tokens, chat formatting with exact response-only loss masks.

Every stage (SSL, SFT, GRPO, eval, export) imports from here so they all get exactly the same answer:

- ``special_tokens``: Qwen3 vocabulary constants, the protein boundary tokens and their ids.
- ``loading``: the Qwen3 tokenizer (offline copy by default) with the protein tokens added.
- ``protein_slots``: placeholder text for proteins and the slot positions it occupies in token ids.
- ``chat``: the chat template reproduced token for token with an exact response-only loss mask.
- ``collate``: padding into a batch whose mask stays exact under left or right padding.
"""

from .chat import (
    ASSISTANT_ROLE,
    DEFAULT_SYSTEM_PROMPT,
    ROLES,
    SYSTEM_ROLE,
    USER_ROLE,
    ChatFormatter,
    ChatFormatterConfig,
    FormattedSample,
    Message,
    MessageLike,
)
from .collate import ChatBatch, collate_samples
from .loading import (
    OFFLINE_TOKENIZER_JSON_SHA256,
    OFFLINE_TOKENIZER_JSON_SIZE,
    OFFLINE_TOKENIZER_PACKAGE,
    TokenizerConfig,
    add_protein_tokens,
    load_tokenizer,
    offline_tokenizer_dir,
    verify_tokenizer_json,
)
from .protein_slots import (
    ProteinSpan,
    build_protein_user_text,
    find_protein_slots,
    protein_placeholder,
    protein_slot_index,
)
from .special_tokens import (
    IGNORE_INDEX,
    PROTEIN_EMBED_TOKEN,
    PROTEIN_END_TOKEN,
    PROTEIN_SPECIAL_TOKENS,
    PROTEIN_START_TOKEN,
    PROTEIN_TOKEN_IDS,
    QWEN3_BASE_VOCAB_LEN,
    QWEN3_EOS_ID,
    QWEN3_EOS_TOKEN,
    QWEN3_PAD_ID,
    QWEN3_PAD_TOKEN,
    QWEN3_PADDED_VOCAB_SIZE,
    ProteinTokenIds,
)

__all__ = [
    "ASSISTANT_ROLE",
    "DEFAULT_SYSTEM_PROMPT",
    "IGNORE_INDEX",
    "OFFLINE_TOKENIZER_JSON_SHA256",
    "OFFLINE_TOKENIZER_JSON_SIZE",
    "OFFLINE_TOKENIZER_PACKAGE",
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
    "ROLES",
    "SYSTEM_ROLE",
    "USER_ROLE",
    "ChatBatch",
    "ChatFormatter",
    "ChatFormatterConfig",
    "FormattedSample",
    "Message",
    "MessageLike",
    "ProteinSpan",
    "ProteinTokenIds",
    "TokenizerConfig",
    "add_protein_tokens",
    "build_protein_user_text",
    "collate_samples",
    "find_protein_slots",
    "load_tokenizer",
    "offline_tokenizer_dir",
    "protein_placeholder",
    "protein_slot_index",
    "verify_tokenizer_json",
]
