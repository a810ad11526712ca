"""`protein-llm generate --checkpoint`: answers straight from a megatron training checkpoint, one process and
under torchrun at TP=2 (the same greedy answers), batch mode over JSONL with invalid records reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import write_records

REPO = Path(__file__).resolve().parents[2]


def _train(rank: int, world_size: int, data_dir: str, run_dir: str) -> str:
    from protein_llm_nemo.testing.sft import tiny_config
    from protein_llm_nemo.training.sft import run_sft

    result = run_sft(tiny_config(data_dir, checkpoint__dir=run_dir, train__max_steps=1))
    return str(result.checkpoint_dir)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate_cli")
    data = root / "data"
    data.mkdir()
    write_records(data / "train.jsonl", 8, seed=0)
    write_records(data / "valid.jsonl", 4, seed=1)
    (step,) = run_distributed(_train, world_size=1, args=(str(data), str(root / "run")))
    questions = root / "questions.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "prompt": "What does this protein do?", "sequence": "MKTAYIAKQRQISFVKSHFSRQ"},
                {"id": "b", "prompt": "Where is it?", "sequences": ["MSLNVLSQ"]},
                {"id": "bad", "prompt": "And this?", "sequence": "MKT1Z"},
            ]
        )
        + "\n"
    )
    return step, root / "run", questions


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )


def test_generate_from_a_training_checkpoint_one_process_and_tp2(checkpoint, tmp_path):
    step, run_dir, questions = checkpoint
    args = ["generate", "--input", str(questions), "--max-new-tokens", "6"]
    one = _run(
        [
            sys.executable,
            "-m",
            "protein_llm_nemo.cli",
            *args,
            "--checkpoint",
            step,
            "--output",
            str(tmp_path / "one.jsonl"),
        ],
        REPO,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {"a", "b", "bad"}
    assert isinstance(by_id["a"]["response"], str) and isinstance(by_id["b"]["response"], str)
    assert "invalid character '1'" in by_id["bad"]["error"] and "response" not in by_id["bad"]
    two = _run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "protein_llm_nemo.cli", *args,
            "--checkpoint", str(run_dir), "--tensor-model-parallel-size", "2", "--output", str(tmp_path / "two.jsonl"),
        ],
        REPO,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    rows_tp2 = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert rows_tp2 == rows  # the run folder resolves to its latest step; greedy answers equal at TP=2
