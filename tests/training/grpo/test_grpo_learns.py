"""GRPO learns (the fast version of `benchmarks/grpo_learning.py`): the GRAVY yes / no task of
`protein_llm_nemo.testing.grpo_learning`, a tiny policy (text bridge, LoRA) SFT-warmed so briefly that its
greedy answers are not yet well-formed (validation reward 0; a sampled answer is well-formed about one time in
five), then four GRPO steps. GRPO must raise the greedy validation reward by a margin (here by teaching the
answer format: the constant answer "No." scores 0.55; whether it also learns the protein-dependent answer is
the benchmark's question, docs/grpo.md). The control, from the same SFT checkpoint, trains on a reward with
no variance: every advantage is exactly 0, so no group may get a gradient and its validation reward must not
move."""

from __future__ import annotations

import dataclasses

from protein_llm_nemo.testing.multiprocess import run_distributed

FAST = dict(
    bridge="text",
    n_train=64,
    n_valid=16,
    sft_steps=12,
    grpo_steps=4,
    num_prompts_per_step=4,
    num_generations=4,
    micro_batch_size=16,
    valid_samples=4,
)
MARGIN = 0.2


def _body(rank: int, world_size: int, work_dir: str) -> dict:
    from protein_llm_nemo.testing.grpo_learning import LearningSetup, run_learning

    setup = LearningSetup(**FAST)
    learn = run_learning(setup, work_dir)
    control = run_learning(dataclasses.replace(setup, control=True, grpo_steps=2), work_dir)
    return {"learn": learn, "control": control}


def test_grpo_raises_the_validation_reward_and_the_control_does_not(tmp_path):
    (out,) = run_distributed(_body, world_size=1, args=(str(tmp_path),), timeout_s=1200)
    learn, control = out["learn"], out["control"]
    assert learn["valid_before"] == control["valid_before"]  # one SFT checkpoint, deterministic validation

    before, after = learn["valid_before"], learn["valid_after"]
    assert after["reward"] >= before["reward"] + MARGIN, (before, after)
    assert after["format"] > before["format"], (before, after)
    assert after["sampled_reward"] > before["sampled_reward"], (before, after)
    assert any(norm > 0 for step in learn["steps"] for norm in step["grad_before"].values())

    # Control: zero advantages -> an exactly zero gradient in every group, and no rise.
    grads = [step["grad_before"] for step in control["steps"]]
    assert grads and all(grad and all(norm == 0 for norm in grad.values()) for grad in grads), grads
    before, after = control["valid_before"], control["valid_after"]
    assert after["reward"] == before["reward"], (before, after)
    assert after["sampled_reward"] <= before["sampled_reward"] + 1e-6, (before, after)
