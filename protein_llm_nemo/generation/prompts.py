"""Prompts for generation: token ids with their proteins, checked before any compute, and left-padded batches.

A prompt's proteins come as amino-acid sequences (encoded by the model's protein encoder) or as precomputed
per-residue embeddings with their mask (from an encoder or the embedding cache), in the order of the
prompt's `<|protein_start|>` groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Prompt", "PromptBatch", "left_padded_batch"]


@dataclass
class Prompt:
    """One prompt: `input_ids` (a chat-formatted user turn ending with the assistant header) and its proteins.

    sequences:  amino-acid sequences, one per protein group of the prompt; or
    embeddings: `[P, L, D]` encoder outputs of its P proteins with `mask [P, L]` (True = residue).
    """

    input_ids: Sequence[int]
    sequences: Sequence[str] = ()
    embeddings: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.input_ids = [int(t) for t in self.input_ids]
        if not self.input_ids:
            raise ValueError("empty prompt: input_ids has no tokens")
        if self.sequences and self.embeddings is not None:
            raise ValueError("give a prompt's proteins as sequences or as embeddings, not both")
        if self.embeddings is not None:
            if self.embeddings.dim() != 3:
                raise ValueError(
                    f"prompt embeddings must be [proteins, residues, dim], got {tuple(self.embeddings.shape)}"
                )
            if self.mask is None:
                self.mask = torch.ones(self.embeddings.shape[:2], dtype=torch.bool)
        self.sequences = list(self.sequences)
        if not self.key:
            self.key = self._content_key()

    @property
    def num_proteins(self) -> int:
        return len(self.sequences) if self.embeddings is None else int(self.embeddings.shape[0])

    def _content_key(self) -> bytes:
        """What keys this prompt's random streams: its tokens and proteins (not its place in a batch)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(torch.tensor(self.input_ids, dtype=torch.int64).numpy().tobytes())
        for sequence in self.sequences:
            digest.update(b"|" + sequence.encode())
        if self.embeddings is not None:
            digest.update(self.embeddings.detach().float().cpu().numpy().tobytes())
        return digest.digest()


@dataclass
class PromptBatch:
    """Left-padded prompts: `input_ids [B, L]`, `attention_mask [B, L]` (True = token), `lengths [B]`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: list[int]


def left_padded_batch(prompts: Sequence[Prompt], pad_id: int, device: torch.device) -> PromptBatch:
    """Prompts right-aligned in one `[B, max_len]` tensor, so every row's next token is at the same column."""
    width = max(len(p.input_ids) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        n = len(prompt.input_ids)
        input_ids[row, width - n :] = torch.tensor(prompt.input_ids)
        attention_mask[row, width - n :] = True
    return PromptBatch(input_ids.to(device), attention_mask.to(device), [len(p.input_ids) for p in prompts])
