"""megatron-core Qwen3 -> HuggingFace tensors and folders, from a live model or straight from a checkpoint.

A live (TP/PP-sharded) model is gathered one parameter at a time over tensor parallelism and moved from its
pipeline stage to rank 0 (`iter_hf_tensors`). A dist checkpoint is read by rank 0 alone, one stored key at
a time, without building the model (`iter_hf_tensors_from_checkpoint`). Either stream is appended to
safetensors shards as it arrives: no rank ever holds the model twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.hf_io import (
    CheckpointError,
    TensorPlan,
    copy_hf_assets,
    stream_to_safetensors,
)
from protein_llm_nemo.conversion.hf_metadata import write_generation_config, write_qwen3_config
from protein_llm_nemo.conversion.mappings import (
    TE_NAME_ALIASES,
    DirectMapping,
    WeightMapping,
    expected_hf_shapes,
    global_parameter_names,
    qwen3_mappings,
)
from protein_llm_nemo.conversion.megatron_io import (
    DTYPES,
    HF_ASSETS_DIR,
    AtomicOutputDir,
    CheckpointHeader,
    check_output_dir,
    dtype_name,
)
from protein_llm_nemo.models.dist_checkpoint import (
    read_tensors_metadata,
    storage_error,
    unreadable_storage_files,
)
from protein_llm_nemo.models.qwen3 import Qwen3Arch

__all__ = [
    "export_hf_checkpoint",
    "export_plan",
    "iter_hf_tensors",
    "iter_hf_tensors_from_checkpoint",
    "stage_of_layer",
    "validate_dist_checkpoint_for_export",
    "write_conversion_note",
]


def stage_of_layer(layer: int, arch: Qwen3Arch, pp_size: int) -> int:
    """The pipeline stage holding global decoder layer `layer` (megatron splits layers evenly)."""
    return layer // (arch.num_hidden_layers // pp_size)


def _owner_stage(mapping: WeightMapping, arch: Qwen3Arch, pp_size: int) -> int:
    if mapping.megatron.startswith("decoder.layers."):
        return stage_of_layer(int(mapping.megatron.split(".")[2]), arch, pp_size)
    return 0 if mapping.megatron.startswith("embedding.") else pp_size - 1


# -- live model ---------------------------------------------------------------------------------------
@torch.no_grad()
def iter_hf_tensors(
    model: torch.nn.Module, arch: Qwen3Arch, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, tensor) on global rank 0, one at a time; other ranks send their parts and yield nothing.

    Every rank must iterate to the end: gathers and sends are collective.
    """
    from megatron.core import parallel_state

    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    tp_size = parallel_state.get_tensor_model_parallel_world_size()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    pp_size = parallel_state.get_pipeline_model_parallel_world_size()
    dp_rank = parallel_state.get_data_parallel_rank()
    pp_ranks = (
        dist.get_process_group_ranks(parallel_state.get_pipeline_model_parallel_group())
        if pp_size > 1
        else [0]
    )
    rank = dist.get_rank() if dist.is_initialized() else 0
    params = {name: param for name, param in model.named_parameters()}
    by_global = {global_name: params[local] for local, global_name in global_parameter_names(model).items()}
    hf_shapes = expected_hf_shapes(arch)

    for mapping in qwen3_mappings(arch):
        owner = _owner_stage(mapping, arch, pp_size)
        hf_tensors: dict[str, torch.Tensor] = {}
        if pp_rank == owner:
            local = by_global[mapping.megatron].detach()
            if tp_size > 1:
                shards = [torch.empty_like(local) for _ in range(tp_size)]
                dist.all_gather(
                    shards, local.contiguous(), group=parallel_state.get_tensor_model_parallel_group()
                )
            else:
                shards = [local]
            hf_tensors = {k: v.to(dtype) for k, v in mapping.to_hf(mapping.gather(shards), arch).items()}
        if owner != 0:
            # The stage's (tp 0, dp 0) rank sends to global rank 0, which sits in the same pipeline group.
            sender = pp_ranks[owner] if rank == 0 else None
            if pp_rank == owner and tp_rank == 0 and dp_rank == 0:
                for key in mapping.hf_keys:
                    dist.send(hf_tensors[key].contiguous(), dst=pp_ranks[0])
            elif rank == 0:
                for key in mapping.hf_keys:
                    buffer = torch.empty(hf_shapes[key], dtype=dtype)
                    dist.recv(buffer, src=sender)
                    hf_tensors[key] = buffer
        if rank == 0:
            for key in mapping.hf_keys:
                yield key, hf_tensors[key]


