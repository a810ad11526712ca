"""Live megatron `ProteinLLMModel` -> HF folders; ProteinLLM megatron checkpoint -> HF folder.

- `export_protein_llm(model, spec, out)`: a live (TP/PP-sharded) model -> HF `ProteinLLMForCausalLM` folder
  (sharded safetensors, `config.json`, processor and tokenizer files). Every rank calls it; rank 0 writes.
- `export_language_model(model, arch, out)`: its Qwen3 alone -> a plain Qwen3 folder (`text` bridge, or the
  LLM of any bridge), loadable by `AutoModelForCausalLM` / vLLM without this package.
- `export_protein_llm_checkpoint(checkpoint, out)`: a saved ProteinLLM checkpoint, through either of them.

LoRA adapters export `merged` into the weights, or as the base weights plus a PEFT `adapter` folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.checkpoints import load_protein_llm_checkpoint
from protein_llm_nemo.conversion.hf_io import TensorPlan, stream_to_safetensors
from protein_llm_nemo.conversion.hf_metadata import write_generation_config, write_qwen3_config
from protein_llm_nemo.conversion.mappings import expected_hf_shapes, qwen3_mappings
from protein_llm_nemo.conversion.megatron_io import DTYPES, HF_ASSETS_DIR, AtomicOutputDir, check_output_dir
from protein_llm_nemo.conversion.peft_adapter import lora_config_of, save_peft_adapter
from protein_llm_nemo.conversion.qwen3_export import iter_hf_tensors, stage_of_layer, write_conversion_note
from protein_llm_nemo.conversion.spec import (
    GATED_BLOCK,
    ProteinLLMSpec,
    hf_protein_llm_config,
    hf_protein_llm_shapes,
)
from protein_llm_nemo.models.lora import lora_modules, merge_lora
from protein_llm_nemo.models.qwen3 import Qwen3Arch

__all__ = [
    "EXPORT_FORMATS",
    "LORA_ADAPTER_DIR",
    "LORA_EXPORTS",
    "export_language_model",
    "export_protein_llm",
    "export_protein_llm_checkpoint",
    "iter_protein_llm_hf_tensors",
    "save_processor",
]

EXPORT_FORMATS = ("auto", "protein-llm", "qwen3")
LORA_EXPORTS = ("merged", "adapter")
LORA_ADAPTER_DIR = "lora_adapter"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


# -- live model -> HF tensors -------------------------------------------------------------------------
def _gather_tp(param: torch.Tensor) -> torch.Tensor:
    from megatron.core import parallel_state

    size = parallel_state.get_tensor_model_parallel_world_size()
    if size == 1 or not getattr(param, "tensor_model_parallel", False):
        return param.detach()
    shards = [torch.empty_like(param) for _ in range(size)]
    dist.all_gather(
        shards, param.detach().contiguous(), group=parallel_state.get_tensor_model_parallel_group()
    )
    return torch.cat(shards, dim=param.partition_dim)


def _gated_layers(spec: ProteinLLMSpec) -> list[int]:
    """Decoder layers preceded by a gated cross-attention block (flamingo), in order."""
    config = spec.bridge_config
    return config.cross_attention_layers(spec.arch.num_hidden_layers) if config.cross_attention else []


@torch.no_grad()
def iter_protein_llm_hf_tensors(
    model: Any, spec: ProteinLLMSpec, dtype: torch.dtype, shapes: dict[str, tuple[int, ...]] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, tensor) of a live `ProteinLLMModel` on global rank 0, one at a time, in `_plan_names` order.

    Every rank must iterate to the end (tensor-parallel gathers, pipeline sends). `shapes` (the HF model's)
    size the buffers of gated blocks received from later pipeline stages."""
    from megatron.core import parallel_state

    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    pp_size = parallel_state.get_pipeline_model_parallel_world_size()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    dp_rank = parallel_state.get_data_parallel_rank()
    rank0 = _rank() == 0
    for name, tensor in iter_hf_tensors(model.language_model, spec.arch, dtype):
        yield f"language_model.{name}", tensor
    # Stage 0 holds the boundary-token table and the bridge (flamingo: every stage holds a replica).
    if model.protein_token_embeddings is not None and pp_rank == 0:
        table = model.protein_token_embeddings.weight.detach()
        if rank0:
            yield "protein_token_embeddings.weight", table.to(dtype)
    if model.bridge is not None and pp_rank == 0:
        for name, param in model.bridge.named_parameters():
            full = _gather_tp(param)
            if rank0:
                yield f"bridge.{name}", full.to(dtype)
    if not spec.bridge_config.cross_attention:
        return
    pp_ranks = (
        dist.get_process_group_ranks(parallel_state.get_pipeline_model_parallel_group())
        if pp_size > 1
        else [0]
    )
    local = {}
    for layer in model.language_model.decoder.layers:
        block = getattr(layer, GATED_BLOCK, None)
        if block is not None:
            local[layer.layer_number - 1] = block
    for layer in _gated_layers(spec):
        owner = stage_of_layer(layer, spec.arch, pp_size)
        prefix = f"{GATED_BLOCK}.{layer}."
        names = [n for n in (shapes or {}) if n.startswith(prefix)] if shapes else None
        if pp_rank == owner:
            tensors = {prefix + n: _gather_tp(p).to(dtype) for n, p in local[layer].named_parameters()}
            names = list(tensors)
        if owner == 0:
            if rank0:
                yield from tensors.items()
            continue
        if names is None:
            raise ValueError("shapes are needed to receive pipeline-parallel gated blocks")
        if pp_rank == owner and tp_rank == 0 and dp_rank == 0:
            for n in names:
                dist.send(tensors[n].contiguous(), dst=pp_ranks[0])
        elif rank0:
            for n in names:
                buffer = torch.empty(shapes[n], dtype=dtype)
                dist.recv(buffer, src=pp_ranks[owner])
                yield n, buffer


