"""GRPO's group advantages and policy loss on hand-computed cases: the leave-one-out baseline and std, zero
variance, Dr. GRPO (no std), PPO clipping with clip-higher, dual clip, the k3 KL with its clamps, the three
aggregation modes, the importance-sampling weight, and the metrics."""

from __future__ import annotations

import math

import pytest
import torch

from protein_llm_nemo.training.grpo.advantages import group_advantages, zero_variance_groups
from protein_llm_nemo.training.grpo.loss import METRIC_NAMES, PolicyLossConfig, policy_loss


def test_leave_one_out_baseline_and_std_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [2.0, 0.0, 1.0, 3.0]])
    advantages, zero = group_advantages(rewards, normalize_std=True)
    assert zero.tolist() == [False, True, False]
    assert torch.equal(advantages[1], torch.zeros(4))  # no variance: no gradient
    # group 0, sample 0: others (0, 0, 1): mean 1/3, sample std sqrt(1/3)
    expected = (1 - 1 / 3) / (math.sqrt(1 / 3) + 1e-6)
    assert advantages[0, 0].item() == pytest.approx(expected, rel=1e-6)
    # group 2, sample 3: others (2, 0, 1): mean 1, sample std 1
    assert advantages[2, 3].item() == pytest.approx((3 - 1) / (1 + 1e-6), rel=1e-6)
    plain, _ = group_advantages(rewards, normalize_std=False)  # Dr. GRPO: r - leave-one-out mean
    assert plain[2].tolist() == pytest.approx([2 - 4 / 3, 0 - 2, 1 - 5 / 3, 3 - 1])
    # a group whose other samples agree: that sample's std is 0, its advantage is not divided
    lone, _ = group_advantages(torch.tensor([[1.0, 0.0, 0.0]]))
    assert lone[0, 0].item() == pytest.approx(1.0) and lone[0, 1].item() != pytest.approx(-0.5)


def test_zero_variance_and_invalid_samples():
    rewards = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    assert zero_variance_groups(rewards, valid).tolist() == [True, True]  # equal valid rewards / one valid
    advantages, _ = group_advantages(rewards, valid)
    assert torch.equal(advantages, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="prompts, samples_per_prompt"):
        group_advantages(torch.ones(4))


def _tokens(values):
    return torch.tensor([values], dtype=torch.float32)


def test_clipping_dual_clip_kl_and_importance_weight_by_hand():
    # one sample, three tokens; log-ratio log(1.5), log(0.5), 0
    old = torch.zeros(1, 3)
    logprobs = torch.log(_tokens([1.5, 0.5, 1.0]))
    mask = torch.ones(1, 3)
    ids = torch.zeros(1, 3, dtype=torch.long)
    positive = torch.ones(1, 3)
    config = PolicyLossConfig(eps_low=0.2, eps_high=0.28, beta=0.0)
    loss, count, _ = policy_loss(logprobs, old, positive, mask, ids, config)
    # A > 0: -min(r A, clip(r) A): -1.28, -0.5, -1.0 (clip-higher caps the gain at 1.28)
    assert count.item() == 3 and loss.item() == pytest.approx(-(1.28 + 0.5 + 1.0), rel=1e-6)
    negative = -positive
    loss, _, metrics = policy_loss(logprobs, old, negative, mask, ids, config)
    # A < 0: max(-r A, -clip(r) A) = 1.5, 0.8, 1.0
    assert loss.item() == pytest.approx(1.5 + 0.8 + 1.0, rel=1e-6)
    assert metrics[METRIC_NAMES.index("clip_fraction")].item() == 1  # the 0.5 token is clipped (A < 0)
    dual = PolicyLossConfig(eps_low=0.2, eps_high=0.28, beta=0.0, dual_clip=1.2)
    loss, _, _ = policy_loss(logprobs, old, negative, mask, ids, dual)
    assert loss.item() == pytest.approx(1.2 + 0.8 + 1.0, rel=1e-6)  # -c A caps the 1.5
    # k3 KL: q = ref - cur; exp(q) - q - 1, clamped
    ref = torch.log(_tokens([1.0, 1.0, 1.0]))
    with_kl = PolicyLossConfig(beta=0.5)
    loss_kl, _, metrics = policy_loss(logprobs, old, torch.zeros(1, 3), mask, ids, with_kl, ref_logprobs=ref)
    q = -logprobs
    kl = (torch.exp(q) - q - 1).sum().item()
    assert loss_kl.item() == pytest.approx(0.5 * kl, rel=1e-6)
    assert metrics[METRIC_NAMES.index("kl")].item() == pytest.approx(kl, rel=1e-6)
    far = PolicyLossConfig(beta=1.0)
    huge, _, _ = policy_loss(torch.full((1, 1), -50.0), torch.full((1, 1), -50.0), torch.zeros(1, 1), torch.ones(1, 1),
                             torch.zeros(1, 1, dtype=torch.long), far, ref_logprobs=torch.zeros(1, 1))  # fmt: skip
    assert huge.item() == pytest.approx(10.0)  # q clamped to 20, the estimate to 10
    weighted = PolicyLossConfig(beta=0.0, importance_sampling_correction=True)
    generation = old - torch.log(torch.tensor(2.0))  # the generator gave half the trainer's probability
    loss_w, _, _ = policy_loss(
        old.clone(), old, positive, mask, ids, weighted, generation_logprobs=generation
    )
    assert loss_w.item() == pytest.approx(-3.0 * 2.0, rel=1e-6)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(logprobs, old, positive, mask, ids, PolicyLossConfig(beta=0.1))


def test_aggregation_modes_sum_and_count():
    # two samples in one row of a packed micro-batch: lengths 1 and 3, per-token loss -A with r = 1
    logprobs = torch.zeros(1, 5)
    advantages = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    ids = torch.tensor([[0, 1, 1, 1, 0]])
    base = dict(eps_low=0.2, eps_high=0.2, beta=0.0, max_new_tokens=10)
    token, count, _ = policy_loss(logprobs, logprobs, advantages, mask, ids, PolicyLossConfig(**base))
    assert (token.item(), count.item()) == (-5.0, 4.0)  # token-mean: -5 / 4 over the global batch
    seq, count, _ = policy_loss(
        logprobs,
        logprobs,
        advantages,
        mask,
        ids,
        PolicyLossConfig(**base, loss_agg_mode="seq-mean-token-mean"),
    )
    assert (seq.item(), count.item()) == (-3.0, 2.0)  # (-2/1 + -3/3) over 2 samples
    norm, count, _ = policy_loss(
        logprobs,
        logprobs,
        advantages,
        mask,
        ids,
        PolicyLossConfig(**base, loss_agg_mode="seq-mean-token-sum-norm"),
    )
    assert (norm.item(), count.item()) == pytest.approx((-0.5, 2.0))  # (-2 - 3) / 10, 2 samples
    with pytest.raises(ValueError, match="loss_agg_mode"):
        PolicyLossConfig(loss_agg_mode="sum")
    with pytest.raises(ValueError, match="dual_clip"):
        PolicyLossConfig(dual_clip=0.5)
