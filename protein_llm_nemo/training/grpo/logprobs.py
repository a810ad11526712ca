"""Per-token log-probabilities of GRPO micro-batches from the training forward (forward only, through
megatron's pipeline schedule): the reference policy's, for the KL term.

The model's own loss (`labels=`) is the cross entropy over the real vocabulary, so log p(token) = -loss: the
same computation as the update's forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["token_logprobs"]


@torch.no_grad()
def token_logprobs(
    model_chunks: Sequence[torch.nn.Module],
    microbatches: Sequence[Any],
    seq_length: int,
    micro_batch_size: int,
) -> list[torch.Tensor | None]:
    """`-loss [B, S]` per micro-batch on the last pipeline stage (0 where the loss mask is 0); None on the
    others (only the last stage computes the policy loss)."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    def forward_step(data_iterator: Any, model: torch.nn.Module):
        batch = next(data_iterator)
        output = model(**batch.model_inputs())

        def keep(output_tensor: torch.Tensor, non_loss_data: bool = True) -> torch.Tensor:
            return output_tensor

        return output, keep

    if not microbatches:
        return []
    outputs = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(microbatches),
        model=list(model_chunks),
        num_microbatches=len(microbatches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=True,
        collect_non_loss_data=True,
    )
    if not parallel_state.is_pipeline_last_stage():
        return [None] * len(microbatches)
    return [-output.float() for output in outputs]
