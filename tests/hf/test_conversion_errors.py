"""Bad inputs to the ProteinLLM converters and the generate command fail early with clear messages."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from protein_llm_nemo.conversion.checkpoints import load_protein_llm_checkpoint
from protein_llm_nemo.conversion.hf_io import CheckpointError
from protein_llm_nemo.conversion.megatron_io import CheckpointHeader
from protein_llm_nemo.conversion.protein_llm_export import export_protein_llm_checkpoint
from protein_llm_nemo.conversion.protein_llm_import import import_protein_llm
from protein_llm_nemo.conversion.spec import hf_protein_llm_config
from protein_llm_nemo.testing.export import tiny_spec


@pytest.fixture(scope="module")
def hf_mlp(tmp_path_factory):
    from protein_llm_nemo.hf.modeling import ProteinLLMForCausalLM

    folder = tmp_path_factory.mktemp("errors") / "mlp"
    torch.manual_seed(0)
    ProteinLLMForCausalLM(hf_protein_llm_config(tiny_spec("mlp"))).save_pretrained(folder)
    return folder


def test_import_refuses_folders_that_do_not_match_their_config(hf_mlp, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((hf_mlp / "config.json").read_text())
    tensors = load_file(hf_mlp / "model.safetensors")
    tensors.pop("bridge.pooling.queries")
    tensors["bridge.extra.weight"] = torch.zeros(2)
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(
        CheckpointError, match=r"missing \['bridge.pooling.queries'\], unexpected \['bridge.extra"
    ):
        import_protein_llm(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_plain_qwen3_and_non_model_folders(hf_mlp, tmp_path):
    qwen3 = tmp_path / "qwen3"
    qwen3.mkdir()
    config = json.loads((hf_mlp / "config.json").read_text())["text_config"]
    (qwen3 / "config.json").write_text(json.dumps({**config, "model_type": "qwen3"}))
    with pytest.raises(CheckpointError, match="is not a ProteinLLM"):
        import_protein_llm(qwen3, tmp_path / "out")
    with pytest.raises(CheckpointError, match="no config.json"):
        import_protein_llm(tmp_path, tmp_path / "out")


def test_plain_qwen3_checkpoints_are_not_exported_as_protein_llms(tmp_path):
    header = CheckpointHeader(
        arch=tiny_spec("mlp").arch, tensor_model_parallel_size=1, pipeline_model_parallel_size=1
    )
    (tmp_path / "protein_llm_checkpoint.json").write_text(header.to_json())
    with pytest.raises(CheckpointError, match="plain Qwen3 checkpoint"):
        load_protein_llm_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="export format must be one of"):
        export_protein_llm_checkpoint(tmp_path, tmp_path / "out", export_format="gguf")


def test_generate_command_rejects_bad_arguments_before_loading_a_model(tmp_path, capsys):
    from protein_llm_nemo.cli import main

    assert main(["generate", "--model", str(tmp_path), "--sequence", "MKT"]) == 2
    assert "either --prompt" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert "no such folder" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "sequence": "MKT"}\n{"sequence": "MKT"}\n')
    assert main(["generate", "--model", str(tmp_path), "--input", str(bad)]) == 2
    assert "bad.jsonl:2: each record needs a string 'prompt'" in capsys.readouterr().err


def test_import_names_a_malformed_config_or_truncated_weights_of_a_protein_llm_folder(hf_mlp, tmp_path):
    import re
    import shutil

    malformed = tmp_path / "malformed"
    shutil.copytree(hf_mlp, malformed)
    (malformed / "config.json").write_text('{"model_type": "protein_llm", "bridge": "mlp"')
    with pytest.raises(CheckpointError, match=r"config.json is corrupt: not valid JSON .* line 1, column 46"):
        import_protein_llm(malformed, tmp_path / "out")
    truncated = tmp_path / "truncated"
    shutil.copytree(hf_mlp, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=re.escape(f"{weights} is not a readable safetensors file")):
        import_protein_llm(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_malformed_protein_llm_header_entry_names_the_header(tmp_path):
    header = CheckpointHeader(
        arch=tiny_spec("mlp").arch,
        tensor_model_parallel_size=1,
        pipeline_model_parallel_size=1,
        extra={"protein_llm": {"encoder": None}},  # no bridge
    )
    (tmp_path / "protein_llm_checkpoint.json").write_text(header.to_json())
    with pytest.raises(CheckpointError, match="protein_llm_checkpoint.json: malformed 'protein_llm' entry"):
        load_protein_llm_checkpoint(tmp_path)
