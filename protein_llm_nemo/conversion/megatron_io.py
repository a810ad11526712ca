"""The Megatron side of conversion: megatron-core `dist_checkpointing` folders plus a small JSON header.

A dist checkpoint stores every tensor in its global (unsharded) coordinates, so a checkpoint saved at
TP=2 loads at TP=1 or PP=2: megatron reshards on load. Saves are atomic: everything is written into
a sibling temporary folder that replaces the target only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.models.dist_checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_HEADER,
    CheckpointError,
    arch_from_header,
    load_sharded_state,
    read_header_payload,
    read_tensors_metadata,
)
from protein_llm_nemo.models.qwen3 import Qwen3Arch

HF_ASSETS_DIR = "hf_assets"
FORMAT_VERSION = 1
# The dtype names a header's `params_dtype` (and the converters' --dtype) use.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


@dataclass
class CheckpointHeader:
    arch: Qwen3Arch
    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    params_dtype: str = "float32"
    model_type: str = "qwen3"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": FORMAT_VERSION,
            "model_type": self.model_type,
            "arch": self.arch.to_dict(),
            "tensor_model_parallel_size": self.tensor_model_parallel_size,
            "pipeline_model_parallel_size": self.pipeline_model_parallel_size,
            "params_dtype": self.params_dtype,
            "source": self.source,
            "extra": self.extra,
        }
        return json.dumps(payload, indent=2) + "\n"

    @classmethod
    def read(cls, checkpoint: str | os.PathLike) -> CheckpointHeader:
        """The header of a checkpoint; a `CheckpointError` naming the file when it is missing or malformed."""
        path = Path(checkpoint) / CHECKPOINT_HEADER
        payload = read_header_payload(checkpoint)  # the JSON, format and model type checked
        if payload is None:
            raise CheckpointError(
                f"{checkpoint} is not a protein-llm-nemo Megatron checkpoint: {CHECKPOINT_HEADER} is missing"
            )
        try:
            header = cls(
                arch=arch_from_header(payload, path),
                tensor_model_parallel_size=int(payload["tensor_model_parallel_size"]),
                pipeline_model_parallel_size=int(payload["pipeline_model_parallel_size"]),
                params_dtype=payload.get("params_dtype", "float32"),
                model_type=payload["model_type"],
                source=payload.get("source", ""),
                extra=payload.get("extra") or {},
            )
        except KeyError as error:
            raise CheckpointError(f"{path} lacks the entry {error}") from error
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: malformed entry ({error})") from error
        if header.params_dtype not in DTYPES:
            raise CheckpointError(f"{path}: unknown params_dtype {header.params_dtype!r}")
        return header


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _broadcast_str(value: str | None) -> str:
    if not dist.is_initialized():
        assert value is not None
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def check_output_dir(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless `overwrite`; called before any work starts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output {out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"output folder {out} is not empty; pass --overwrite to replace it")


class AtomicOutputDir:
    """Write into `<out>.partial-<id>` and move it to `<out>` on success (all ranks share the temp dir)."""

    def __init__(self, out: str | os.PathLike, overwrite: bool) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        name = None
        if _rank() == 0:
            check_output_dir(self.out, self.overwrite)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            name = str(self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}")
            Path(name).mkdir()
        self.tmp = Path(_broadcast_str(name))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        _barrier()
        if _rank() == 0:
            self._finish(failed=exc_type is not None)
        _barrier()  # nobody reads <out> before it is in place

    def _finish(self, failed: bool) -> None:
        assert self.tmp is not None
        if failed:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            trash = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, trash)
            os.replace(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)


def save_megatron_checkpoint(
    model: torch.nn.Module, folder: Path, header: CheckpointHeader, release_model_memory: bool = False
) -> None:
    """dist_checkpointing save of one model chunk per rank into an (empty) folder, plus the header.

    `release_model_memory` is for one-shot writers such as import: the model is unusable afterwards,
    but the save needs no extra copy of the weights megatron stages as views (see below).
    """
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.models.checkpoint_writer import InProcessSaveStrategy

    sharded_state_dict = model.sharded_state_dict()
    if release_model_memory:
        _stage_views_releasing_parameters(sharded_state_dict, model)
    # no helper processes: a killed import must not leave megatron's writers behind
    dist_checkpointing.save(sharded_state_dict, str(folder), sharded_strategy=InProcessSaveStrategy())
    if _rank() == 0:
        (folder / CHECKPOINT_HEADER).write_text(header.to_json())


def _stage_views_releasing_parameters(sharded_state_dict: dict, model: torch.nn.Module) -> None:
    """Copy the view-backed shards (SwiGLU's gate/up halves of `linear_fc1`) and free their parameter.

    megatron's writer clones every tensor that is a view of a larger storage, which for Qwen3 is the
    whole of `linear_fc1` (30-45% of the weights): the model would sit in memory 1.3-1.45 times. Here
    each fused weight is copied half by half and its parameter storage released at once, so the save
    holds one copy of the weights.
    """
    from collections import defaultdict

    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, apply_factories

    apply_factories(sharded_state_dict)
    views = defaultdict(list)
    for item in nested_values(sharded_state_dict):
        if isinstance(item, ShardedTensor) and isinstance(item.data, torch.Tensor):
            data = item.data
            if data.untyped_storage().nbytes() != data.numel() * data.element_size():
                views[data.untyped_storage().data_ptr()].append(item)
    parameters = {p.untyped_storage().data_ptr(): p for p in model.parameters()}
    for pointer, items in views.items():
        for item in items:
            item.data = item.data.detach().clone()
        if pointer in parameters:
            parameters[pointer].data = torch.empty(0, dtype=parameters[pointer].dtype)


def _shapes_match(stored: Any, expected: Any) -> bool:
    stored_shape, expected_shape = tuple(stored.global_shape), tuple(expected.global_shape)
    if getattr(expected, "allow_shape_mismatch", False):
        # Vocabulary rows are padded per TP size; megatron reshards them on load.
        return stored_shape[1:] == expected_shape[1:]
    return stored_shape == expected_shape


def _all_ranks_union(keys: set[str]) -> set[str]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return keys
    gathered: list[set[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, keys)
    return set().union(*[g for g in gathered if g])


def validate_megatron_checkpoint(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Compare stored tensors with what the model expects (names, global shapes) before loading anything."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, apply_factories

    stored = read_tensors_metadata(checkpoint)
    sharded_state_dict = model.sharded_state_dict()
    apply_factories(sharded_state_dict)  # e.g. the SwiGLU fc1 factory that stores gate and up halves
    expected = {t.key: t for t in nested_values(sharded_state_dict) if isinstance(t, ShardedTensor)}
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise CheckpointError(f"{checkpoint} is missing {len(missing)} tensor(s): {missing[:8]}")
    # Each pipeline stage expects only its own layers: extra means unknown to every rank.
    extra = sorted(set(stored) - _all_ranks_union(set(expected)))
    if extra:
        raise CheckpointError(f"{checkpoint} has {len(extra)} unexpected tensor(s): {extra[:8]}")
    wrong = [
        f"{key}: stored {tuple(stored[key].global_shape)}, model expects {tuple(sharded.global_shape)}"
        for key, sharded in expected.items()
        if not _shapes_match(stored[key], sharded)
    ]
    if wrong:
        raise CheckpointError(f"{checkpoint} has mis-shaped tensors: {wrong[:8]}")


def load_megatron_checkpoint(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Validate, then load a dist checkpoint into this rank's model chunk."""
    validate_megatron_checkpoint(model, checkpoint)
    load_sharded_state(model, checkpoint)
