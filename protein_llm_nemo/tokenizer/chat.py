"""Chat formatting: Qwen3's chat template (``enable_thinking=False``) reproduced token for token, with a loss
mask that is 1 exactly on assistant response tokens and their closing ``<|im_end|>``.

Why segments instead of rendering the template and masking afterwards: the mask must be exact, so each
assistant response is tokenized as its own piece. Every segment boundary sits either after a special token
(which the tokenizer splits out before BPE) or after the header's newline; the second case is exact unless the
response begins with whitespace containing a newline (``_FUSES_WITH_HEADER``): then we check the joint
tokenization and reject the rare response whose first token really fuses with the header. The tests prove
equality with ``tokenizer.apply_chat_template`` on single- and multi-turn conversations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .collate import ChatBatch, collate_samples
from .protein_slots import build_protein_user_text
from .special_tokens import (
    EMPTY_THINK_BLOCK,
    IGNORE_INDEX,
    IM_END,
    IM_START,
    PROTEIN_SPECIAL_TOKENS,
    QWEN3_PAD_ID,
    QWEN3_PAD_TOKEN,
    THINK_CLOSE,
    THINK_OPEN,
    ProteinTokenIds,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ASSISTANT_ROLE",
    "DEFAULT_SYSTEM_PROMPT",
    "ROLES",
    "SYSTEM_ROLE",
    "USER_ROLE",
    "ChatFormatter",
    "ChatFormatterConfig",
    "FormattedSample",
    "Message",
    "MessageLike",
]

DEFAULT_SYSTEM_PROMPT = (
    "You are a protein science expert. Given a protein amino acid sequence, you analyze its properties, "
    "predict its function, structure, and biological associations based on your knowledge of protein biology."
)

SYSTEM_ROLE, USER_ROLE, ASSISTANT_ROLE = "system", "user", "assistant"
ROLES: tuple[str, str, str] = (SYSTEM_ROLE, USER_ROLE, ASSISTANT_ROLE)

# Strings that would change the conversation's structure (or collide with padding) if they appeared inside a
# message: the tokenizer turns them into control tokens.
_CONTROL_STRINGS = (IM_START, IM_END, QWEN3_PAD_TOKEN)
# A response starting with whitespace that contains a newline would merge with the header's trailing "\n"
# into one pre-tokenizer chunk (rule `\s*[\r\n]+`); BPE may then emit a token straddling the boundary, in
# which case no exact mask exists. Only these responses pay for an extra joint-tokenization check.
_FUSES_WITH_HEADER = re.compile(r"^[^\S\r\n]*[\r\n]")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


MessageLike = Message | Mapping[str, Any]


@dataclass
class FormattedSample:
    """Token ids of one conversation and the token-aligned loss mask (1 = trained response token)."""

    input_ids: list[int]
    loss_mask: list[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(
                f"input_ids ({len(self.input_ids)}) and loss_mask ({len(self.loss_mask)}) differ"
            )

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.loss_mask)

    def labels(self) -> list[int]:
        """Next-token targets: ``labels[t] = input_ids[t+1]`` where ``loss_mask[t+1]`` else ``IGNORE_INDEX``."""
        out = [IGNORE_INDEX] * len(self.input_ids)
        for t in range(len(self.input_ids) - 1):
            if self.loss_mask[t + 1]:
                out[t] = self.input_ids[t + 1]
        return out


@dataclass
class ChatFormatterConfig:
    """system_prompt: prepended when the conversation has no leading system message (None: no system turn)."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT


