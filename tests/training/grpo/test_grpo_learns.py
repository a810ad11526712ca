"""GRPO learns the protein-dependent answer (the fast version of `benchmarks/grpo_learning.py`): the GRAVY yes / no
task of `protein_llm_nemo.testing.grpo_learning`, the tiny policy (text bridge: the residues as text; its random
language model and LoRA train) SFT-warmed briefly, so that it answers in format but not yet reliably, then 20
GRPO steps: the benchmark's text seed-0 setup (docs/grpo.md, "Learning and routing"). The validation reward
(greedy, and the mean over sampled completions, which is what GRPO optimizes) must rise by a margin, through
answers that depend on the protein: the accuracy rises, a constant answer would score 0.55. The control, from
the same SFT checkpoint, trains on a reward with no variance: every advantage is exactly 0, so no group may get
a gradient and its validation reward must not move."""

from __future__ import annotations

import dataclasses

from protein_llm_nemo.testing.multiprocess import run_distributed

SETUP = dict(bridge="text", eval_every=0)
MARGIN = 0.1


def _body(rank: int, world_size: int, work_dir: str) -> dict:
    from protein_llm_nemo.testing.grpo_learning import LearningSetup, run_learning

    setup = LearningSetup(**SETUP)
    learn = run_learning(setup, work_dir)
    control = run_learning(dataclasses.replace(setup, control=True, grpo_steps=2), work_dir)
    return {"learn": learn, "control": control}


def test_grpo_raises_the_validation_reward_and_the_control_does_not(tmp_path):
    (out,) = run_distributed(_body, world_size=1, args=(str(tmp_path),), timeout_s=1500)
    learn, control = out["learn"], out["control"]
    assert learn["valid_before"] == control["valid_before"]  # one SFT checkpoint, deterministic validation

    before, after = learn["valid_before"], learn["valid_after"]
    assert before["format"] == 1.0 and before["accuracy"] < 0.95, before  # warmed, not yet reliable
    assert after["sampled_reward"] >= before["sampled_reward"] + MARGIN, (before, after)
    assert after["reward"] > before["reward"], (before, after)
    assert after["accuracy"] > max(before["accuracy"], 0.6), (before, after)  # not a constant answer
    assert 0.2 < after["yes_share"] < 0.8, after
    assert any(norm > 0 for step in learn["steps"] for norm in step["grad_before"].values())

    # Control: zero advantages -> an exactly zero gradient in every group, and no change at all.
    grads = [step["grad_before"] for step in control["steps"]]
    assert grads and all(grad and all(norm == 0 for norm in grad.values()) for grad in grads), grads
    assert control["valid_after"] == control["valid_before"]
