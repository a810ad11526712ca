"""Forward and forward-backward passes of a (tiny) ProteinLLM through megatron's own pipeline schedule,
as the tests drive them at every TP/PP layout."""

from __future__ import annotations

from typing import Any

import torch

from protein_llm_nemo.models.parallel_weights import global_parameter_name

__all__ = [
    "finalize_tensor_parallel_grads",
    "pipeline_logits",
    "pipeline_loss_backward",
    "trainable_grads",
]


def _model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "protein_embeddings": batch["protein_embeddings"],
        "protein_mask": batch["protein_mask"],
    }


def pipeline_logits(model, batch: dict[str, Any]) -> torch.Tensor | None:
    """Logits [B, S, V] through megatron's pipeline schedule (last stage; None elsewhere)."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    tokens = batch["input_ids"]

    def forward_step(data_iterator, step_model):
        data = next(data_iterator)
        output = step_model(
            data["input_ids"], data["position_ids"], None, runtime_gather_output=True, **_model_inputs(data)
        )

        def keep(output_tensor, non_loss_data=True):
            return output_tensor

        return output, keep

    with torch.no_grad():
        outputs = get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iter([batch]),
            model=[model],
            num_microbatches=1,
            seq_length=tokens.shape[1],
            micro_batch_size=tokens.shape[0],
            forward_only=True,
            collect_non_loss_data=True,
        )
    return outputs[0] if parallel_state.is_pipeline_last_stage() else None


def pipeline_loss_backward(model, batch: dict[str, Any]) -> float | None:
    """Masked mean token loss, forward and backward through the pipeline schedule; gradients accumulate."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    tokens = batch["input_ids"]

    def forward_step(data_iterator, step_model):
        data = next(data_iterator)
        output = step_model(
            data["input_ids"],
            data["position_ids"],
            None,
            labels=data["labels"],
            loss_mask=data["loss_mask"],
            **_model_inputs(data),
        )

        def loss_func(per_token_loss):
            loss = per_token_loss.sum() / data["loss_mask"].sum()
            return loss, {"loss": loss.detach()}

        return output, loss_func

    losses = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter([batch]),
        model=[model],
        num_microbatches=1,
        seq_length=tokens.shape[1],
        micro_batch_size=tokens.shape[0],
        forward_only=False,
    )
    model.allreduce_pipeline_replicated_grads()
    finalize_tensor_parallel_grads(model)
    if not parallel_state.is_pipeline_last_stage():
        return None
    return float(losses[0]["loss"])


def finalize_tensor_parallel_grads(model) -> None:
    """What megatron's `finalize_model_grads` does for TP-replicated parameters whose gradient is a
    per-rank partial sum: qk-layernorm weights (each rank normalises only its own heads)."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    if parallel_state.get_tensor_model_parallel_world_size() == 1:
        return
    for name, param in model.named_parameters():
        if param.grad is not None and ("q_layernorm" in name or "k_layernorm" in name):
            dist.all_reduce(param.grad, group=parallel_state.get_tensor_model_parallel_group())


def trainable_grads(model) -> dict[str, tuple[str, torch.Tensor | None]]:
    return {
        global_parameter_name(model, name): (name, param.grad)
        for name, param in model.named_parameters()
        if param.requires_grad
    }
