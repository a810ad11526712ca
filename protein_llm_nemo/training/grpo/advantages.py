"""Group-relative advantages (GRPO): a leave-one-out baseline per prompt group, optional std normalisation,
and the zero-variance groups that carry no gradient.

    advantages, zero_variance = group_advantages(rewards [P, G], valid [P, G], normalize_std=True)

Semantics (NeMo-RL's `calculate_baseline_and_std_per_prompt`, RLOO): the baseline of sample i is the mean
reward of the other valid samples of its group, its std their sample standard deviation (Bessel-corrected);
A_i = (r_i - b_i) / (std_i + eps) when std_i > 0 (GRPO), or r_i - b_i without std normalisation (Dr. GRPO).
A group with at most one valid sample gets A = 0. A group whose valid rewards are all equal gives every
sample A = 0 exactly: no gradient, which dynamic sampling avoids computing at all.
"""

from __future__ import annotations

import torch

__all__ = ["group_advantages", "zero_variance_groups"]


def zero_variance_groups(rewards: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """`[P]`: True where a group's valid rewards are all equal (or it has fewer than two valid samples)."""
    valid = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid.bool()
    high = torch.where(valid, rewards, torch.full_like(rewards, float("-inf"))).amax(dim=1)
    low = torch.where(valid, rewards, torch.full_like(rewards, float("inf"))).amin(dim=1)
    return (valid.sum(dim=1) < 2) | (high <= low)


def group_advantages(
    rewards: torch.Tensor,
    valid: torch.Tensor | None = None,
    normalize_std: bool = True,
    leave_one_out: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages `[P, G]` of rewards `[P, G]` (prompt groups x samples), and the zero-variance groups `[P]`."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [prompts, samples_per_prompt], got {tuple(rewards.shape)}")
    rewards = rewards.double()
    valid = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid.bool()
    size = rewards.shape[1]
    # pool[p, i, j]: sample j is in sample i's baseline (its group's valid samples, i itself left out).
    pool = valid[:, None, :].expand(-1, size, -1)
    if leave_one_out:
        pool = pool & ~torch.eye(size, dtype=torch.bool, device=rewards.device)
    values = rewards[:, None, :].expand(-1, size, -1)
    others = pool.sum(dim=-1)
    mean = torch.where(pool, values, 0.0).sum(dim=-1) / others.clamp(min=1)
    # Two passes (deviations from the mean), not E[x^2] - E[x]^2: the latter leaves a ~1e-9 "std" where the
    # others are all equal (rewards such as 0.1 are inexact), and dividing by it made advantages of ~1e6.
    deviations = torch.where(pool, values - mean[..., None], 0.0)
    variance = deviations.square().sum(dim=-1) / (others - 1).clamp(min=1)
    high = torch.where(pool, values, float("-inf")).amax(dim=-1)
    low = torch.where(pool, values, float("inf")).amin(dim=-1)
    spread = (others > 1) & (high > low)  # exactly: equal others have std 0, whatever the rounding
    std = torch.where(spread, variance.sqrt(), torch.zeros_like(variance))
    advantages = rewards - mean
    if normalize_std:
        advantages = torch.where(spread, advantages / (std + eps), advantages)
    zero = zero_variance_groups(rewards, valid)
    advantages = torch.where(zero[:, None] | ~valid, torch.zeros_like(advantages), advantages)
    return advantages.float(), zero
