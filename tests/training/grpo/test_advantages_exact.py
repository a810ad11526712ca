"""Leave-one-out advantages stay exact with the rewards GRPO really produces (0.1 / 0.9 / 1.0 are inexact
floats): where a sample's other group members agree, their std is 0 and the advantage is r - b, undivided.
The one-pass variance (E[x^2] - E[x]^2) left a ~1e-9 std there and made advantages of ~9e5."""

from __future__ import annotations

import itertools

import pytest
import torch

from protein_llm_nemo.training.grpo.advantages import group_advantages

# A yes / no reward's values: wrong and unreadable, wrong with the format bonus, right without, right with.
REWARDS = (0.0, 0.1, 0.9, 1.0)


def test_agreeing_others_give_an_undivided_advantage():
    rewards = torch.tensor([[0.1, 0.1, 0.1, 1.0]])
    advantages, zero = group_advantages(rewards)
    assert not zero.item()
    assert advantages[0, 3].item() == pytest.approx(0.9, abs=1e-6)  # others (0.1, 0.1, 0.1): std 0
    # sample 0: others (0.1, 0.1, 1.0), mean 0.4, sample std sqrt(0.27)
    assert advantages[0, 0].item() == pytest.approx(-0.3 / 0.27**0.5, rel=1e-5)


def test_every_group_of_four_has_bounded_advantages():
    groups = torch.tensor(list(itertools.product(REWARDS, repeat=4)))
    advantages, _ = group_advantages(groups)
    # the largest legitimate value: 1.0 against others (0.1, 0, 0), (1 - 1/30) / std(0.1, 0, 0) = 16.74
    assert advantages.abs().max().item() == pytest.approx(16.743, rel=1e-3)
    plain, _ = group_advantages(groups, normalize_std=False)
    assert plain.abs().max().item() <= 1.0 + 1e-6


def test_whole_group_baseline_matches_the_leave_one_out_path_by_hand():
    rewards = torch.tensor([[1.0, 0.1, 0.1, 0.1]])
    advantages, _ = group_advantages(rewards, leave_one_out=False)
    mean, std = 0.325, (sum((r - 0.325) ** 2 for r in (1.0, 0.1, 0.1, 0.1)) / 3) ** 0.5
    assert advantages[0].tolist() == pytest.approx([(r - mean) / std for r in (1.0, 0.1, 0.1, 0.1)], rel=1e-5)
