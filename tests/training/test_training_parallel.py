"""The same SFT run (LoRA on the LLM + mlp bridge) at TP=2 and at PP=2 gives the TP=1/PP=1 losses: megatron's
pipeline schedule, vocab-parallel loss, per-group grad norms and the optimizer agree across layouts."""

from __future__ import annotations

import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, write_records


def _save_llm(rank: int, world_size: int, folder: str) -> None:
    """One tiny Qwen3 for every layout (a fresh init differs per layout: the padded vocabulary and the
    pipeline stages change the random draws)."""
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.models.qwen3 import build_qwen3_model, qwen3_preset
    from protein_llm_nemo.runtime import initialize_distributed

    initialize_distributed(seed=5)
    model = build_qwen3_model(qwen3_preset("tiny"))
    dist_checkpointing.save(model.sharded_state_dict(), folder)


def _run(rank: int, world_size: int, data_dir: str, tp: int, pp: int) -> dict:
    from protein_llm_nemo.training import LoRAConfig, ParallelConfig
    from protein_llm_nemo.training.sft import setup_sft

    config = tiny_config(data_dir, train__max_steps=2)
    config.parallel = ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    config.lora = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)
    config.checkpoint.load_language_model_from = f"{data_dir}/llm"
    session = setup_sft(config)
    result = session.run()
    groups = session.model.named_parameter_groups()
    return {
        "losses": result.losses,
        "valid": list(result.valid_losses.values()),
        "lora_params": len(groups["lora"]),
        "frozen_llm": not groups["language_model"],
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("sft_parallel")
    write_records(folder / "train.jsonl", 12, seed=3)
    write_records(folder / "valid.jsonl", 3, seed=4)
    (folder / "llm").mkdir()
    run_distributed(_save_llm, world_size=1, args=(str(folder / "llm"),))
    return str(folder)


@pytest.fixture(scope="module")
def reference(data_dir):
    return run_distributed(_run, world_size=1, args=(data_dir, 1, 1))[0]


@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 2)])
def test_layout_gives_the_same_losses(data_dir, reference, tp, pp):
    results = run_distributed(_run, world_size=2, args=(data_dir, tp, pp))
    assert reference["lora_params"] > 0 and reference["frozen_llm"]
    for result in results:
        assert len(result["losses"]) == 2
        for a, b in zip(
            result["losses"] + result["valid"], reference["losses"] + reference["valid"], strict=True
        ):
            assert abs(a - b) < 1e-4, (result, reference)
