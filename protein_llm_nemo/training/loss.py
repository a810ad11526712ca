"""The loss function megatron's schedules call on the per-token losses of a micro-batch.

The per-token losses come from the model itself (`model(..., labels=, loss_mask=)`): the Qwen3 `GPTModel`
(`models.qwen3_gpt.Qwen3GPTModel`) computes the cross entropy over the real vocabulary on its vocab-parallel
`[S, B, V/TP]` logits, and `ProteinLLMModel` zeroes the positions whose `loss_mask` is 0.

The loss of a global batch is (sum of per-token losses over every response token of the global batch) /
(number of those tokens): each micro-batch returns its *sum* and its token count; megatron's
`finalize_model_grads` divides the accumulated gradients by the token count all-reduced over data
parallelism (`TransformerConfig.calculate_per_token_loss=True`). Gradient accumulation and data
parallelism then give the gradients of one big batch (a per-micro-batch mean would not).
"""

from __future__ import annotations

from functools import partial

import torch


def summed_loss(loss_mask: torch.Tensor, losses: torch.Tensor):
    """megatron loss-function contract for `calculate_per_token_loss`: (sum, token count, report)."""
    mask = loss_mask.to(losses.dtype)
    total = (losses * mask).sum()
    count = mask.sum()
    report = torch.stack([total.detach().clone(), count.detach()])
    return total, count.to(torch.int), {"loss_sum_and_tokens": report}


def loss_func_for(loss_mask: torch.Tensor):
    """The `loss_func` a forward-step returns beside the model output (per-token losses `[B, S]`)."""
    return partial(summed_loss, loss_mask)
