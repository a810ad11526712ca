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
    weights = valid.double()
    count = weights.sum(dim=1, keepdim=True)
    total = (rewards * weights).sum(dim=1, keepdim=True)
    squares = (rewards.square() * weights).sum(dim=1, keepdim=True)
    if leave_one_out:
        others = count - weights  # the sample itself left out (only when it is valid)
        mean = (total - rewards * weights) / others.clamp(min=1)
        mean_square = (squares - rewards.square() * weights) / others.clamp(min=1)
    else:
        others = count.expand_as(rewards)
        mean = (total / count.clamp(min=1)).expand_as(rewards)
        mean_square = (squares / count.clamp(min=1)).expand_as(rewards)
    variance = (mean_square - mean.square()).clamp(min=0) * others / (others - 1).clamp(min=1)
    std = torch.where(others > 1, variance.sqrt(), torch.zeros_like(variance))
    advantages = rewards - mean
    if normalize_std:
        advantages = torch.where(std > 0, advantages / (std + eps), advantages)
    zero = zero_variance_groups(rewards, valid)
    advantages = torch.where(zero[:, None] | ~valid, torch.zeros_like(advantages), advantages)
    return advantages.float(), zero
