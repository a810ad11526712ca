"""The GRPO policy loss (NeMo-RL `ClippedPGLossFn` semantics) and its aggregation over the global batch.

Per response token t of a sample with advantage A:

    r_t      = exp(logp_t - logp_old_t)                          ratio to the policy that generated the batch
    pg_t     = max(-A r_t, -A clip(r_t, 1 - eps_low, 1 + eps_high))      PPO clipping (clip-higher: DAPO)
    pg_t     = min(pg_t, -c A)   where A < 0                     dual clip (Ye et al. 2020), when c is given
    kl_t     = exp(q) - q - 1,  q = clamp(logp_ref_t - logp_t, +-20), clamped to +-10       k3 (Schulman)
    loss_t   = w_t pg_t + beta kl_t

w_t = exp(logp_old_t - logp_gen_t) (detached) with the importance-sampling correction on (the generator's and
the trainer's log-probs of the same token differ by numerics), else 1. It corrects the policy-gradient term
only, as NeMo-RL's actor weights and TRL's vLLM ratio do: the KL to the reference is not reweighted.
logp_old is the training forward's own log-prob, detached: GRPO takes one optimizer step per batch, so the
policy that generated the batch is the one being differentiated and r = 1 exactly (TRL's path for one
iteration per batch). A separate forward-only pass before the update would compute the same values at the cost
of a third forward per step; callers that update several times per batch pass their old log-probs.

Aggregation (`loss_agg_mode`, verl's names): the returned (sum, count) pair follows megatron's
`calculate_per_token_loss` contract: every micro-batch returns its sum and count, the schedule adds them up
over micro-batches and data-parallel ranks and divides once, so gradient accumulation and DP give exactly the
global batch's loss.
- `token-mean`: sum of loss_t over every valid token / number of valid tokens of the global batch (NeMo-RL's
  default, DAPO; TRL `loss_type="dapo"`).
- `seq-mean-token-mean`: each sample's mean over its tokens, averaged over samples (the GRPO paper; TRL
  `loss_type="grpo"`).
- `seq-mean-token-sum-norm`: each sample's token sum / a constant (`max_new_tokens`), averaged over samples
  (Dr. GRPO; TRL `loss_type="dr_grpo"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["LOSS_AGG_MODES", "METRIC_NAMES", "PolicyLossConfig", "policy_loss"]

LossAggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
LOSS_AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
# Sums reported by every micro-batch (divided by the token count for the logs).
METRIC_NAMES: tuple[str, ...] = (
    "policy_loss",
    "kl",
    "clip_fraction",
    "ratio",
    "token_mult_prob_error",
    "entropy",
)


@dataclass(frozen=True)
class PolicyLossConfig:
    """eps_low / eps_high: the clip range (0.2 / 0.28: DAPO's clip-higher); dual_clip: c > 1 or None;
    beta: the KL coefficient (0 drops the reference pass); kl_input_clamp / kl_output_clamp: NeMo-RL's
    clamps of the k3 estimator; loss_agg_mode: see the module docstring; max_new_tokens: Dr. GRPO's
    normaliser; importance_sampling_correction: weight each token's policy-gradient term by
    exp(logp_old - logp_gen)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = None
    beta: float = 0.01
    kl_input_clamp: float = 20.0
    kl_output_clamp: float = 10.0
    loss_agg_mode: LossAggMode = "token-mean"
    max_new_tokens: int = 256
    importance_sampling_correction: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low < 1 and self.eps_high >= 0):
            raise ValueError(
                f"clip range needs 0 <= eps_low < 1 and eps_high >= 0, got {self.eps_low}, {self.eps_high}"
            )
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ValueError(f"dual_clip must be > 1 (or None), got {self.dual_clip}")
        if self.beta < 0:
            raise ValueError(f"beta (KL coefficient) must be >= 0, got {self.beta}")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {self.loss_agg_mode!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    sample_ids: torch.Tensor,
    config: PolicyLossConfig,
    ref_logprobs: torch.Tensor | None = None,
    generation_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss sum, count, metric sums `[len(METRIC_NAMES) + 1]`) of one micro-batch.

    All tensors are `[B, S]` over token positions (the log-prob of the token at t+1 given t, aligned with
    labels); `mask` is 1 on response tokens that train (0 on prompts, padding and overlong-filtered
    samples); `advantages` holds each token's sample advantage; `sample_ids` each token's sample index within
    the micro-batch (any value where `mask` is 0). The last metric entry is the number of valid tokens.
    `old_logprobs` None: the policy that generated the batch is the one being differentiated (one update per
    batch), so its log-probs are `logprobs` detached."""
    if old_logprobs is None:
        old_logprobs = logprobs.detach()
    mask = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1.0 - config.eps_low, 1.0 + config.eps_high)
    pg = torch.maximum(-advantages * ratio, -advantages * clipped)
    if config.dual_clip is not None:
        pg = torch.where(advantages < 0, torch.minimum(pg, -advantages * config.dual_clip), pg)
    per_token = pg
    if config.importance_sampling_correction:
        if generation_logprobs is None:
            raise ValueError("importance_sampling_correction needs the generation log-probs")
        per_token = per_token * torch.exp(old_logprobs - generation_logprobs).detach()
    kl = torch.zeros_like(logprobs)
    if config.beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs the reference policy's log-probs")
        q = (ref_logprobs - logprobs).clamp(-config.kl_input_clamp, config.kl_input_clamp)
        kl = (torch.exp(q) - q - 1).clamp(-config.kl_output_clamp, config.kl_output_clamp)
        per_token = per_token + config.beta * kl
    per_token = per_token * mask
    tokens = mask.sum()
    if config.loss_agg_mode == "token-mean":
        loss_sum, count = per_token.sum(), tokens
    else:
        # per-sample sums (samples are rows, or segments of packed rows)
        ids = torch.where(mask > 0, sample_ids.long(), torch.zeros_like(sample_ids, dtype=torch.long))
        size = int(ids.max()) + 1 if ids.numel() else 1
        sums = torch.zeros(size, dtype=per_token.dtype, device=per_token.device).index_add(
            0, ids.flatten(), per_token.flatten()
        )
        lengths = torch.zeros(size, dtype=mask.dtype, device=mask.device).index_add(
            0, ids.flatten(), mask.flatten()
        )
        present = lengths > 0
        if config.loss_agg_mode == "seq-mean-token-mean":
            loss_sum = (sums[present] / lengths[present]).sum()
        else:
            loss_sum = sums[present].sum() / config.max_new_tokens
        count = present.sum().to(per_token.dtype)
    with torch.no_grad():
        clip_hit = ((ratio < 1.0 - config.eps_low) & (advantages < 0)) | (
            (ratio > 1.0 + config.eps_high) & (advantages > 0)
        )
        gen = generation_logprobs if generation_logprobs is not None else old_logprobs
        metrics = torch.stack(
            [
                (pg * mask).sum(),
                (kl * mask).sum(),
                (clip_hit.to(mask.dtype) * mask).sum(),
                (ratio * mask).sum(),
                (torch.exp((logprobs - gen).abs()) * mask).sum(),
                (-logprobs * mask).sum(),  # the sampled tokens' surprisal: an entropy estimate
                tokens,
            ]
        )
    return loss_sum, count, metrics
