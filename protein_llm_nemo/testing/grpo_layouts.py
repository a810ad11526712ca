"""Rank body of the GRPO layout check: `grpo_layout_run` runs `grpo_step` on the fixed groups of
`testing.grpo` at a TP/PP/DP layout and micro-batch size, from the full parameters of the reference layout;
returns losses, gradients and updated weights (or, with a reference given, their largest differences to it)."""

from __future__ import annotations

from typing import Any

import torch

from protein_llm_nemo.testing.grpo import (
    EPS_HIGH,
    EPS_LOW,
    GENERATIONS,
    MAX_NEW_TOKENS,
    SEED,
    bridge_config,
    build_policy,
    build_training_parts,
    fixed_groups,
    protein_embed,
)
from protein_llm_nemo.testing.tiny import PAD_ID, from_portable, to_portable

__all__ = ["grpo_layout_run"]


class _FixedGroups:
    """A `GroupSampler` stand-in: every step trains the same groups (no generation)."""

    def __init__(self, groups: list[Any]) -> None:
        self.groups = groups

    def next_step(self, generate_groups):
        from protein_llm_nemo.training.grpo.dynamic_sampling import SamplingStats

        return list(self.groups), SamplingStats(rounds=1, prompts_generated=len(self.groups))


def grpo_layout_run(
    rank: int,
    world_size: int,
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    micro_batch_sizes: list[int],
    modes: list[str],
    reference: dict[str, Any] | None = None,
    steps: int = 2,
    bridge_name: str = "mlp",
    lr: float = 1e-3,
) -> dict[str, Any]:
    """`steps` GRPO steps (beta > 0, overlong filtering on) per loss aggregation mode and micro-batch size at
    this layout (data parallelism: the ranks left over).

    Without `reference` (TP=1, PP=1, DP=1): `{"init": full parameters, mode: {micro_batch_size: [per step:
    loss, grad_norm, kl, full gradients, full updated weights]}}`. With `reference` (`{"init": ..., mode:
    [per step ...]}`): the same steps from its initial parameters, as largest |differences| to it."""
    from megatron.core import parallel_state

    from protein_llm_nemo.models.parallel_weights import global_parameter_name, load_full_parameters
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
    from protein_llm_nemo.training.grpo.config import GRPOSection
    from protein_llm_nemo.training.grpo.reference import ReferencePolicy
    from protein_llm_nemo.training.grpo.routing import GradientRouter
    from protein_llm_nemo.training.grpo.step import GRPOParts, grpo_step

    initialize_distributed(
        ParallelConfig(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        ),
        seed=SEED,
    )
    reference = from_portable(reference) if reference is not None else None
    uses_encoder = bridge_config(bridge_name).uses_encoder
    results: dict[str, Any] = {"data_parallel_size": parallel_state.get_data_parallel_world_size()}
    for mode in modes:
        results[mode] = {}
        for micro_batch_size in micro_batch_sizes:
            model = build_policy(bridge_name, SEED)
            if reference is not None:
                load_full_parameters(model, reference["init"])
            else:
                results["init"] = {n: p.detach().clone() for n, p in model.named_parameters()}
            chunks, optimizer, scheduler = build_training_parts(model, lr)
            grpo = GRPOSection(
                num_prompts_per_step=2,
                num_generations=GENERATIONS,
                max_new_tokens=MAX_NEW_TOKENS,
                beta=0.05,
                loss_agg_mode=mode,
                eps_low=EPS_LOW,
                eps_high=EPS_HIGH,
                overlong_filtering=True,
            )
            parts = GRPOParts(
                model_chunks=chunks,
                optimizer=optimizer,
                scheduler=scheduler,
                sampler=_FixedGroups(fixed_groups(bridge_name)),
                prompt_builder=None,
                tokenizer=None,
                reward_fn=None,
                grpo=grpo,
                router=GradientRouter(0.0),
                micro_batch_size=micro_batch_size,
                clip_grad=0.0,
                pad_id=PAD_ID,
                reference=ReferencePolicy(model),
                embed=protein_embed if uses_encoder else None,
            )
            trace = []
            for step in range(steps):
                out = grpo_step(parts, step)
                if out["skipped"]:
                    raise RuntimeError(f"{mode} micro_batch_size={micro_batch_size}: step {step} was skipped")
                named = {global_parameter_name(model, n): (n, p) for n, p in model.named_parameters()}
                trace.append(
                    {
                        "loss": out["loss"],
                        "grad_norm": out["grad_norm"],
                        "kl": out["kl"],
                        "grads": {
                            k: (n, p.main_grad.clone()) for k, (n, p) in named.items() if p.requires_grad
                        },
                        "weights": {k: (n, p.detach().clone()) for k, (n, p) in named.items()},
                    }
                )
            if reference is None:
                results[mode][micro_batch_size] = [
                    {
                        **{k: t[k] for k in ("loss", "grad_norm", "kl")},
                        "grads": {k: v for k, (_, v) in t["grads"].items()},
                        "weights": {k: v for k, (_, v) in t["weights"].items()},
                    }
                    for t in trace
                ]
            else:
                results[mode][micro_batch_size] = [
                    _step_diffs(model, t, ref) for t, ref in zip(trace, reference[mode], strict=True)
                ]
    return to_portable(results)


def _step_diffs(model, step: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Largest |difference| of one step's loss, grad norm, KL, gradients and weights (this rank's shards) to
    the full reference."""
    from protein_llm_nemo.models.parallel_weights import shard_full_tensor

    def largest(local: dict[str, tuple[str, torch.Tensor]], full: dict[str, torch.Tensor]) -> float:
        return max(
            float((tensor - shard_full_tensor(model, name, full[key])).abs().max())
            for key, (name, tensor) in local.items()
        )

    return {
        **{k: abs(step[k] - reference[k]) for k in ("loss", "grad_norm", "kl")},
        "grads": largest(step["grads"], reference["grads"]),
        "weights": largest(step["weights"], reference["weights"]),
        "compared_grads": len(step["grads"]),
    }