def _normalize_messages(messages: Sequence[MessageLike]) -> list[Message]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a sequence of messages, got {type(messages).__name__}")
    if len(messages) == 0:
        raise ValueError("messages is empty: a conversation needs at least one user message")
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, Message):
            role, content = msg.role, msg.content
        elif isinstance(msg, Mapping):
            extra = sorted(k for k, v in msg.items() if k not in ("role", "content") and v is not None)
            if extra:
                # The template would render reasoning_content / tool_calls; we support plain turns only.
                raise ValueError(
                    f"message {i} has unsupported keys {extra}; only 'role' and 'content' are supported"
                )
            if "role" not in msg or "content" not in msg:
                raise ValueError(f"message {i} needs 'role' and 'content' keys, got {sorted(msg)}")
            role, content = msg["role"], msg["content"]
        else:
            raise TypeError(f"message {i} must be a Message or a mapping, got {type(msg).__name__}")
        if role not in ROLES:
            raise ValueError(f"message {i} has unknown role {role!r}; expected one of {list(ROLES)}")
        if not isinstance(content, str):
            raise TypeError(f"message {i} ({role}) content must be a str, got {type(content).__name__}")
        for s in _CONTROL_STRINGS:
            if s in content:
                raise ValueError(
                    f"message {i} ({role}) contains the control token {s!r}, which would break the chat structure"
                )
        if role == ASSISTANT_ROLE:
            for s in (*PROTEIN_SPECIAL_TOKENS, THINK_OPEN, THINK_CLOSE):
                if s in content:
                    what = (
                        "protein tokens belong in user turns only"
                        if s in PROTEIN_SPECIAL_TOKENS
                        else ("thinking is disabled (enable_thinking=False)")
                    )
                    raise ValueError(f"assistant message {i} contains {s!r}: {what}")
        out.append(Message(role, content))
    return out