# -- dist checkpoint, without the model ----------------------------------------------------------------
def _dist_checkpoint_key(megatron_name: str) -> tuple[str, int | None]:
    """Canonical megatron name -> (dist checkpoint key, layer index along the stacked axis or None).

    megatron stores decoder layers stacked along a leading axis under one key per parameter, with
    TransformerEngine's names (`input_layernorm` is `self_attention.linear_qkv.layer_norm_weight`).
    """
    if not megatron_name.startswith("decoder.layers."):
        return megatron_name, None
    _, _, layer, rest = megatron_name.split(".", 3)
    for te_suffix, local_suffix in TE_NAME_ALIASES.items():
        if rest == local_suffix:
            rest = te_suffix
    return f"decoder.layers.{rest}", int(layer)


def _global_megatron_shape(mapping: WeightMapping, hf_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    first = hf_shapes[mapping.hf_keys[0]]
    if isinstance(mapping, DirectMapping):
        return first
    return (sum(hf_shapes[key][0] for key in mapping.hf_keys), first[1])


def validate_dist_checkpoint_for_export(checkpoint: str | os.PathLike, arch: Qwen3Arch) -> dict:
    """Check a dist checkpoint holds exactly this architecture's tensors, in data files of the size its
    metadata says (a truncated copy fails here, before anything is written); returns the stored metadata."""
    stored = read_tensors_metadata(checkpoint)
    hf_shapes = expected_hf_shapes(arch)
    expected: dict[str, tuple[int, ...]] = {}
    vocab_keys = set()
    for mapping in qwen3_mappings(arch):
        key, layer = _dist_checkpoint_key(mapping.megatron)
        shape = _global_megatron_shape(mapping, hf_shapes)
        expected[key] = shape if layer is None else (arch.num_hidden_layers, *shape)
        if isinstance(mapping, DirectMapping) and mapping.parallelism == "vocab":
            vocab_keys.add(key)
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise CheckpointError(f"{checkpoint} is missing {len(missing)} tensor(s): {missing[:8]}")
    extra = sorted(set(stored) - set(expected))
    if extra:
        raise CheckpointError(f"{checkpoint} has {len(extra)} unexpected tensor(s): {extra[:8]}")
    wrong = []
    for key, shape in expected.items():
        found = tuple(stored[key].global_shape)
        # Vocabulary rows are padded for the TP size the checkpoint was written at.
        ok = found[1:] == shape[1:] and found[0] >= shape[0] if key in vocab_keys else found == shape
        if not ok:
            wrong.append(f"{key}: stored {found}, architecture needs {shape}")
    if wrong:
        raise CheckpointError(f"{checkpoint} has mis-shaped tensors: {wrong[:8]}")
    unreadable = unreadable_storage_files(checkpoint)
    if unreadable:
        raise CheckpointError(
            f"{checkpoint} cannot be read: {'; '.join(unreadable)} (an incomplete copy or save)"
        )
    return stored


def _export_groups(arch: Qwen3Arch) -> list[tuple[str, list[WeightMapping]]]:
    """Mappings grouped by dist checkpoint key (a stacked key holds one parameter of every layer)."""
    groups: dict[str, list[WeightMapping]] = {}
    for mapping in qwen3_mappings(arch):
        groups.setdefault(_dist_checkpoint_key(mapping.megatron)[0], []).append(mapping)
    return list(groups.items())


@torch.no_grad()
def iter_hf_tensors_from_checkpoint(
    checkpoint: str | os.PathLike, arch: Qwen3Arch, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (HF name, tensor) on rank 0, read straight from a dist checkpoint one stored key at a time.

    Only rank 0 reads; the others return at once.

    Whatever TP/PP the checkpoint was written at, it stores global tensors, so one process reads them
    without building the model. Memory holds the largest stored key (all layers' `linear_fc1`, about
    30-45% of a Qwen3), not the model. (Reading one layer of a stacked key in a single process trips
    megatron's regular-grid assumption for keys saved in fragments, such as the SwiGLU halves.)
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import CheckpointException

    stored = validate_dist_checkpoint_for_export(checkpoint, arch)
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    reader = dcp.FileSystemReader(str(checkpoint))
    for key, mappings in _export_groups(arch):
        meta = stored[key]
        # megatron's torch_dist format is torch DCP underneath: read one global tensor, no collectives.
        loaded = {key: torch.empty(tuple(meta.global_shape), dtype=meta.dtype)}
        try:
            dcp.load(loaded, storage_reader=reader, no_dist=True)
        except (Exception, CheckpointException) as error:  # DCP's CheckpointException is a BaseException
            unreadable = storage_error(checkpoint, error)
            last = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            raise unreadable or CheckpointError(
                f"{checkpoint}: cannot read tensor {key!r} from its .distcp files ({last})"
            ) from error
        full = loaded.pop(key)
        for mapping in mappings:
            layer = _dist_checkpoint_key(mapping.megatron)[1]
            tensor = full if layer is None else full[layer]
            for name, hf_tensor in mapping.to_hf(tensor, arch).items():
                yield name, hf_tensor.to(dtype)
        del full


def export_plan(arch: Qwen3Arch, dtype: torch.dtype) -> list[TensorPlan]:
    """The HF tensors an export writes, in the order `iter_hf_tensors_from_checkpoint` yields them."""
    shapes = expected_hf_shapes(arch)
    return [
        TensorPlan(key, shapes[key], dtype)
        for _, group in _export_groups(arch)
        for m in group
        for key in m.hf_keys
    ]


def write_conversion_note(folder: Path, source: str, dtype: torch.dtype, kind: str) -> None:
    """`conversion.json`: where an exported folder came from, its dtype and format."""
    note = {"exported_from": source, "dtype": dtype_name(dtype), "format": kind}
    (folder / "conversion.json").write_text(json.dumps(note, indent=2) + "\n")


def export_hf_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    max_shard_bytes: int = 2 * 1024**3,
) -> Path:
    """Megatron dist checkpoint -> HF Qwen3 folder (config, sharded safetensors, tokenizer files).

    Rank 0 streams the tensors; under torchrun the other ranks wait for it.
    """
    check_output_dir(out, overwrite)
    header = CheckpointHeader.read(checkpoint)
    dtype = dtype or DTYPES[header.params_dtype]
    is_rank0 = not dist.is_initialized() or dist.get_rank() == 0
    with AtomicOutputDir(out, overwrite) as tmp:
        tensors = iter_hf_tensors_from_checkpoint(checkpoint, header.arch, dtype)
        stream_to_safetensors(tmp, export_plan(header.arch, dtype), tensors, max_shard_bytes, write=is_rank0)
        if is_rank0:
            write_qwen3_config(tmp, header.arch, dtype)
            copy_hf_assets(Path(checkpoint) / HF_ASSETS_DIR, tmp)
            write_generation_config(tmp, header.arch.vocab_size)  # completes the source's, if copied
            write_conversion_note(tmp, str(checkpoint), dtype, "qwen3")
    return Path(out)
