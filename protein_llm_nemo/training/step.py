"""One optimizer step: micro-batches through megatron's pipeline schedule, gradient all-reduce and
per-token normalisation (`finalize_model_grads`), grad norms, NaN/Inf guard, clipping, update, lr step.

    forward_step = make_forward_step()
    out = train_step(chunks, optimizer, scheduler, microbatches, forward_step, seq_length, micro_batch_size,
                     clip_grad=1.0)

The pieces of `MegatronOptimizer.step()` are called one by one (`prepare_grads`, `get_grad_norm`,
`step_with_ready_grads`) so that a non-finite loss or grad norm skips the update, and so that clipping
runs here: megatron's `clip_grad_by_total_norm_fp32` asserts CUDA tensors. The total norm is megatron's
own (`get_grad_norm`: TP-duplicates and `shared` replicas counted once, reduced over model parallelism).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.models.parameter_groups import PARAMETER_GROUPS
from protein_llm_nemo.training.ddp import unwrap
from protein_llm_nemo.training.loss import loss_func_for
from protein_llm_nemo.training.microbatch import MicroBatch
from protein_llm_nemo.training.optimizer import strip_wrapper_prefix


@dataclass
class StepOutput:
    loss: float  # sum of response-token losses / their number, whole global batch
    loss_tokens: int  # response tokens of the global batch (all DP ranks)
    grad_norm: float  # total L2 norm before clipping
    group_grad_norms: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    learning_rates: dict[str, float] = field(default_factory=dict)
    reports: list[dict] = field(default_factory=list)  # every micro-batch's loss report (last pipeline stage)
    group_grad_norms_after: dict[str, float] = field(default_factory=dict)  # after routing and clipping


# -- the forward step megatron's schedules call ---------------------------------------------------------
def make_forward_step() -> Callable:
    """`forward_step(data_iterator, model) -> (output, loss_func)` for `get_forward_backward_func`; the
    iterator yields `MicroBatch`es. The model computes the loss itself (labels and loss mask given): on the
    last pipeline stage the output is the per-token loss `[B, S]` over the real vocabulary."""

    def forward_step(data_iterator, model):
        batch: MicroBatch = next(data_iterator)
        return model(**batch.model_inputs()), loss_func_for(batch.loss_mask)

    return forward_step


def configure_model_for_training(model_chunks: Sequence[torch.nn.Module], optimizer: Any = None) -> None:
    """Set the TransformerConfig hooks megatron's schedules read: per-token loss normalisation over the
    global batch, the gradient finaliser, and the loss scale of fp16 optimizers."""
    config = unwrap(model_chunks[0]).config
    config.calculate_per_token_loss = True
    config.finalize_model_grads_func = finalize_grads
    if optimizer is not None:
        config.grad_scale_func = optimizer.scale_loss
    config.no_sync_func = None  # one grad sync per step (the default would need overlap_grad_reduce)


def finalize_grads(model_chunks, num_tokens=None, **kwargs) -> None:
    """megatron's `finalize_model_grads` (DP all-reduce, embedding-tie sums, / global token count), then
    the sum of flamingo's pipeline-replicated resampler gradients over the pipeline group."""
    from megatron.core.distributed import finalize_model_grads

    finalize_model_grads(model_chunks, num_tokens, **kwargs)
    for chunk in model_chunks:
        unwrap(chunk).allreduce_pipeline_replicated_grads(main_grad=True)


# -- reductions ---------------------------------------------------------------------------------------
def reduce_loss_reports(reports: list[dict], device: torch.device) -> tuple[float, int]:
    """(sum/tokens, tokens) of the micro-batch reports over DP, broadcast from the last pipeline stage."""
    from megatron.core import parallel_state

    total = torch.zeros(2, dtype=torch.float64, device=device)
    for report in reports:
        total += report["loss_sum_and_tokens"].to(device=device, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total, group=parallel_state.get_data_parallel_group())
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            last = parallel_state.get_pipeline_model_parallel_last_rank()
            dist.broadcast(total, src=last, group=parallel_state.get_pipeline_model_parallel_group())
    loss_sum, tokens = float(total[0]), int(total[1])
    return (loss_sum / tokens if tokens else float("nan")), tokens


