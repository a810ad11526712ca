"""`MicroBatch`: the typed contract between batch producers (`batches.py`), the loop and the forward step.

One micro-batch is what megatron's pipeline schedule feeds to one forward step. Producers build it on the
CPU, the loop moves it with `.to(device)`, the forward step calls `model(**microbatch.model_inputs())`.

Later stages extend it by subclassing (fields are keyword-only, so a subclass may add required fields):

    @dataclass(kw_only=True)
    class GRPOMicroBatch(MicroBatch):
        old_log_probs: torch.Tensor  # [B, S]
        advantages: torch.Tensor  # [B]

`.to()` moves every tensor field, the subclass's too; `model_inputs()` stays the model's arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import torch

if TYPE_CHECKING:  # megatron-core is imported where it runs; this module stays light
    from megatron.core.packed_seq_params import PackedSeqParams


@dataclass(kw_only=True)
class MicroBatch:
    """One micro-batch of token rows. `B` rows of `S` tokens: a padded batch is `[micro_batch_size,
    seq_length]` (one sample per row, right-padded); a packed one is a single row `[1, micro_batch_size *
    seq_length]` of concatenated samples whose boundaries `packed_seq_params` carries.

    input_ids           `[B, S]` int64 token ids (pad id after the samples).
    position_ids        `[B, S]` int64 rotary positions, restarting at 0 for every packed sample.
    labels              `[B, S]` int64 next-token targets, already shifted (`labels[:, t]` is the token
                        after `input_ids[:, t]`); IGNORE_INDEX (-100) where there is no target.
    loss_mask           `[B, S]` float32, 1.0 where the token's loss counts (response tokens), else 0.0.
    attention_mask      None: causal attention (padding is after every real token, packed samples are
                        separated by `packed_seq_params`).
    protein_embeddings  `[N, L, D]` frozen-encoder embeddings of the micro-batch's N proteins, in the order
                        their placeholders appear (row-major); None without proteins or for the text bridge.
    protein_mask        `[N, L]` bool, True on real residues of `protein_embeddings`.
    packed_seq_params   megatron `PackedSeqParams` (`qkv_format="thd"`, int32 `cu_seqlens` of every sample
                        and each pack's tail padding) for packed rows; None for padded rows.
    segment_ids         `[B, S]` int64 sample index per token, for flamingo's per-sample protein context
                        when rows are packed without `packed_seq_params`; None otherwise (the model derives
                        it from `packed_seq_params`).
    sequences           the proteins' amino-acid sequences (what `protein_embeddings` encodes), same order.
    num_samples         formatted samples in the micro-batch (0 for all-padding validation filler).
    real_tokens         non-padding tokens (prompt, protein slots and response), for throughput.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    attention_mask: torch.Tensor | None = None
    protein_embeddings: torch.Tensor | None = None
    protein_mask: torch.Tensor | None = None
    packed_seq_params: PackedSeqParams | None = None
    segment_ids: torch.Tensor | None = None
    sequences: list[str] = field(default_factory=list)
    num_samples: int
    real_tokens: int

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Self:
        """A copy with every tensor field (a subclass's too) and the `PackedSeqParams` tensors on `device`;
        `self` when nothing moves. Tensors shared between fields stay shared (cu_seqlens_q/kv)."""
        device = torch.device(device)
        moved: dict[int, torch.Tensor] = {}
        changes = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            new = _on_device(value, device, non_blocking, moved)
            if new is not value:
                changes[item.name] = new
        return dataclasses.replace(self, **changes) if changes else self

    def model_inputs(self, targets: bool = True) -> dict[str, Any]:
        """Keyword arguments of `ProteinLLMModel.forward`. With `targets` the labels and loss mask are
        included and the last pipeline stage returns per-token losses `[B, S]` instead of logits."""
        inputs = {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": self.attention_mask,
            "protein_embeddings": self.protein_embeddings,
            "protein_mask": self.protein_mask,
            "packed_seq_params": self.packed_seq_params,
            "segment_ids": self.segment_ids,
        }
        if targets:
            inputs.update(labels=self.labels, loss_mask=self.loss_mask)
        return inputs


def _on_device(value: Any, device: torch.device, non_blocking: bool, moved: dict[int, torch.Tensor]) -> Any:
    """`value` with its tensors on `device` (a tensor, or a dataclass of tensors such as PackedSeqParams)."""
    if isinstance(value, torch.Tensor):
        if id(value) not in moved:  # `Tensor.to` returns the tensor itself when it is already there
            moved[id(value)] = value.to(device, non_blocking=non_blocking)
        return moved[id(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for item in dataclasses.fields(value):
            inner = getattr(value, item.name)
            if isinstance(inner, torch.Tensor):
                new = _on_device(inner, device, non_blocking, moved)
                if new is not inner:
                    changes[item.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
