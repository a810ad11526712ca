"""Megatron ProteinLLM (TP=2) -> HF folder: the HF model's logits equal megatron's for every bridge; the LLM
alone exports as a plain Qwen3; HF -> megatron (TP=2 and PP=2) -> HF is bit-exact; the CLI exports a saved
megatron checkpoint to the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_llm_nemo.bridges import get_bridge_config_class
from protein_llm_nemo.testing.export import export_run, import_export_run, tied_export_run, tiny_spec
from protein_llm_nemo.testing.export import read_folder_tensors as _tensors
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import built_in_bridges, tiny_batch

BRIDGES = built_in_bridges()
EMBEDDING_BRIDGES = [name for name in BRIDGES if get_bridge_config_class(name).uses_encoder]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ranks = run_distributed(export_run, world_size=2, args=(BRIDGES, 2, 1, str(root)))
    return root, ranks


def _hf_logits(folder: Path, name: str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    batch = tiny_batch(tiny_spec(name).bridge_config)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    kwargs = {}
    if name != "text":
        kwargs = {"protein_embeddings": batch["protein_embeddings"], "protein_mask": batch["protein_mask"]}
    with torch.no_grad():
        return model(batch["input_ids"], **kwargs).logits


@pytest.mark.parametrize("name", BRIDGES)
def test_exported_hf_logits_equal_megatron_tp2(exported, name):
    root, ranks = exported
    folder = root / ("qwen3" if name == "text" else "hf") / name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == ("qwen3" if name == "text" else "protein_llm")
    logits = _hf_logits(folder, name).numpy()
    for rank in ranks:  # both TP ranks hold the gathered logits
        diff = float(np.abs(logits - rank[name]).max())
        print(f"{name}: max |HF - megatron| = {diff:.2e}")
        assert diff <= 1e-4
    # control: the proteins (or, for text, the tokens) matter, so equal logits are not a coincidence
    assert float(np.abs(logits[:, 1:] - logits[:, :-1]).max()) > 1e-3


def test_llm_alone_is_a_plain_qwen3_with_the_protein_llm_weights(exported):
    from transformers import AutoModelForCausalLM, Qwen3ForCausalLM

    root, _ = exported
    plain = AutoModelForCausalLM.from_pretrained(root / "qwen3" / "mlp")
    assert type(plain) is Qwen3ForCausalLM
    full = _tensors(root / "hf" / "mlp")
    alone = _tensors(root / "qwen3" / "mlp")
    assert set(alone) == {k[len("language_model.") :] for k in full if k.startswith("language_model.")}
    for key, value in alone.items():
        assert torch.equal(value, full[f"language_model.{key}"]), key
    assert "protein_token_embeddings.weight" in full and "protein_token_embeddings.weight" not in alone


@pytest.mark.parametrize("name", ["mlp", "perceiver"])
def test_plain_qwen3_export_with_prompt_embeds_equals_the_protein_llm(exported, name):
    """The vLLM `prompt_embeds` path of splicing bridges: the LLM-alone export fed with
    `ProteinLLMForCausalLM.embed_inputs(...)` gives the full model's logits."""
    from transformers import AutoModelForCausalLM

    root, ranks = exported
    batch = tiny_batch(tiny_spec(name).bridge_config)
    full = AutoModelForCausalLM.from_pretrained(root / "hf" / name).eval()
    plain = AutoModelForCausalLM.from_pretrained(root / "qwen3" / name).eval()
    with torch.no_grad():
        embeds = full.embed_inputs(batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
        logits = plain(inputs_embeds=embeds).logits
    assert float(np.abs(logits.numpy() - ranks[0][name]).max()) <= 1e-4


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2)])
def test_hf_to_megatron_to_hf_is_bit_exact(exported, tmp_path, tp, pp):
    root, _ = exported
    folders = {name: str(root / "hf" / name) for name in EMBEDDING_BRIDGES}
    run_distributed(import_export_run, world_size=2, args=(folders, tp, pp, str(tmp_path)))
    for name, source in folders.items():
        before, after = _tensors(Path(source)), _tensors(tmp_path / "hf" / name)
        assert sorted(before) == sorted(after), name
        for key, value in before.items():
            assert torch.equal(value, after[key]), f"{name}: {key}"
        header = json.loads((tmp_path / "megatron" / name / "protein_llm_checkpoint.json").read_text())
        assert header["tensor_model_parallel_size"] == tp and header["pipeline_model_parallel_size"] == pp
        assert header["extra"]["protein_llm"]["bridge"]["name"] == name


def test_convert_cli_exports_checkpoints_and_imports_hf_protein_llm_folders(exported, tmp_path):
    """`protein-llm convert export|import` in one process: a flamingo checkpoint exports to the live export's
    tensors, the text bridge to a plain Qwen3, and the HF folder imports back to a megatron checkpoint."""
    root, _ = exported
    commands = [
        ["convert", "export", "--checkpoint", str(root / "megatron" / "flamingo"), "--out", str(tmp_path / "flamingo"),
         "--no-processor"],
        ["convert", "export", "--checkpoint", str(root / "megatron" / "text"), "--out", str(tmp_path / "text"),
         "--no-processor"],
        ["convert", "import", "--hf-model", str(tmp_path / "flamingo"), "--out", str(tmp_path / "back")],
        ["convert", "export", "--checkpoint", str(tmp_path / "back"), "--out", str(tmp_path / "again"),
         "--no-processor"],
    ]  # fmt: skip
    code = (
        "import json, sys; from protein_llm_nemo.cli import main; "
        "sys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    live = _tensors(root / "hf" / "flamingo")
    for folder in ("flamingo", "again"):
        exported_tensors = _tensors(tmp_path / folder)
        assert sorted(live) == sorted(exported_tensors)
        assert all(torch.equal(live[k], exported_tensors[k]) for k in live), folder
    assert json.loads((tmp_path / "text" / "config.json").read_text())["model_type"] == "qwen3"
    header = json.loads((tmp_path / "back" / "protein_llm_checkpoint.json").read_text())
    assert header["extra"]["protein_llm"]["bridge"]["name"] == "flamingo"


def test_tied_flamingo_exported_from_pp2_equals_megatron(tmp_path):
    """Tied embeddings, and gated blocks + output layer sent from the last pipeline stage to rank 0."""
    from transformers import AutoModelForCausalLM

    ranks = run_distributed(tied_export_run, world_size=2, args=("flamingo", 2, str(tmp_path)))
    assert ranks[0] is None  # first stage: no logits
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    lm = model.language_model
    assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()
    logits = _hf_logits(tmp_path, "flamingo")
    assert float(np.abs(logits.numpy() - ranks[1]).max()) <= 1e-4
