"""What exported folders say besides their weights: `architectures`, bos/eos ids and a `generation_config.json`
whose eos ids stop `generate` at the end of the assistant turn, for ProteinLLM folders and for the LLM alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

# Importing the package (any module of it) registers the Auto classes that load ProteinLLM folders.
from protein_llm_nemo.testing.multiprocess import run_distributed

IM_END, END_OF_TEXT = 151645, 151643


def _export_body(rank: int, world_size: int, root: str) -> None:
    """A ProteinLLM on the `tiny` preset (Qwen3's full 151,936-token vocabulary, so the special tokens exist)
    exported as a HF ProteinLLM folder and as its plain Qwen3."""
    from protein_llm_nemo.conversion.protein_llm_export import export_language_model, export_protein_llm
    from protein_llm_nemo.conversion.spec import ProteinLLMSpec
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.models.qwen3 import qwen3_preset
    from protein_llm_nemo.runtime import initialize_distributed
    from protein_llm_nemo.testing.tiny import tiny_bridge_config

    initialize_distributed(seed=3)
    spec = ProteinLLMSpec(qwen3_preset("tiny"), tiny_bridge_config("mlp"))
    model = build_protein_llm(spec.arch, spec.bridge_config).eval()
    export_protein_llm(model, spec, Path(root) / "protein_llm", tokenizer=None)
    export_language_model(model, spec.arch, Path(root) / "qwen3", tokenizer=None)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("metadata")
    run_distributed(_export_body, world_size=1, args=(str(root),))
    return root


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _always_im_end(qwen3) -> None:
    """Make `<|im_end|>` the argmax at every step: residual dimension 0 holds a large constant that no layer
    writes to, the final norm keeps only that dimension, and only `<|im_end|>`'s output row reads it."""
    with torch.no_grad():
        qwen3.model.embed_tokens.weight[:, 0] = 100.0
        for layer in qwen3.model.layers:
            layer.self_attn.o_proj.weight[0] = 0
            layer.mlp.down_proj.weight[0] = 0
        qwen3.model.norm.weight.zero_()
        qwen3.model.norm.weight[0] = 1
        qwen3.lm_head.weight.zero_()
        qwen3.lm_head.weight[IM_END, 0] = 1


def test_protein_llm_folder_names_its_class_and_qwen3s_eos(exported):
    config = _json(exported / "protein_llm" / "config.json")
    assert config["architectures"] == ["ProteinLLMForCausalLM"]
    text = config["text_config"]
    assert (text["bos_token_id"], text["eos_token_id"]) == (END_OF_TEXT, IM_END)
    generation = _json(exported / "protein_llm" / "generation_config.json")
    assert generation["eos_token_id"] == [IM_END, END_OF_TEXT]


def test_plain_generate_of_an_exported_protein_llm_stops_at_im_end(exported):
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(exported / "protein_llm").eval()
    assert model.generation_config.eos_token_id == [IM_END, END_OF_TEXT]
    _always_im_end(model.language_model)
    prompt = torch.tensor([[100, 200, 300]])  # text only: no protein placeholders
    assert model.generate(prompt, max_new_tokens=5, do_sample=False)[0, 3:].tolist() == [IM_END]
    model.generation_config = GenerationConfig()  # the control: no eos ids, greedy decoding runs on
    assert model.generate(prompt, max_new_tokens=5, do_sample=False)[0, 3:].tolist() == [IM_END] * 5


def test_the_llm_alone_exports_a_complete_qwen3_config(exported):
    config = _json(exported / "qwen3" / "config.json")
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["model_type"] == "qwen3"
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert config["rope_theta"] == 1_000_000.0
    assert (config["bos_token_id"], config["eos_token_id"]) == (END_OF_TEXT, IM_END)
    assert _json(exported / "qwen3" / "generation_config.json")["eos_token_id"] == [IM_END, END_OF_TEXT]
