"""Exact resume of GRPO and its HF export: a tiny run (mlp + LoRA, 3 steps) stopped after step 1 and resumed in a
new process trains the remaining steps exactly as the uninterrupted run does: the same rollouts (per-row seeds
from (train.seed, step) and the restored policy), rewards, losses, KL and gradient norms. That needs the
model, optimizer, scheduler, the prompt stream's position, the dynamic-sampling carry-over (groups generated at
step 1 train at step 2), the routing schedule's step (the bridge unfreezes at step 3) and the reference policy
(the start weights, not the resumed ones). The last checkpoint exports with `protein-llm convert export`, and
`transformers` computes the megatron checkpoint's logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import write_ppi_records

COMPARED = (
    "train/loss",
    "train/grad_norm",
    "reward/mean",
    "reward/std",
    "kl",
    "entropy",
    "clip_fraction",
    "ratio",
    "zero_variance_fraction",
    "generated_tokens",
    "generation_rounds",
    "grad_norm/after/bridge",
    "grad_norm/after/lora",
)


def _config(records: str, run_dir: str, stop_at_step: int | None):
    from protein_llm_nemo.models.lora import LoRAConfig
    from protein_llm_nemo.training.config import (
        BridgeSelection,
        CheckpointConfig,
        LoggingConfig,
        OptimizerConfig,
        TrainConfig,
    )
    from protein_llm_nemo.training.grpo import GRPOConfig, GRPODataConfig, GRPOSection, RoutingConfig

    return GRPOConfig(
        bridge=BridgeSelection("mlp", {"num_slots": 2, "num_heads": 4, "projector_hidden_size": 32}),
        data=GRPODataConfig(train_path=records, micro_batch_size=4, system_prompt=None),
        # 2 prompts a step, 4 drawn per round: the 2 groups left over carry into the next step
        grpo=GRPOSection(
            num_prompts_per_step=2,
            num_generations=4,
            max_new_tokens=6,
            beta=0.05,
            overlong_filtering=False,  # a random tiny policy never ends its turn
            dynamic_sampling=True,
            batch_multiplier=2.0,
        ),
        routing=RoutingConfig(freeze_bridge_steps=2),
        lora=LoRAConfig(rank=4, alpha=8.0, dropout=0.0),
        optimizer=OptimizerConfig(lr=1e-2, bridge_lr=1e-2),
        train=TrainConfig(max_steps=3, stop_at_step=stop_at_step, progress_bar=False, seed=7),
        checkpoint=CheckpointConfig(dir=run_dir, keep_last=0),
        logging=LoggingConfig(tensorboard=False, level="WARNING"),
        allow_untrained_bridge=True,
    )


def _length_reward(record, completion):
    """Variance inside (almost) every group: decoded completions differ in length."""
    from protein_llm_nemo.rewards import RewardResult

    value = min(len(completion), 40) / 40
    return RewardResult(total=value, components={"length": value}, parsed_answer=None, format_ok=True)


def _run_body(rank: int, world_size: int, records: str, run_dir: str, stop_at_step: int | None) -> dict:
    import protein_llm_nemo.training.grpo.run as grpo_run

    texts: dict[int, list[str]] = {}
    current = {"step": -1}
    step_fn = grpo_run.grpo_step

    def traced_step(parts, step):
        current["step"] = step
        return step_fn(parts, step)

    def reward(record, completion):
        texts.setdefault(current["step"] + 1, []).append(completion)  # by the 1-based step logged
        return _length_reward(record, completion)

    grpo_run.grpo_step = traced_step
    session = grpo_run.setup_grpo(_config(records, run_dir, stop_at_step))
    session.parts.reward_fn = reward
    result = session.run()
    return {"start_step": result.start_step, "steps": result.steps, "texts": texts}


def _metrics(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").open()]
    return {row["step"]: row for row in rows if "train/loss" in row}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo_resume")
    records = write_ppi_records(root / "train.jsonl", 12, seed=0)
    straight, stopped = root / "straight", root / "stopped"
    (full,) = run_distributed(_run_body, world_size=1, args=(records, str(straight), None), timeout_s=900)
    (first,) = run_distributed(_run_body, world_size=1, args=(records, str(stopped), 1), timeout_s=900)
    (second,) = run_distributed(_run_body, world_size=1, args=(records, str(stopped), None), timeout_s=900)
    return {"root": root, "straight": straight, "stopped": stopped, "runs": (full, first, second)}


def test_resumed_run_equals_the_uninterrupted_run(runs):
    full, first, second = runs["runs"]
    assert (full["start_step"], full["steps"]) == (0, 3)
    assert (first["start_step"], first["steps"]) == (0, 1)
    assert (second["start_step"], second["steps"]) == (1, 3)  # resumed from step_0000001
    # the checkpoint carried groups over: step 2 generated nothing and trained step 1's leftovers
    state = json.loads((runs["stopped"] / "step_0000001" / "train_state.json").read_text())
    assert len(state["data"]["sampler"]["carry"]) == 2 and state["data"]["router"] == {"step": 1}
    assert sorted(full["texts"]) == [1, 3] and sorted(second["texts"]) == [3]
    assert second["texts"][3] == full["texts"][3]  # the same rollouts after the resume, token for token
    straight, resumed = _metrics(runs["straight"]), _metrics(runs["stopped"])
    assert sorted(straight) == [1, 2, 3] and sorted(resumed) == [1, 2, 3]
    for step in (2, 3):
        for key in COMPARED:
            assert resumed[step][key] == straight[step][key], (step, key)
    # the comparison can fail: the bridge unfreezes at step 3 (routing), and the policy moves away from the
    # reference (KL > 0) after the first update
    assert straight[2]["grad_norm/after/bridge"] == 0 and straight[3]["grad_norm/after/bridge"] > 0
    assert straight[3]["kl"] > 0 and straight[2]["train/loss"] != straight[3]["train/loss"]


def _logits_body(rank: int, world_size: int, step_dir: str, hf_dir: str) -> dict:
    from protein_llm_nemo.conversion.checkpoints import load_protein_llm_checkpoint
    from protein_llm_nemo.hf import ProteinLLMForCausalLM
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(), seed=0)
    megatron_model, spec, _ = load_protein_llm_checkpoint(step_dir)
    hf_model = ProteinLLMForCausalLM.from_pretrained(hf_dir).eval()
    ids = spec.protein_token_ids
    input_ids = torch.tensor(
        [[151644, 872, 198, ids.start, *[ids.embed] * spec.bridge_config.num_slots, ids.end, 3555, 374, 30]]
    )
    embeddings = torch.randn(1, 9, spec.bridge_config.encoder_dim, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 9, dtype=torch.bool)
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        expected = megatron_model(
            input_ids, positions, None, protein_embeddings=embeddings, protein_mask=mask
        )
        got = hf_model(input_ids=input_ids, protein_embeddings=embeddings, protein_mask=mask).logits
    vocab = spec.arch.vocab_size
    return {
        "max_diff": float((got[..., :vocab] - expected[..., :vocab]).abs().max()),
        "lora": spec.lora is not None,
    }


def test_grpo_checkpoint_exports_to_transformers(runs, tmp_path):
    step_dir = runs["stopped"] / "step_0000003"
    header = json.loads((step_dir / "protein_llm_checkpoint.json").read_text())
    assert header["source"] == "grpo"
    assert header["extra"]["protein_llm"]["bridge"]["name"] == "mlp"
    assert header["extra"]["protein_llm"]["lora"]["rank"] == 4
    out = tmp_path / "hf"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "protein-llm"), "convert", "export", "--checkpoint", str(step_dir),
         "--out", str(out), "--no-processor"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    (logits,) = run_distributed(_logits_body, world_size=1, args=(str(step_dir), str(out)), timeout_s=900)
    assert logits["lora"] and logits["max_diff"] < 1e-4  # the adapters merged into the exported weights


def test_a_start_checkpoint_of_another_bridge_or_architecture_is_refused(runs):
    """Checked on the checkpoint's header before anything is built or generated."""
    import dataclasses

    from protein_llm_nemo.training.config import BridgeSelection, CheckpointConfig, ModelConfig
    from protein_llm_nemo.training.grpo.run import check_start_checkpoint

    config = _config(str(runs["root"] / "train.jsonl"), None, None)
    step = str(runs["stopped"] / "step_0000003")
    config.checkpoint = CheckpointConfig(load_model_from=step)
    check_start_checkpoint(config)  # its own bridge and architecture: accepted
    other_bridge = dataclasses.replace(config, bridge=BridgeSelection("perceiver"))
    with pytest.raises(ValueError, match="holds a 'mlp' bridge, this run is 'perceiver'"):
        check_start_checkpoint(other_bridge)
    other_arch = dataclasses.replace(config, model=ModelConfig(preset="0.6b"))
    with pytest.raises(ValueError, match="is another architecture: .*hidden_size"):
        check_start_checkpoint(other_arch)
