"""GRPO end to end on a tiny policy (mlp bridge + LoRA, the real tokenizer, the live tiny ESM C encoder): two
steps train with finite losses, one micro-batch gives every trainable group (LoRA, bridge, protein tokens) a
non-zero gradient, dynamic sampling trains no zero-variance group, and bad configurations fail before any
generation."""

from __future__ import annotations

import math

import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import write_ppi_records


def grpo_config(data_dir: str, **changes):
    from protein_llm_nemo.models.lora import LoRAConfig
    from protein_llm_nemo.training.config import (
        BridgeSelection,
        CheckpointConfig,
        OptimizerConfig,
        TrainConfig,
    )
    from protein_llm_nemo.training.grpo import GRPOConfig, GRPODataConfig, GRPOSection

    config = GRPOConfig(
        bridge=BridgeSelection("mlp", {"num_slots": 2, "num_heads": 4, "projector_hidden_size": 32}),
        data=GRPODataConfig(train_path=f"{data_dir}/train.jsonl", micro_batch_size=4, system_prompt=None),
        # a random tiny policy never ends its turn: keep length-cut samples in the loss
        grpo=GRPOSection(
            num_prompts_per_step=2, num_generations=4, max_new_tokens=6, beta=0.01, overlong_filtering=False
        ),
        lora=LoRAConfig(rank=4, alpha=8.0, dropout=0.0),
        optimizer=OptimizerConfig(lr=1e-2, bridge_lr=1e-2),  # large: one step must move the policy measurably
        train=TrainConfig(max_steps=2, progress_bar=False),
        checkpoint=CheckpointConfig(dir=None),
        allow_untrained_bridge=True,
    )
    for dotted, value in changes.items():
        part, field = dotted.split("__")
        setattr(config if part == "config" else getattr(config, part), field, value)
    return config


def _length_reward(record, completion):
    """A reward with variance inside every group (its completions differ in length): a live gradient."""
    from protein_llm_nemo.rewards import RewardResult

    value = min(len(completion), 40) / 40
    return RewardResult(total=value, components={"length": value}, parsed_answer=None, format_ok=True)


def _run_body(rank: int, world_size: int, data_dir: str) -> dict:
    from protein_llm_nemo.training.grpo import setup_grpo

    session = setup_grpo(grpo_config(data_dir))
    session.parts.reward_fn = _length_reward
    from protein_llm_nemo.training.grpo.step import grpo_step

    first = grpo_step(session.parts, 0)
    second = grpo_step(session.parts, 1)
    # Every completion cut at 2 tokens (a random policy never ends its turn) and filtered out of the loss:
    # no token trains, the step is skipped without touching the weights (not a NaN update).
    import dataclasses

    import torch

    weights = [p.detach().clone() for p in session.model.parameters() if p.requires_grad]
    session.parts.grpo = dataclasses.replace(session.parts.grpo, max_new_tokens=2, overlong_filtering=True)
    cut = grpo_step(session.parts, 2)
    unchanged = all(
        torch.equal(a, b)
        for a, b in zip(weights, [p for p in session.model.parameters() if p.requires_grad], strict=True)
    )
    return {
        "cut": {k: cut[k] for k in ("skipped", "skipped_no_trained_tokens", "loss", "trained_tokens")},
        "cut_truncated": cut["truncated_fraction"],
        "cut_unchanged": unchanged,
        "losses": [first["loss"], second["loss"]],
        "groups_before": first["grad_norm/before"],
        "trained_zero_variance_groups": first["trained_zero_variance_groups"],
        "kl": second["kl"],
        "ratio": first["ratio"],
        "token_mult_prob_error": first["token_mult_prob_error"],
        "timers": sorted(first["timers"]),
        "rewards": [first["reward/mean"], second["reward/mean"]],
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo")
    write_ppi_records(folder / "train.jsonl", 12, seed=0)
    return folder


def test_two_grpo_steps_train_every_group(data_dir):
    (out,) = run_distributed(_run_body, world_size=1, args=(str(data_dir),))
    assert all(math.isfinite(loss) for loss in out["losses"])
    assert {"lora", "bridge", "protein_tokens"} <= set(out["groups_before"])
    assert all(norm > 0 for norm in out["groups_before"].values()), out["groups_before"]
    assert out["trained_zero_variance_groups"] == 0
    assert out["ratio"] == pytest.approx(1.0, abs=1e-6)  # old log-probs recomputed: r = 1 before the update
    assert out["token_mult_prob_error"] < 1 + 1e-4  # generator and trainer agree
    assert out["kl"] > 0  # after one update the policy moved away from the reference
    assert set(out["timers"]) == {"generation", "logprobs", "training"}
    assert out["cut_truncated"] == 1.0
    assert out["cut"] == {"skipped": True, "skipped_no_trained_tokens": 1, "loss": 0.0, "trained_tokens": 0.0}
    assert out["cut_unchanged"]


def _bad_body(rank: int, world_size: int, data_dir: str) -> dict:
    from protein_llm_nemo.training.grpo import GRPOSection, setup_grpo

    errors = {}
    cases = {
        "untrained_bridge": lambda: setup_grpo(grpo_config(data_dir, config__allow_untrained_bridge=False)),
        "group_of_one": lambda: GRPOSection(num_generations=1),
        "no_reward_task": lambda: setup_grpo(grpo_config(data_dir, data__tasks=["function"])),
    }
    for name, call in cases.items():
        try:
            call()
            errors[name] = None
        except (ValueError, FileNotFoundError) as error:
            errors[name] = str(error)
    return errors


def test_bad_configurations_fail_before_any_generation(data_dir):
    (errors,) = run_distributed(_bad_body, world_size=1, args=(str(data_dir),))
    assert "untrained 'mlp' bridge" in errors["untrained_bridge"]
    assert "num_generations must be >= 2" in errors["group_of_one"]
    assert "no registered reward" in errors["no_reward_task"] or "no prompt" in errors["no_reward_task"]
