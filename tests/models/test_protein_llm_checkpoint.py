"""megatron dist checkpoints of the ProteinLLM reshard across layouts: save at TP=1, load at TP=2, save
there, load at PP=2, save there, load back at TP=1; logits stay those of the first model at every hop.

Covers `ProteinLLMModel.sharded_state_dict`: TP-sharded bridge linears, the boundary-token table, the
gated blocks stacked over blocks (k=2: only layer 1 has one), flamingo's pipeline-replicated resampler.
Through the shared loader (`models/dist_checkpoint.py`): a Qwen3 checkpoint loads into a ProteinLLM's LLM,
a training checkpoint's weights load without its optimizer, and a model of another bridge is refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from protein_llm_nemo.testing.layouts import checkpoint_run, language_model_checkpoint_run
from protein_llm_nemo.testing.multiprocess import run_distributed

BRIDGES = {
    "text": ("text", {}),
    "mlp": ("mlp", {}),
    "perceiver": ("perceiver", {}),
    "flamingo": ("flamingo", {}),
    "flamingo_k2": ("flamingo", {"cross_attention_every": 2}),
}


@pytest.fixture(scope="module")
def hops(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    folders = {hop: root / hop for hop in ("tp1", "tp2", "pp2")}
    for folder in folders.values():
        for label in BRIDGES:
            (folder / label).mkdir(parents=True)
    (first,) = run_distributed(checkpoint_run, world_size=1, args=(BRIDGES, 1, 1, None, str(folders["tp1"])))
    tp2 = run_distributed(
        checkpoint_run, world_size=2, args=(BRIDGES, 2, 1, str(folders["tp1"]), str(folders["tp2"]))
    )
    pp2 = run_distributed(
        checkpoint_run, world_size=2, args=(BRIDGES, 1, 2, str(folders["tp2"]), str(folders["pp2"]))
    )
    (back,) = run_distributed(checkpoint_run, world_size=1, args=(BRIDGES, 1, 1, str(folders["pp2"]), None))
    return {"first": first, "tp2": tp2, "pp2": pp2, "back": back}


@pytest.mark.parametrize("label", list(BRIDGES))
def test_checkpoint_reshards_tp1_to_tp2_to_pp2_and_back(hops, label):
    expected = hops["first"][f"{label}_logits"]
    loaded = [*hops["tp2"], hops["pp2"][1], hops["back"]]  # every rank that returns logits
    for result in loaded:
        assert result[f"{label}_load_mismatch"] == []
        assert np.abs(result[f"{label}_logits"] - expected).max() < 1e-5
    assert hops["pp2"][0][f"{label}_logits"] is None
    assert hops["pp2"][0][f"{label}_load_mismatch"] == []
    # control: the models that loaded were initialised differently (seed + 1) and differed before the load
    assert np.abs(hops["back"][f"{label}_fresh_logits"] - expected).max() > 1e-3


def test_qwen3_checkpoint_loads_into_a_tp2_flamingo_model_that_then_equals_it(tmp_path):
    folder = tmp_path / "qwen3"
    folder.mkdir()
    (plain,) = run_distributed(language_model_checkpoint_run, world_size=1, args=(1, 1, str(folder), True))
    ranks = run_distributed(language_model_checkpoint_run, world_size=2, args=(2, 1, str(folder), False))
    for result in ranks:
        assert np.abs(result["before"] - plain["logits"]).max() > 1e-3  # another init before the load
        assert np.abs(result["after"] - plain["logits"]).max() < 1e-5  # the plain LLM after it (gates 0)
        assert result["table_ok"] is True  # boundary-token rows re-copied from the loaded embedding


def _model_weights_body(rank: int, world_size: int, root: str) -> dict:
    import torch

    from protein_llm_nemo.models.dist_checkpoint import CheckpointMismatchError
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
    from protein_llm_nemo.testing.tiny import build_tiny_model, tiny_bridge_config
    from protein_llm_nemo.training.checkpoint import load_model_weights, save_checkpoint

    initialize_distributed(ParallelConfig(1, 1), seed=0)
    trained = build_tiny_model(tiny_bridge_config("mlp"), seed=1)
    step_dir = save_checkpoint(root, 3, [trained], None, None, {"consumed": 6})
    fresh = build_tiny_model(tiny_bridge_config("mlp"), seed=2)
    differed = any(
        not torch.equal(a, b) for a, b in zip(trained.parameters(), fresh.parameters(), strict=True)
    )
    load_model_weights(step_dir, [fresh])
    equal = all(torch.equal(a, b) for a, b in zip(trained.parameters(), fresh.parameters(), strict=True))
    try:
        load_model_weights(step_dir, [build_tiny_model(tiny_bridge_config("perceiver"), seed=2)])
        error = ""
    except CheckpointMismatchError as exc:
        error = str(exc)
    return {"differed": differed, "equal": equal, "error": error}


def test_training_checkpoint_weights_load_alone_and_another_bridge_is_refused(tmp_path):
    (result,) = run_distributed(_model_weights_body, world_size=1, args=(str(tmp_path),))
    assert result["differed"] and result["equal"]  # optimizer, scheduler and data state are left behind
    assert "cannot load it into the model" in result["error"] and "bridge." in result["error"]