def group_grad_norms(model_chunks: Sequence[torch.nn.Module]) -> dict[str, float]:
    """L2 norm of the (finalised) gradients per parameter group (language_model, lora, bridge, gates,
    protein_tokens), each TP-sharded tensor counted once over TP and PP. Groups without trainable
    parameters are left out. Meaningless with the distributed optimizer (grads are reduce-scattered).

    Computed on the gradients' device: one `_foreach_norm` per group, one all-reduce and one host transfer
    for all groups together (a per-parameter `.cpu()` would sync the device hundreds of times)."""
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    from protein_llm_nemo.models.parameter_groups import parameter_group

    grads: list[list[torch.Tensor]] = [[] for _ in PARAMETER_GROUPS]
    present = [False] * len(PARAMETER_GROUPS)
    for chunk in model_chunks:
        for name, param in chunk.named_parameters():
            if not param.requires_grad:
                continue
            index = PARAMETER_GROUPS.index(parameter_group(strip_wrapper_prefix(name)))
            present[index] = True
            grad = getattr(param, "main_grad", None)
            if grad is None:
                grad = param.grad
            if grad is None or getattr(param, "shared", False):
                continue
            if not param_is_not_tensor_parallel_duplicate(param):
                continue
            grads[index].append(grad.detach())
    num_groups = len(PARAMETER_GROUPS)
    # [squares of each group, presence of each group]: filled on the device (a tensor built from a host list
    # would be a blocking copy), reduced and read back together.
    both = torch.zeros(2 * num_groups, dtype=torch.float64, device=_reduce_device())
    for index, group_grads in enumerate(grads):
        if group_grads:
            both[index] = _sum_of_squares(group_grads)
        if present[index]:
            both[num_groups + index] = 1.0
    if dist.is_initialized():
        dist.all_reduce(both, group=parallel_state.get_model_parallel_group())
    values = both.tolist()  # the one host transfer
    return {
        group: math.sqrt(values[i]) for i, group in enumerate(PARAMETER_GROUPS) if values[num_groups + i] > 0
    }


def _sum_of_squares(grads: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squared entries of `grads`, fp64, on their device: fused per-tensor norms (bf16/fp16 grads
    accumulated in fp32, fp64 grads in fp64), no host sync."""
    narrow = [g for g in grads if g.dtype != torch.float64]
    wide = [g for g in grads if g.dtype == torch.float64]
    norms = []
    if narrow:
        norms.append(torch.stack(torch._foreach_norm(narrow, 2.0, dtype=torch.float32)).double())
    if wide:
        norms.append(torch.stack(torch._foreach_norm(wide, 2.0)))
    return torch.cat(norms).pow(2).sum()


def _reduce_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


@torch.no_grad()
def clip_gradients(optimizer: Any, max_norm: float, total_norm: float) -> float:
    """Scale the optimizer's gradients so their global norm is at most `max_norm`; returns the factor."""
    if max_norm <= 0 or total_norm <= max_norm:
        return 1.0
    coeff = max_norm / (total_norm + 1.0e-6)
    grads = [p.grad for p in optimizer.get_parameters() if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, coeff)
    return coeff


def learning_rates(optimizer: Any) -> dict[str, float]:
    """lr of the LLM/LoRA groups and of the bridge groups (first param group of each kind)."""
    out: dict[str, float] = {}
    for group in optimizer.param_groups:
        out.setdefault(group.get("lr_group", "main"), float(group["lr"]))
    return out


# -- the step ---------------------------------------------------------------------------------------------
def train_step(
    model_chunks: Sequence[torch.nn.Module],
    optimizer: Any,
    scheduler: Any,
    microbatches: Sequence[MicroBatch],
    forward_step: Callable,
    seq_length: int,
    micro_batch_size: int,
    clip_grad: float = 1.0,
    grad_norms_by_group: bool = True,
    router: Any = None,
) -> StepOutput:
    """One optimizer step. `router` (GRPO's `GradientRouter`) may rescale each parameter group's gradient
    before the update (`adjust`) and hold groups still (`before_update` / `after_update`); the per-group
    norms after it and the global clip are in `StepOutput.group_grad_norms_after`."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    for chunk in model_chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    reports = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter(microbatches),
        model=list(model_chunks),
        num_microbatches=len(microbatches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=False,
    )
    loss, tokens = reduce_loss_reports(reports, _reduce_device())
    groups = group_grad_norms(model_chunks) if grad_norms_by_group or router is not None else {}
    scales = router.adjust(model_chunks, groups) if router is not None else {}
    found_inf = optimizer.prepare_grads()
    grad_norm = optimizer.get_grad_norm()
    grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    rates = learning_rates(optimizer)
    out = StepOutput(loss, tokens, grad_norm, groups, skipped=True, learning_rates=rates, reports=reports)
    if found_inf or not math.isfinite(loss) or not math.isfinite(grad_norm):
        return out
    coeff = clip_gradients(optimizer, clip_grad, grad_norm)
    if router is not None:
        router.before_update(optimizer)
    optimizer.step_with_ready_grads()
    if router is not None:
        router.after_update(optimizer)
    scheduler.step(1)
    out.skipped = False
    out.group_grad_norms_after = {g: n * scales.get(g, 1.0) * coeff for g, n in groups.items()}
    return out


@torch.no_grad()
def evaluate(
    model_chunks: Sequence[torch.nn.Module],
    microbatches: Sequence[MicroBatch],
    forward_step: Callable,
    seq_length: int,
    micro_batch_size: int,
) -> tuple[float, int]:
    """Validation loss over response tokens of all `microbatches` (all DP ranks): (loss, tokens)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    for chunk in model_chunks:
        chunk.eval()
    try:
        reports = []
        if microbatches:
            reports = get_forward_backward_func()(
                forward_step_func=forward_step,
                data_iterator=iter(microbatches),
                model=list(model_chunks),
                num_microbatches=len(microbatches),
                seq_length=seq_length,
                micro_batch_size=micro_batch_size,
                forward_only=True,
            )
        return reduce_loss_reports(reports, _reduce_device())
    finally:
        for chunk in model_chunks:
            chunk.train()
