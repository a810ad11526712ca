"""A fifth bridge from this one file, with no edit anywhere else: registered here, it matches itself at
TP=2, trains through the SFT loop, exports from the training checkpoint to a HF folder, and generates with
plain `transformers` (the export records this module, so `AutoModelForCausalLM` can rebuild it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from protein_llm_nemo.bridges import BridgeConfig, register_bridge
from protein_llm_nemo.bridges.blocks.inputs import check_encoder_inputs
from protein_llm_nemo.bridges.blocks.layers import LayerFactory, module_dtype
from protein_llm_nemo.testing.multiprocess import run_distributed


@register_bridge("linear")
@dataclass
class LinearBridgeConfig(BridgeConfig):
    """`linear`: the mean of a protein's normalised residues, projected to `num_slots` slot vectors."""

    test_sizes: ClassVar[dict[str, Any]] = dict(num_slots=2)
    cpu_sizes: ClassVar[dict[str, Any]] = dict(num_slots=4)

    num_slots: int = 8

    def build_module(self, layers: LayerFactory, hidden_size: int) -> LinearBridge:
        return LinearBridge(self, layers, hidden_size)


class LinearBridge(nn.Module):
    def __init__(self, config: LinearBridgeConfig, layers: LayerFactory, hidden_size: int) -> None:
        super().__init__()
        self.bridge_config, self.hidden_size = config, hidden_size
        self.input_norm = layers.layer_norm(config.encoder_dim)
        self.projector = layers.projector("affine", config.encoder_dim, config.num_slots * hidden_size)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = embeddings.to(module_dtype(self))
        mask = check_encoder_inputs(embeddings, mask, self.bridge_config.encoder_dim)
        weights = mask.unsqueeze(-1).to(embeddings.dtype)
        pooled = (self.input_norm(embeddings) * weights).sum(1) / weights.sum(1)
        return self.projector(pooled).view(-1, self.bridge_config.num_slots, self.hidden_size)


# -- rank bodies (defined here: each rank imports this module, which registers the bridge) ----------------
def _reference(rank: int, world_size: int) -> Any:
    from protein_llm_nemo.testing.layouts import reference_run

    return reference_run(rank, world_size, ["linear"])


def _tensor_parallel(rank: int, world_size: int, reference: Any) -> Any:
    from protein_llm_nemo.testing.layouts import layout_run

    return layout_run(rank, world_size, reference, 2, 1)


def _train_and_export(rank: int, world_size: int, data_dir: str, run_dir: str, out: str) -> dict:
    from protein_llm_nemo.conversion import export_protein_llm_checkpoint
    from protein_llm_nemo.testing.sft import tiny_config
    from protein_llm_nemo.training import BridgeSelection
    from protein_llm_nemo.training.checkpoint import latest_checkpoint
    from protein_llm_nemo.training.sft import run_sft

    config = tiny_config(data_dir, checkpoint__dir=run_dir, train__max_steps=2)
    config.bridge = BridgeSelection("linear", dict(LinearBridgeConfig.test_sizes))
    result = run_sft(config)
    export_protein_llm_checkpoint(latest_checkpoint(run_dir), out)
    return {"losses": result.losses}


@pytest.fixture(scope="module")
def reference():
    (result,) = run_distributed(_reference, world_size=1)
    return result


def test_the_plugin_bridge_is_exact_at_tensor_parallel_2(reference):
    ranks = run_distributed(_tensor_parallel, world_size=2, args=(reference,))
    for rank in ranks:
        result = rank["linear"]
        assert result["logits_diff"] < 1e-5 and result["loss_diff"] < 1e-5
        assert not result["missing_grads"]
        assert result["grad_diffs"] and max(result["grad_diffs"].values()) < 1e-5


def test_the_plugin_bridge_trains_exports_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM

    from protein_llm_nemo.testing.sft import write_records

    data = tmp_path / "data"
    data.mkdir()
    write_records(data / "train.jsonl", 8, seed=0)
    write_records(data / "valid.jsonl", 4, seed=1)
    out = tmp_path / "hf"
    (trained,) = run_distributed(
        _train_and_export, world_size=1, args=(str(data), str(tmp_path / "run"), str(out))
    )
    assert len(trained["losses"]) == 2 and all(loss == loss for loss in trained["losses"])
    saved = json.loads((out / "config.json").read_text())
    assert saved["bridge"] == "linear" and saved["bridge_config"]["module"] == __name__

    model = AutoModelForCausalLM.from_pretrained(out).eval()  # no trust_remote_code
    assert type(model.bridge) is LinearBridge
    ids = model.protein_token_ids
    prompt = torch.tensor([[151644, 872, 198, ids.start, ids.embed, ids.embed, ids.end, 3555, 374, 30]])
    embeddings = torch.randn(1, 7, model.config.encoder_dim)
    generated = model.generate(
        prompt,
        protein_embeddings=embeddings,
        protein_mask=torch.ones(1, 7, dtype=torch.bool),
        max_new_tokens=4,
        do_sample=False,
    )
    assert generated.shape == (1, prompt.shape[1] + 4) and torch.equal(
        generated[:, : prompt.shape[1]], prompt
    )
    with torch.no_grad():
        a = model(prompt, protein_embeddings=embeddings).logits
        b = model(prompt, protein_embeddings=-embeddings).logits
    assert (a - b).abs().max() > 1e-6  # the protein reaches the output through the plug-in bridge
