"""`Qwen3GPTModel`: megatron-core's `GPTModel` whose `labels=...` loss is HF's, the cross entropy over the real
vocabulary (megatron's padded output rows take no mass), computed only at the positions that have a target.
Built by `models.qwen3.build_qwen3_model`."""

from __future__ import annotations

import functools
from typing import Any

import torch

from protein_llm_nemo.tokenizer import IGNORE_INDEX

__all__ = ["fill_padded_vocab_", "qwen3_gpt_model_class"]


def fill_padded_vocab_(logits: torch.Tensor, real_vocab_size: int, tp_rank: int = 0) -> torch.Tensor:
    """Set, in place, the logits of padded vocabulary rows (global id >= `real_vocab_size`) of this rank's
    vocabulary shard `[..., V/TP]` to -inf, so they take no probability mass.

    Not recorded by autograd on purpose: at a -inf logit the cross entropy's gradient is already 0 (softmax
    0, never a target), and a recorded in-place fill would copy the whole logits gradient in backward."""
    shard = logits.shape[-1]
    first_padded = max(real_vocab_size - tp_rank * shard, 0)
    if first_padded < shard:
        with torch.no_grad():
            logits.detach()[..., first_padded:].fill_(float("-inf"))
    return logits


@functools.cache
def qwen3_gpt_model_class() -> type:
    """`Qwen3GPTModel`, defined on first use: megatron-core takes seconds to import, and light tools
    (configs, launchers) import the model modules."""
    from megatron.core.models.gpt import GPTModel

    class Qwen3GPTModel(GPTModel):
        """megatron's `GPTModel` whose `labels=...` loss is the cross entropy over the real vocabulary.

        `forward(..., labels=labels [B, S])` returns the per-token loss `[B, S]` (fp32), 0 where the label is
        IGNORE_INDEX (those positions are not projected to the vocabulary at all). The logits stay in
        megatron's `[S, B, V/TP]` layout, their padded tail is set to -inf in place, and megatron's
        (vocab-parallel, fused or not) cross entropy runs on them: no logits copy beyond the kernel's own fp32
        cast of bf16/fp16 logits."""

        def __init__(self, *args: Any, real_vocab_size: int, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not 0 < real_vocab_size <= self.vocab_size:
                raise ValueError(f"real_vocab_size={real_vocab_size} must be in (0, {self.vocab_size}]")
            self.real_vocab_size = real_vocab_size
            self._target_rows: torch.Tensor | None = None  # set during a forward that projects a subset

        def forward(self, *args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
            """With `labels`, only the positions that have a target (label != IGNORE_INDEX) are projected to
            the vocabulary: a prompt position's logits would only be thrown away, and the projection is the
            largest matmul of a small model (SFT responses and GRPO completions are a fraction of a row).
            The loss is still `[B, S]`, 0 at the other positions. Without sequence parallelism only (its
            hidden states are split over the sequence): then every position is projected, as megatron does."""
            if labels is None or not self.post_process or self.config.sequence_parallel:
                return super().forward(*args, labels=labels, **kwargs)
            has_target = labels.transpose(0, 1).reshape(-1) != IGNORE_INDEX  # megatron's [S, B] order
            rows = has_target.nonzero().squeeze(1)
            if rows.numel() in (0, has_target.numel()):
                return super().forward(*args, labels=labels, **kwargs)

            def project_target_rows(module: torch.nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
                hidden = inputs[0]  # [S, B, H] -> [N, 1, H]
                return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows).unsqueeze(1), *inputs[1:])

            handle = self.output_layer.register_forward_pre_hook(project_target_rows)
            self._target_rows = rows
            try:
                return super().forward(*args, labels=labels, **kwargs)
            finally:
                handle.remove()
                self._target_rows = None

        def compute_language_model_loss(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            tp_rank, tp_size = self.tp_group.rank(), self.tp_group.size()
            if logits.shape[-1] * tp_size != self.vocab_size:
                raise ValueError(
                    f"the loss needs this rank's vocabulary shard ({self.vocab_size // tp_size} columns), got "
                    f"{logits.shape[-1]}: build with parallel_output=True and leave runtime_gather_output unset"
                )
            fill_padded_vocab_(logits, self.real_vocab_size, tp_rank)
            rows = self._target_rows
            if rows is not None:  # logits [N, 1, V/TP] of the target positions only
                flat_labels = labels.transpose(0, 1).reshape(-1)
                loss = super().compute_language_model_loss(flat_labels.index_select(0, rows)[None], logits)
                full = loss.new_zeros(flat_labels.numel()).index_copy(0, rows, loss.reshape(-1))
                return full.view(labels.shape[1], labels.shape[0]).transpose(0, 1)
            loss = super().compute_language_model_loss(labels, logits)
            # megatron's kernels give IGNORE_INDEX positions the log-partition (or 0, TE's): 0 everywhere.
            return loss.masked_fill(labels == IGNORE_INDEX, 0.0)

    Qwen3GPTModel.__module__, Qwen3GPTModel.__qualname__ = __name__, "Qwen3GPTModel"
    return Qwen3GPTModel


def __getattr__(name: str) -> Any:
    if name == "Qwen3GPTModel":  # importable (and picklable) by name, built on first use
        return qwen3_gpt_model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
