"""megatron checkpoints <-> live models at the current TP/PP layout: plain Qwen3 and ProteinLLM.

A ProteinLLM checkpoint is a dist checkpoint of `ProteinLLMModel.sharded_state_dict()` plus the header,
whose `extra` carries the `ProteinLLMSpec` (bridge, boundary-token ids, encoder, LoRA): any TP/PP layout
rebuilds the model from it and loads the weights (training checkpoints with a header included).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.hf_io import CheckpointError, copy_hf_assets
from protein_llm_nemo.conversion.megatron_io import (
    DTYPES,
    HF_ASSETS_DIR,
    AtomicOutputDir,
    CheckpointHeader,
    check_output_dir,
    dtype_name,
    load_megatron_checkpoint,
    save_megatron_checkpoint,
)
from protein_llm_nemo.conversion.spec import PROTEIN_LLM_HEADER_KEY, ProteinLLMSpec
from protein_llm_nemo.models.dist_checkpoint import load_sharded_state
from protein_llm_nemo.models.qwen3 import build_qwen3_model, transformer_config

__all__ = [
    "build_model_for_checkpoint",
    "build_protein_llm_for",
    "load_protein_llm_checkpoint",
    "save_protein_llm_checkpoint",
]


def _parallel_sizes() -> tuple[int, int]:
    from megatron.core import parallel_state

    return (
        parallel_state.get_tensor_model_parallel_world_size(),
        parallel_state.get_pipeline_model_parallel_world_size(),
    )


def build_model_for_checkpoint(
    checkpoint: str | os.PathLike, params_dtype: torch.dtype | None = None, **kwargs
):
    """Build this rank's Qwen3 `GPTModel` for a checkpoint's architecture at the current layout and load it.

    `kwargs` go to `build_qwen3_model` (e.g. `parallel_output=False`). Returns (model, header)."""
    header = CheckpointHeader.read(checkpoint)
    dtype = params_dtype or DTYPES[header.params_dtype]
    config = transformer_config(
        header.arch, *_parallel_sizes(), params_dtype=dtype, perform_initialization=False
    )
    model = build_qwen3_model(header.arch, config=config, **kwargs)
    load_megatron_checkpoint(model, checkpoint)
    return model, header


def save_protein_llm_checkpoint(
    model: Any,
    spec: ProteinLLMSpec,
    out: str | os.PathLike,
    overwrite: bool = False,
    source: str = "",
    hf_assets: str | os.PathLike | None = None,
) -> CheckpointHeader:
    """megatron dist checkpoint of a `ProteinLLMModel` + header (bridge, token ids, encoder). All ranks call it.

    `hf_assets`: a HF folder whose tokenizer / generation files are kept in the checkpoint for its export."""
    tp, pp = _parallel_sizes()
    header = CheckpointHeader(
        arch=spec.arch,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        params_dtype=dtype_name(model.config.params_dtype),
        source=source,
        extra=spec.header_extra(),
    )
    check_output_dir(out, overwrite)
    with AtomicOutputDir(out, overwrite) as tmp:
        save_megatron_checkpoint(model, tmp, header)
        if hf_assets is not None and (not dist.is_initialized() or dist.get_rank() == 0):
            copy_hf_assets(Path(hf_assets), tmp / HF_ASSETS_DIR)
    return header


def build_protein_llm_for(spec: ProteinLLMSpec, params_dtype: torch.dtype, initialize: bool = False) -> Any:
    """This rank's `ProteinLLMModel` of a spec at the current parallel layout (eval mode)."""
    from protein_llm_nemo.models.protein_llm import build_protein_llm

    config = transformer_config(
        spec.arch, *_parallel_sizes(), params_dtype=params_dtype, perform_initialization=initialize
    )
    model = build_protein_llm(
        spec.arch, spec.bridge_config, language_config=config, protein_token_ids=spec.protein_token_ids
    )
    return model.eval()


def load_protein_llm_checkpoint(
    checkpoint: str | os.PathLike, params_dtype: torch.dtype | None = None
) -> tuple[Any, ProteinLLMSpec, CheckpointHeader]:
    """Build this rank's `ProteinLLMModel` for a ProteinLLM checkpoint (any saved layout; LoRA adapters when
    the header names them) and load it. Returns (model, spec, header)."""
    header = CheckpointHeader.read(checkpoint)
    try:
        spec = ProteinLLMSpec.from_header(header)
    except CheckpointError as error:
        raise CheckpointError(f"{checkpoint}/{error}") from error
    if spec is None:
        raise CheckpointError(
            f"{checkpoint} is a plain Qwen3 checkpoint (no {PROTEIN_LLM_HEADER_KEY!r} header entry); "
            "export it with `protein-llm convert export` (or --format qwen3)"
        )
    model = build_protein_llm_for(spec, params_dtype or DTYPES[header.params_dtype])
    if spec.lora:
        from protein_llm_nemo.models.lora import LoRAConfig, apply_lora

        apply_lora(model, LoRAConfig(**spec.lora))
    load_sharded_state(model, checkpoint)
    return model, spec, header