def _plan_names(spec: ProteinLLMSpec, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The names `iter_protein_llm_hf_tensors` yields, in order."""
    names = [f"language_model.{m_key}" for m in qwen3_mappings(spec.arch) for m_key in m.hf_keys]
    names += [n for n in shapes if n == "protein_token_embeddings.weight"]
    names += [n for n in shapes if n.startswith("bridge.")]
    for layer in _gated_layers(spec):
        names += [n for n in shapes if n.startswith(f"{GATED_BLOCK}.{layer}.")]
    return names


# -- LoRA, tokenizer and processor files ---------------------------------------------------------------
def _prepare_lora(model: Any, lora: str) -> bool:
    """Merge the adapters (`merged`, in place) or keep them for a PEFT adapter (`adapter`); returns whether
    a PEFT adapter is to be written. All ranks call it."""
    if lora not in LORA_EXPORTS:
        raise ValueError(f"lora export must be one of {LORA_EXPORTS}, got {lora!r}")
    has_adapters = any(True for _ in lora_modules(model))
    if has_adapters and lora == "merged":
        merge_lora(model)
    return has_adapters and lora == "adapter"


def _load_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object, or one loaded from a `load_tokenizer` source; None/False: no tokenizer."""
    if tokenizer is None or tokenizer is False:
        return None
    if not isinstance(tokenizer, str | os.PathLike):
        return tokenizer
    from protein_llm_nemo.tokenizer import TokenizerConfig, load_tokenizer

    return load_tokenizer(TokenizerConfig(source=str(tokenizer)))


def save_processor(folder: Path, spec: ProteinLLMSpec, tokenizer: Any) -> None:
    """Write the `ProteinLLMProcessor` files (tokenizer + processor config) of a spec into a HF folder."""
    from protein_llm_nemo.hf.processing import ProteinLLMProcessor

    c = spec.bridge_config
    max_length = 2048
    if spec.encoder:
        try:
            from protein_llm_nemo.encoders import get_encoder_config

            max_length = get_encoder_config(spec.encoder, **spec.encoder_config).max_length
        except (KeyError, TypeError, ValueError):
            pass
    if c.cross_attention:
        max_length = min(max_length, c.max_residues)
    processor = ProteinLLMProcessor(
        tokenizer, bridge=c.name, num_slots=c.num_slots if c.uses_encoder else 0, max_length=max_length
    )
    processor.save_pretrained(str(folder))


# -- exports ------------------------------------------------------------------------------------------
def export_protein_llm(
    model: Any,
    spec: ProteinLLMSpec,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    tokenizer: Any = "offline",
    overwrite: bool = False,
    max_shard_bytes: int = 2 * 1024**3,
    source: str = "",
    lora: str = "merged",
) -> Path:
    """A live `ProteinLLMModel` (this rank's shard) -> HF `ProteinLLMForCausalLM` folder. All ranks call it.

    `tokenizer`: a tokenizer object, a `load_tokenizer` source ("offline", a folder, a hub id) or None (no
    processor files). A model with LoRA adapters exports `merged` (W + B A alpha/r, merged in place) or as
    `adapter`: the base weights plus a PEFT adapter in `<out>/lora_adapter` for `peft.PeftModel` on the
    Qwen3 (`PeftModel.from_pretrained(model.language_model, <out>/lora_adapter)`)."""
    check_output_dir(out, overwrite)
    write_adapter = _prepare_lora(model, lora)
    config = hf_protein_llm_config(spec, dtype)
    shapes = hf_protein_llm_shapes(config)
    plan = [TensorPlan(n, shapes[n], dtype) for n in _plan_names(spec, shapes)]
    is_rank0 = _rank() == 0
    with AtomicOutputDir(out, overwrite) as tmp:
        tensors = iter_protein_llm_hf_tensors(model, spec, dtype, shapes)
        stream_to_safetensors(tmp, plan, tensors, max_shard_bytes, write=is_rank0)
        if is_rank0:
            config.save_pretrained(tmp)
            write_generation_config(tmp, spec.arch.vocab_size)
            tok = _load_tokenizer(tokenizer)
            if tok is not None:
                save_processor(tmp, spec, tok)
            write_conversion_note(tmp, source, dtype, "protein_llm")
        if write_adapter:
            adapter_config = lora_config_of(model, spec.lora)
            save_peft_adapter(model, spec.arch, tmp / LORA_ADAPTER_DIR, adapter_config, dtype=dtype)
    return Path(out)


def export_language_model(
    model: Any,
    arch: Qwen3Arch,
    out: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    tokenizer: Any = "offline",
    overwrite: bool = False,
    max_shard_bytes: int = 2 * 1024**3,
    source: str = "",
    lora: str = "merged",
    lora_config: dict[str, Any] | None = None,
) -> Path:
    """The Qwen3 of a live `ProteinLLMModel` (or a bare GPTModel) -> a plain HF Qwen3 folder. All ranks call it.

    Boundary-token rows, bridge and gated blocks are left out: for the `text` bridge this is the whole model.
    LoRA adapters: `merged` into the weights, or a PEFT `adapter` in `<out>/lora_adapter` (`lora_config`:
    the `LoRAConfig` fields to describe it with, default: read off the adapters)."""
    check_output_dir(out, overwrite)
    write_adapter = _prepare_lora(model, lora)
    language_model = getattr(model, "language_model", model)
    shapes = expected_hf_shapes(arch)
    plan = [TensorPlan(k, shapes[k], dtype) for m in qwen3_mappings(arch) for k in m.hf_keys]
    with AtomicOutputDir(out, overwrite) as tmp:
        tensors = iter_hf_tensors(language_model, arch, dtype)
        stream_to_safetensors(tmp, plan, tensors, max_shard_bytes, write=_rank() == 0)
        if _rank() == 0:
            write_qwen3_config(tmp, arch, dtype)
            write_generation_config(tmp, arch.vocab_size)
            tok = _load_tokenizer(tokenizer)
            if tok is not None:
                tok.save_pretrained(str(tmp))
            write_conversion_note(tmp, source, dtype, "qwen3")
        if write_adapter:
            adapter_config = lora_config_of(model, lora_config)
            save_peft_adapter(model, arch, tmp / LORA_ADAPTER_DIR, adapter_config, dtype=dtype)
    return Path(out)


def export_protein_llm_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype | None = None,
    export_format: str = "auto",
    tokenizer: Any = None,
    overwrite: bool = False,
    max_shard_bytes: int = 2 * 1024**3,
    lora: str = "merged",
) -> Path:
    """ProteinLLM megatron checkpoint -> HF folder, at the current layout (single process or torchrun).

    A checkpoint whose header names LoRA (`spec.lora`) is rebuilt with its adapters and exported `merged` or
    as base + PEFT `adapter` (`lora`).

    `export_format`: `protein-llm` (ProteinLLMForCausalLM), `qwen3` (the LLM alone, plain Qwen3), or `auto`
    (`qwen3` for the text bridge, `protein-llm` otherwise). `tokenizer` defaults to the checkpoint's
    `hf_assets` when they hold a tokenizer, else the offline Qwen3 copy."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    check_output_dir(out, overwrite)
    model, spec, header = load_protein_llm_checkpoint(checkpoint)
    dtype = dtype or DTYPES[header.params_dtype]
    if tokenizer is None:
        assets = Path(checkpoint) / HF_ASSETS_DIR
        tokenizer = str(assets) if (assets / "tokenizer.json").is_file() else "offline"
    if export_format == "auto":
        export_format = "qwen3" if not spec.bridge_config.uses_encoder else "protein-llm"
    kwargs = dict(
        dtype=dtype, tokenizer=tokenizer, overwrite=overwrite, max_shard_bytes=max_shard_bytes, lora=lora
    )
    if export_format == "qwen3":
        return export_language_model(
            model, spec.arch, out, source=str(checkpoint), lora_config=spec.lora, **kwargs
        )
    return export_protein_llm(model, spec, out, source=str(checkpoint), **kwargs)
