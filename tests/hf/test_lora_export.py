"""LoRA exports of a TP=2 ProteinLLM: the merged HF ProteinLLM equals megatron's logits; the base export with
its PEFT adapter applied by `peft.PeftModel` equals the merged export; a LoRA megatron checkpoint exports
to the same merged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from protein_llm_nemo.testing.export import LORA, lora_export_run, tiny_spec
from protein_llm_nemo.testing.export import read_folder_tensors as _tensors
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import tiny_batch


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    ranks = run_distributed(lora_export_run, world_size=2, args=(str(root),))
    return root, ranks


def _logits(model) -> torch.Tensor:
    batch = tiny_batch(tiny_spec("mlp").bridge_config)
    with torch.no_grad():
        return model(
            batch["input_ids"],
            protein_embeddings=batch["protein_embeddings"],
            protein_mask=batch["protein_mask"],
        ).logits


def test_peft_adapter_on_the_base_export_equals_the_merged_export_and_megatron(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, ranks = lora_run
    merged = _logits(AutoModelForCausalLM.from_pretrained(root / "merged").eval())
    base_model = AutoModelForCausalLM.from_pretrained(root / "adapter").eval()
    base = _logits(base_model)
    adapter = json.loads((root / "adapter" / "lora_adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == LORA["rank"] and adapter["peft_type"] == "LORA"
    base_model.language_model = PeftModel.from_pretrained(
        base_model.language_model, root / "adapter" / "lora_adapter"
    )
    with_adapter = _logits(base_model.eval())
    diff = float((with_adapter - merged).abs().max())
    print(f"PEFT adapter vs merged: {diff:.2e}")
    assert diff <= 1e-4
    assert float((base - merged).abs().max()) > 1e-3  # the adapters change the model
    for rank in ranks:
        megatron = float(np.abs(merged.numpy() - rank["logits"]).max())
        print(f"merged HF vs megatron LoRA (TP=2): {megatron:.2e}")
        assert megatron <= 1e-4


def test_lora_checkpoint_exports_the_same_merged_weights(lora_run):
    root, _ = lora_run
    live, from_checkpoint = _tensors(root / "merged"), _tensors(root / "merged_from_checkpoint")
    assert sorted(live) == sorted(from_checkpoint)
    for key, value in live.items():
        assert torch.allclose(value, from_checkpoint[key], atol=1e-6, rtol=0), key
    assert not any("lora" in key or "adapter" in key for key in live)
