"""One GRPO step: rollouts (dynamic sampling) -> group advantages -> micro-batches -> the reference's
log-probs (forward only) -> the clipped policy-gradient update (its own forward gives the old log-probs) ->
metrics.

Every rank of the layout runs it: generation shards prompts over data parallelism and gathers the groups,
so every rank holds the same groups and advantages; data-parallel rank r then trains samples r, r + DP, ...
The policy runs without dropout throughout (eval mode): the reference's log-probs are deterministic.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.generation import SamplingParams
from protein_llm_nemo.runtime import get_logger
from protein_llm_nemo.training.ddp import unwrap
from protein_llm_nemo.training.grpo.advantages import group_advantages
from protein_llm_nemo.training.grpo.batching import GRPOMicroBatch, build_microbatches, flatten_groups
from protein_llm_nemo.training.grpo.config import GRPOSection
from protein_llm_nemo.training.grpo.dynamic_sampling import GroupSampler
from protein_llm_nemo.training.grpo.logprobs import token_logprobs
from protein_llm_nemo.training.grpo.loss import METRIC_NAMES, PolicyLossConfig, policy_loss
from protein_llm_nemo.training.grpo.reference import ReferencePolicy
from protein_llm_nemo.training.grpo.rollout import PromptBuilder, collect_groups
from protein_llm_nemo.training.grpo.routing import GradientRouter
from protein_llm_nemo.training.step import learning_rates, train_step

__all__ = ["GRPOParts", "grpo_step", "make_grpo_forward_step"]

logger = get_logger(__name__)


def make_grpo_forward_step(config: PolicyLossConfig) -> Callable:
    """`forward_step(data_iterator, model)` for megatron's schedules: the model's per-token loss (minus the
    log-probs of the labels, real vocabulary) into `policy_loss`; (sum, count) per micro-batch."""

    def forward_step(data_iterator: Any, model: torch.nn.Module):
        batch: GRPOMicroBatch = next(data_iterator)
        output = model(**batch.model_inputs())

        def loss_func(per_token_nll: torch.Tensor):
            loss_sum, count, metrics = policy_loss(
                -per_token_nll.float(),
                batch.old_logprobs,
                batch.advantages,
                batch.loss_mask,
                batch.sample_ids,
                config,
                ref_logprobs=batch.ref_logprobs,
                generation_logprobs=batch.generation_logprobs,
            )
            report = {
                "loss_sum_and_tokens": torch.stack([loss_sum.detach(), count.detach()]),
                "grpo_metrics": metrics,
            }
            return loss_sum, count.to(torch.int), report

        return output, loss_func

    return forward_step


@dataclass
class GRPOParts:
    """What a GRPO step uses; built by `setup_grpo`."""

    model_chunks: list[torch.nn.Module]
    optimizer: Any
    scheduler: Any
    sampler: GroupSampler
    prompt_builder: PromptBuilder
    tokenizer: Any
    reward_fn: Callable
    grpo: GRPOSection
    router: GradientRouter
    micro_batch_size: int
    clip_grad: float
    pad_id: int
    reference: ReferencePolicy | None = None
    embed: Callable | None = None
    seq_length: int | None = None
    seed: int = 0
    timers: dict[str, float] = field(default_factory=dict)


def grpo_step(parts: GRPOParts, step: int) -> dict[str, Any]:
    """One optimizer step; returns its metrics (the same on every rank)."""
    from megatron.core import parallel_state

    config = parts.grpo
    model = unwrap(parts.model_chunks[0])
    for chunk in parts.model_chunks:
        chunk.eval()  # no dropout anywhere in GRPO (see the module docstring)
    timers: dict[str, float] = {}
    tick = time.perf_counter()
    sampling = SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_new_tokens=config.max_new_tokens,
        n=config.num_generations,
        seed=parts.seed * 100_003 + step,
    )

    def generate_groups(records):
        return collect_groups(
            model, records, parts.prompt_builder, sampling, parts.reward_fn, parts.tokenizer, parts.embed
        )

    groups, stats = parts.sampler.next_step(generate_groups)
    timers["generation"] = time.perf_counter() - tick
    rewards = torch.stack([g.rewards for g in groups])
    advantages, zero = group_advantages(
        rewards, normalize_std=config.normalize_std, leave_one_out=config.leave_one_out_baseline
    )
    samples = flatten_groups(groups, list(advantages), config.overlong_filtering)
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    if len(samples) % (dp_size * parts.micro_batch_size):
        raise ValueError(
            f"{len(samples)} samples per step (num_prompts_per_step x num_generations) must be a multiple of "
            f"data-parallel size {dp_size} x micro_batch_size {parts.micro_batch_size}"
        )
    summary = _rollout_metrics(groups, rewards, zero, stats)
    parts.router.step = step  # the two-stage schedule counts optimizer steps, skipped ones included
    if not any(s.trains for s in samples):
        # Every sample was cut by max_new_tokens and overlong filtering took it out of the loss: no token to
        # train (a 0 / 0 loss). Skip the update, loudly, rather than step on NaN gradients.
        logger.warning(
            "step %d: every sample was cut at max_new_tokens=%d and filtered out of the loss: no update "
            "(raise grpo.max_new_tokens, or set grpo.overlong_filtering=false)",
            step + 1,
            config.max_new_tokens,
        )
        metrics = dict.fromkeys(METRIC_NAMES, 0.0) | {"trained_tokens": 0.0}
        return {
            "loss": 0.0,
            "skipped": True,
            "skipped_no_trained_tokens": 1,
            "grad_norm": 0.0,
            "grad_norm/before": {},
            "grad_norm/after": {},
            "learning_rates": learning_rates(parts.optimizer),
            **summary,
            **metrics,
            "timers": timers | {"logprobs": 0.0, "training": 0.0},
        }
    width = parts.seq_length or max(len(s.prompt_ids) + len(s.completion) for s in samples) - 1
    microbatches = build_microbatches(
        samples[dp_rank::dp_size], parts.micro_batch_size, parts.pad_id, parts.embed, width
    )
    device = next(model.parameters()).device
    microbatches = [mb.to(device) for mb in microbatches]
    # The old policy's log-probs are the update's own forward, detached (one update per batch: see
    # `loss.policy_loss`); only the reference needs a pass of its own.
    tick = time.perf_counter()
    if config.beta > 0 and parts.reference is not None:
        with parts.reference.active():
            ref = token_logprobs(parts.model_chunks, microbatches, width, parts.micro_batch_size)
        microbatches = [
            dataclasses.replace(mb, ref_logprobs=r if r is not None else torch.zeros_like(mb.loss_mask))
            for mb, r in zip(microbatches, ref, strict=True)
        ]
    timers["logprobs"] = time.perf_counter() - tick
    tick = time.perf_counter()
    out = train_step(
        parts.model_chunks,
        parts.optimizer,
        parts.scheduler,
        microbatches,
        make_grpo_forward_step(config.loss_config()),
        width,
        parts.micro_batch_size,
        clip_grad=parts.clip_grad,
        router=parts.router,
    )
    timers["training"] = time.perf_counter() - tick
    metrics = _reduce_metrics(out.reports, device)
    return {
        "loss": out.loss,
        "skipped": out.skipped,
        "skipped_no_trained_tokens": 0,
        "grad_norm": out.grad_norm,
        "grad_norm/before": out.group_grad_norms,
        "grad_norm/after": out.group_grad_norms_after,
        "learning_rates": out.learning_rates,
        **summary,
        **metrics,
        "timers": timers,
    }


def _rollout_metrics(groups, rewards: torch.Tensor, zero: torch.Tensor, stats) -> dict[str, Any]:
    """Rewards (mean, std, every component), format compliance, dynamic sampling and completion lengths."""
    generated = sum(len(c) for g in groups for c in g.completions)
    components = sorted({n for g in groups for n in g.components})
    return {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()),
        **{
            f"reward/{name}": float(
                torch.stack([g.components[name] for g in groups if name in g.components]).mean()
            )
            for name in components
        },
        "format_compliance": float(
            torch.cat([g.format_ok.float() for g in groups if g.format_ok is not None]).mean()
        ),
        "zero_variance_fraction": stats.zero_variance_fraction,
        "generation_rounds": stats.rounds,
        "trained_zero_variance_groups": int(zero.sum()),
        "response_length/mean": generated / max(rewards.numel(), 1),
        "truncated_fraction": float(torch.cat([g.truncated.float() for g in groups]).mean()),
        "generated_tokens": generated,
    }


def _reduce_metrics(reports: list[dict], device: torch.device) -> dict[str, float]:
    """The micro-batches' metric sums over data parallelism, from the last pipeline stage, per token."""
    from megatron.core import parallel_state

    total = torch.zeros(len(METRIC_NAMES) + 1, dtype=torch.float64, device=device)
    for report in reports:
        total += report["grpo_metrics"].to(device=device, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total, group=parallel_state.get_data_parallel_group())
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            last = parallel_state.get_pipeline_model_parallel_last_rank()
            dist.broadcast(total, src=last, group=parallel_state.get_pipeline_model_parallel_group())
    tokens = float(total[-1])
    return {name: float(total[i]) / max(tokens, 1.0) for i, name in enumerate(METRIC_NAMES)} | {
        "trained_tokens": tokens
    }
