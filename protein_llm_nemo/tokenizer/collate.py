"""Padding formatted samples into a batch whose loss mask stays exact under left or right padding.

Masks and labels are built per sample before padding, so padding can never shift a prompt token into the loss
(the reference leaked prompt tokens into the loss with left padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .special_tokens import IGNORE_INDEX, PROTEIN_TOKEN_IDS, QWEN3_PAD_ID, ProteinTokenIds

if TYPE_CHECKING:
    import torch

    from .chat import FormattedSample

__all__ = ["ChatBatch", "collate_samples"]


@dataclass
class ChatBatch:
    """A padded batch. All tensors are int64 ``[batch, seq]``.

    Conventions (the same for left and right padding):
      input_ids:      token ids, padding = ``<|endoftext|>``.
      attention_mask: 1 on real tokens, 0 on padding.
      loss_mask:      token-aligned: 1 where ``input_ids[b, t]`` is a trained response token.
      labels:         next-token targets (megatron ``GPTModel`` convention, already shifted):
                      ``labels[b, t] = input_ids[b, t+1]`` if ``loss_mask[b, t+1]`` else -100; last column -100.
                      The loss at position t is CE(logits[b, t], labels[b, t]).
      position_ids:   0.. over real tokens (left padding shifts them), 0 on padding.
    For HF models, which shift internally, use ``hf_labels()`` instead.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    padding_side: str = field(default="right")

    def hf_labels(self) -> torch.Tensor:
        """Unshifted labels for HF ``model(labels=...)``: ``input_ids`` where trained, else -100."""
        import torch

        return torch.where(
            self.loss_mask.bool(), self.input_ids, torch.full_like(self.input_ids, IGNORE_INDEX)
        )


def collate_samples(
    samples: Sequence[FormattedSample],
    pad_id: int = QWEN3_PAD_ID,
    padding_side: Literal["left", "right"] = "right",
    pad_to_multiple_of: int | None = None,
    protein_ids: ProteinTokenIds | None = PROTEIN_TOKEN_IDS,
) -> ChatBatch:
    """Pad formatted samples into a ``ChatBatch``; masks and labels are built per sample before padding, so
    padding can never shift a prompt token into the loss."""
    import torch

    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    for i, s in enumerate(samples):
        if len(s) == 0:
            raise ValueError(f"sample {i} is empty")
        if protein_ids is not None and any(
            m and tok in protein_ids.all for tok, m in zip(s.input_ids, s.loss_mask, strict=True)
        ):
            raise ValueError(
                f"sample {i} has protein tokens under the loss mask; they must never be trained on"
            )
    width = max(len(s) for s in samples)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    shape = (len(samples), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    loss_mask = torch.zeros(shape, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    for b, s in enumerate(samples):
        n = len(s)
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        input_ids[b, cols] = torch.tensor(s.input_ids, dtype=torch.long)
        attention_mask[b, cols] = 1
        loss_mask[b, cols] = torch.tensor(s.loss_mask, dtype=torch.long)
        labels[b, cols] = torch.tensor(s.labels(), dtype=torch.long)
        position_ids[b, cols] = torch.arange(n, dtype=torch.long)
    return ChatBatch(input_ids, attention_mask, loss_mask, labels, position_ids, padding_side)