class ChatFormatter:
    """Qwen3 chat template (``enable_thinking=False``) -> token ids + exact response-only loss mask."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: ChatFormatterConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or ChatFormatterConfig()
        self.protein_ids = ProteinTokenIds.from_tokenizer(tokenizer)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else QWEN3_PAD_ID

    # -- rendering ---------------------------------------------------------------------------------
    def with_system(self, messages: Sequence[MessageLike]) -> list[Message]:
        """Validated messages with the default system prompt prepended when none leads the conversation."""
        return self._prepare(messages)[0]

    def _prepare(self, messages: Sequence[MessageLike]) -> tuple[list[Message], int]:
        """(validated messages with system prompt, how many were prepended) so errors cite the caller's index."""
        msgs = _normalize_messages(messages)
        if msgs[0].role != SYSTEM_ROLE and self.config.system_prompt is not None:
            msgs.insert(0, Message(SYSTEM_ROLE, self.config.system_prompt))
            return msgs, 1
        return msgs, 0

    def _splits_cleanly(self, header: str, content: str) -> bool:
        """Whether the header's trailing newlines and the response tokenize the same jointly and apart.

        Only called for responses whose leading whitespace holds a newline: then the pre-tokenizer puts the
        header's newline(s) and that whitespace in one chunk, and only BPE decides whether a token straddles
        the boundary. The chunk starts after a special/added token or a letter run, so the trailing newlines
        alone reproduce it exactly.
        """
        tail = header[len(header.rstrip("\n")) :]
        enc = self.tokenizer([tail + content, tail, content], add_special_tokens=False)["input_ids"]
        return enc[0] == enc[1] + enc[2]

    def _segments(
        self, msgs: list[Message], add_generation_prompt: bool, offset: int = 0
    ) -> list[tuple[str, bool]]:
        """Render like Qwen3's template; return (text, trained) pieces in order."""
        # The template puts the empty think block only on an assistant turn after the last real user query
        # that is also the conversation's last message (tool-response user turns do not count as queries).
        last_query = len(msgs) - 1
        for idx in range(len(msgs) - 1, -1, -1):
            c = msgs[idx].content
            if msgs[idx].role == USER_ROLE and not (
                c.startswith("<tool_response>") and c.endswith("</tool_response>")
            ):
                last_query = idx
                break
        segs: list[tuple[str, bool]] = []
        for idx, msg in enumerate(msgs):
            if msg.role != ASSISTANT_ROLE:
                segs.append((f"{IM_START}{msg.role}\n{msg.content}{IM_END}\n", False))
                continue
            is_last = idx == len(msgs) - 1
            if idx > last_query and is_last:
                header, content = f"{IM_START}assistant\n{EMPTY_THINK_BLOCK}", msg.content.lstrip("\n")
            else:
                header, content = f"{IM_START}assistant\n", msg.content
            if _FUSES_WITH_HEADER.match(content) and not self._splits_cleanly(header, content):
                raise ValueError(
                    f"assistant message {idx - offset} starts with whitespace containing a newline ({content[:8]!r}...), "
                    "which merges with the chat header into one token, so no exact loss mask exists; strip "
                    "the leading whitespace of responses"
                )
            segs += [(header, False), (content + IM_END, True), ("\n", False)]
        if add_generation_prompt:
            segs.append((f"{IM_START}assistant\n{EMPTY_THINK_BLOCK}", False))
        # Merge neighbours with the same mask: fewer tokenizer calls, and boundaries stay at special tokens.
        merged: list[tuple[str, bool]] = []
        for text, trained in segs:
            if merged and merged[-1][1] == trained:
                merged[-1] = (merged[-1][0] + text, trained)
            else:
                merged.append((text, trained))
        return merged

    def render_text(self, messages: Sequence[MessageLike], add_generation_prompt: bool = False) -> str:
        """The rendered string (equal to ``apply_chat_template(..., tokenize=False, enable_thinking=False)``)."""
        msgs, offset = self._prepare(messages)
        return "".join(t for t, _ in self._segments(msgs, add_generation_prompt, offset))

    def _encode(self, segs: list[tuple[str, bool]]) -> FormattedSample:
        encoded = self.tokenizer([t for t, _ in segs], add_special_tokens=False)["input_ids"]
        input_ids: list[int] = []
        loss_mask: list[int] = []
        forbidden = set(self.protein_ids.all)
        for (_, trained), ids in zip(segs, encoded, strict=True):
            if trained and forbidden.intersection(ids):
                raise ValueError("protein tokens inside an assistant response cannot be trained on")
            input_ids += ids
            loss_mask += [int(trained)] * len(ids)
        return FormattedSample(input_ids, loss_mask)

    # -- public entry points -------------------------------------------------------------------------
    def format(self, messages: Sequence[MessageLike]) -> FormattedSample:
        """Training sample: the conversation must end with an assistant message; mask covers every assistant
        response and its ``<|im_end|>`` (not headers, not the empty think block, not the trailing newline)."""
        msgs, offset = self._prepare(messages)
        if msgs[-1].role != ASSISTANT_ROLE:
            raise ValueError(
                f"a training conversation must end with an assistant message, got {msgs[-1].role!r} last; use "
                "format_prompt() for generation prompts"
            )
        if not any(m.role == USER_ROLE for m in msgs):
            raise ValueError("a training conversation needs at least one user message")
        for i, m in enumerate(msgs):
            if m.role == ASSISTANT_ROLE and not m.content.strip():
                raise ValueError(f"assistant message {i - offset} is empty: nothing to train on")
        return self._encode(self._segments(msgs, add_generation_prompt=False, offset=offset))

    def format_prompt(self, messages: Sequence[MessageLike]) -> list[int]:
        """Generation prompt ids (``add_generation_prompt=True``, ``enable_thinking=False``); ends with the
        assistant header and the empty think block, so the model writes the answer next."""
        msgs, offset = self._prepare(messages)
        if msgs[-1].role != USER_ROLE:
            raise ValueError(f"a generation prompt must end with a user message, got {msgs[-1].role!r} last")
        return self._encode(self._segments(msgs, add_generation_prompt=True, offset=offset)).input_ids

    def format_instruction(
        self, instruction: str, response: str, num_slots: int, num_proteins: int = 1
    ) -> FormattedSample:
        """Single-turn protein sample: user = instruction + placeholder(s), assistant = response."""
        user = build_protein_user_text(instruction, num_slots, num_proteins)
        return self.format([Message(USER_ROLE, user), Message(ASSISTANT_ROLE, response)])

    def collate(
        self,
        samples: Sequence[FormattedSample],
        padding_side: Literal["left", "right"] = "right",
        pad_to_multiple_of: int | None = None,
    ) -> ChatBatch:
        return collate_samples(samples, self.pad_id, padding_side, pad_to_multiple_of, self.protein_ids)
