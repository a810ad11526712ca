"""HF ProteinLLM folder (`ProteinLLMForCausalLM`) -> megatron ProteinLLM checkpoint at the current TP/PP layout.

The language model goes through the Qwen3 mappings (`language_model.` + the Qwen3 names); bridge, gated
blocks and the boundary-token table share megatron's names and are sliced for this rank as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from protein_llm_nemo.conversion.checkpoints import build_protein_llm_for, save_protein_llm_checkpoint
from protein_llm_nemo.conversion.hf_io import CheckpointError, HFCheckpointReader, read_json_file
from protein_llm_nemo.conversion.mappings import global_parameter_names
from protein_llm_nemo.conversion.megatron_io import CheckpointHeader, check_output_dir
from protein_llm_nemo.conversion.qwen3_import import Qwen3Shards, copy_shard, hf_params_dtype
from protein_llm_nemo.conversion.spec import GATED_BLOCK, ProteinLLMSpec, hf_protein_llm_shapes
from protein_llm_nemo.models.parallel_weights import shard_full_tensor

__all__ = ["import_protein_llm", "load_hf_protein_llm_weights", "read_hf_protein_llm_config"]


def read_hf_protein_llm_config(folder: str | os.PathLike) -> Any:
    """The `ProteinLLMConfig` of a HF folder; a clear error for anything else (plain Qwen3, no model)."""
    from protein_llm_nemo.hf.configuration import ProteinLLMConfig

    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a HuggingFace model folder")
    values = read_json_file(path)  # names the file and the position of a JSON error
    model_type = values.get("model_type") if isinstance(values, dict) else None
    if model_type != ProteinLLMConfig.model_type:
        raise CheckpointError(
            f"{path}: model_type {model_type!r} is not a ProteinLLM ({ProteinLLMConfig.model_type!r}); "
            "import plain Qwen3 folders with `protein-llm convert import`"
        )
    try:
        return ProteinLLMConfig.from_pretrained(str(folder))
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise CheckpointError(f"{path}: cannot read the model config ({error})") from error


@torch.no_grad()
def load_hf_protein_llm_weights(model: Any, reader: HFCheckpointReader, spec: ProteinLLMSpec) -> int:
    """Fill this rank's `ProteinLLMModel` parameters from a HF ProteinLLM checkpoint; returns the count."""
    language_model = model.language_model
    names = global_parameter_names(language_model)
    qwen3 = Qwen3Shards(
        spec.arch, lambda name: reader.get(f"language_model.{name}"), language_model.vocab_size
    )
    count = 0
    for local_name, param in language_model.named_parameters():
        global_name = names[local_name]
        if f".{GATED_BLOCK}." in global_name:  # decoder.layers.{i}.gated_cross_attention.x -> ...{i}.x
            layer, rest = global_name.split(f".{GATED_BLOCK}.")
            hf_name = f"{GATED_BLOCK}.{int(layer.rsplit('.', 1)[1])}.{rest}"
            copy_shard(param, shard_full_tensor(language_model, local_name, reader.get(hf_name)), hf_name)
        else:
            copy_shard(param, qwen3.shard(global_name), global_name)
        count += 1
    if model.protein_token_embeddings is not None:
        name = "protein_token_embeddings.weight"
        copy_shard(model.protein_token_embeddings.weight, reader.get(name), name)
        count += 1
    if model.bridge is not None:
        for name, param in model.bridge.named_parameters():
            copy_shard(
                param, shard_full_tensor(model.bridge, name, reader.get(f"bridge.{name}")), f"bridge.{name}"
            )
            count += 1
    return count


def import_protein_llm(
    hf_folder: str | os.PathLike,
    out: str | os.PathLike,
    params_dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> CheckpointHeader:
    """HF ProteinLLM folder -> megatron ProteinLLM dist checkpoint at the current TP/PP layout."""
    check_output_dir(out, overwrite)
    folder = Path(hf_folder)
    config = read_hf_protein_llm_config(folder)
    spec = ProteinLLMSpec.from_hf_config(config)
    reader = HFCheckpointReader(folder)
    expected, found = hf_protein_llm_shapes(config), reader.shapes()
    if spec.arch.tie_word_embeddings:  # the tied head may or may not be stored
        expected.pop("language_model.lm_head.weight", None)
        found.pop("language_model.lm_head.weight", None)
    if found != expected:
        missing = sorted(set(expected) - set(found))[:6]
        extra = sorted(set(found) - set(expected))[:6]
        wrong = [k for k in expected if k in found and found[k] != expected[k]][:6]
        raise CheckpointError(
            f"{folder} does not match its config.json (missing {missing}, unexpected {extra}, mis-shaped {wrong})"
        )
    model = build_protein_llm_for(spec, params_dtype or hf_params_dtype(reader))
    load_hf_protein_llm_weights(model, reader, spec)
    return save_protein_llm_checkpoint(
        model, spec, out, overwrite=overwrite, source=str(folder), hf_assets=folder
    )
