"""Continued pre-training: ssl_text records -> megatron IndexedDataset/GPTDataset -> full fine-tuning of the
tiny LLM; every non-pad token is a target, the loss falls, and the .bin/.idx prefix is reused as input. What
tokenizing read and dropped reaches metrics.jsonl, also when the prefix is reused."""

from __future__ import annotations

import json
import random
from pathlib import Path

from protein_llm_nemo.testing.multiprocess import run_distributed

WORDS = [
    "the",
    "protein",
    "kinase",
    "binds",
    "ATP",
    "and",
    "phosphorylates",
    "its",
    "substrate",
    "in",
    "the",
    "membrane",
    "of",
    "the",
    "cell",
]


def _run(rank: int, world_size: int, records: str, cache: str, train_path: str, logs: str) -> dict:
    from protein_llm_nemo.training import (
        DataConfig,
        LoggingConfig,
        OptimizerConfig,
        SchedulerConfig,
        SSLConfig,
        TrainConfig,
    )
    from protein_llm_nemo.training.ssl import run_ssl

    config = SSLConfig(
        data=DataConfig(
            train_path=train_path,
            valid_path=records,
            cache_dir=cache,
            seq_length=32,
            micro_batch_size=2,
            global_batch_size=2,
            packing=False,
            valid_max_batches=2,
        ),
        optimizer=OptimizerConfig(lr=3e-3),
        scheduler=SchedulerConfig(warmup_steps=0, decay_style="constant"),
        train=TrainConfig(max_steps=3, progress_bar=False),
        logging=LoggingConfig(log_dir=logs, tensorboard=False),
    )
    result = run_ssl(config)
    lines = [json.loads(line) for line in (Path(logs) / "metrics.jsonl").read_text().splitlines()]
    return {
        "losses": result.losses,
        "valid": list(result.valid_losses.values()),
        "tokens": result.tokens,
        "data": [line["data"] for line in lines if "data" in line],
    }


def test_ssl_trains_the_language_model_on_text(tmp_path):
    rng = random.Random(0)
    records = tmp_path / "ssl.jsonl"
    with open(records, "w") as handle:
        for i in range(12):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))
            handle.write(
                json.dumps(
                    {
                        "id": f"d{i}",
                        "sequences": [],
                        "instruction": "",
                        "response": text,
                        "task": "ssl_text",
                        "source": "test",
                    }
                )
                + "\n"
            )
        handle.write("{not json\n")
    cache = str(tmp_path / "cache")
    logs = str(tmp_path / "logs")
    result = run_distributed(_run, world_size=1, args=(str(records), cache, str(records), logs))[0]
    (data,) = result["data"]
    assert data["train"]["read"]["seen"] == 13 and data["train"]["read"]["dropped"] == {"invalid_json": 1}
    assert data["train"]["documents"] == 12 and data["valid"]["records"]["kept"] == 12
    assert Path(cache, "train.bin").is_file() and Path(cache, "train.idx").is_file()
    assert result["tokens"] == 3 * 2 * 32  # fixed-length samples: every token is a target
    assert result["losses"][-1] < result["losses"][0] - 0.1
    assert len(result["valid"]) == 1 and result["valid"][0] < result["losses"][0]
    # An existing megatron prefix is read as is (no re-tokenization).
    again = run_distributed(
        _run,
        world_size=1,
        args=(str(records), str(tmp_path / "unused"), f"{cache}/train", str(tmp_path / "l2")),
    )[0]
    assert not Path(tmp_path / "unused", "train.bin").exists()
    assert again["data"][0]["train"] == {k: v for k, v in data["train"].items() if k != "source"}
    assert abs(again["losses"][0] - result["losses"][0]) < 1e-6
