"""Tiny SFT fixtures shared by the tests: small canonical record files and a tiny SFT config (mlp bridge,
live tiny ESM C encoder, the real Qwen3 tokenizer, 48-token packs). Imported by test modules and their rank
bodies."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

AMINO = "ACDEFGHIKLMNPQRSTVWY"
WORDS = ["a kinase", "a membrane protein", "an ATP binder", "nuclear", "a transporter", "a ligase"]


def write_records(path: Path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            record = {
                "id": f"p{seed}-{i}",
                "sequences": ["".join(rng.choice(AMINO) for _ in range(rng.randint(6, 16)))],
                "instruction": "What is it?",
                "response": f"It is {rng.choice(WORDS)}." + " Yes." * rng.randint(0, 3),
                "task": "function",
                "source": "test",
            }
            handle.write(json.dumps(record) + "\n")
    return str(path)


def write_ppi_records(
    path: Path | str,
    n: int,
    seed: int,
    draw_length: Callable[[random.Random], int] = lambda rng: rng.randint(8, 14),
) -> str:
    """`n` PPI records (two random proteins of `draw_length` residues each, labels alternating, the truth in
    `meta["interacts"]`): GRPO prompts with a verifiable reward."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            pair = ["".join(rng.choice(AMINO) for _ in range(draw_length(rng))) for _ in range(2)]
            record = {
                "id": f"ppi:{seed}:{i}",
                "sequences": pair,
                "instruction": "Do these two proteins physically or functionally interact? Answer yes or no.",
                "response": "Yes." if i % 2 else "No.",
                "task": "ppi",
                "source": "test",
                "meta": {"interacts": bool(i % 2)},
            }
            handle.write(json.dumps(record) + "\n")
    return str(path)


def tiny_config(data_dir: str, dropout: float = 0.0, **changes):
    from protein_llm_nemo.training import (
        BridgeSelection,
        CheckpointConfig,
        DataConfig,
        OptimizerConfig,
        SchedulerConfig,
        SFTConfig,
        TrainConfig,
    )

    config = SFTConfig(
        bridge=BridgeSelection(
            "mlp",
            {
                "num_slots": 4,
                "num_heads": 4,
                "projector_hidden_size": 32,
                "attention_dropout": dropout,
                "projector_dropout": dropout,
            },
        ),
        data=DataConfig(
            train_path=f"{data_dir}/train.jsonl",
            valid_path=f"{data_dir}/valid.jsonl",
            seq_length=48,
            micro_batch_size=1,
            global_batch_size=4,
            system_prompt=None,
        ),
        optimizer=OptimizerConfig(lr=1e-3, bridge_lr=3e-3),
        scheduler=SchedulerConfig(warmup_steps=1, decay_steps=8),
        train=TrainConfig(max_steps=4, progress_bar=False),
        checkpoint=CheckpointConfig(dir=None),
    )
    for dotted, value in changes.items():
        part, field = dotted.split("__")
        setattr(getattr(config, part), field, value)
    return config


def trainable_grads(model) -> dict:
    """numpy copies: tensors would travel between processes as shared-memory handles."""
    return {
        name: p.main_grad.detach().clone().numpy() for name, p in model.named_parameters() if p.requires_grad
    }
