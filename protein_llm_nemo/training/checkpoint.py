"""Training checkpoints: megatron `dist_checkpointing` of model + optimizer + scheduler + data position + RNG.

Layout under `CheckpointConfig.dir`:

    step_0000010/          one complete checkpoint (dist_checkpointing files + train_state.json)
    step_0000020/
    latest                 text: the name of the newest complete checkpoint

A checkpoint is written into a hidden temp sibling and renamed into place (`AtomicOutputDir`); its marker
`train_state.json` (with the list of every file) is written last, after every rank's files are on disk, so a
crash mid-save leaves the previous checkpoints intact and no `step_*` folder that looks complete. After a
save the oldest `step_*` beyond `keep_last` are renamed out of view, then deleted; what a killed save or
deletion left is removed at the next save (`checkpoint_files`). The files are written on threads of each
rank, not in forked writers that would outlive a killed rank (`models/checkpoint_writer.py`).

Entries: the model's `sharded_state_dict()` (any TP/PP layout loads it), the megatron optimizer's
`sharded_state_dict(model_state)` (non-distributed optimizer: replicated over DP, so loadable at any DP
size), the scheduler state, the data position (global, DP-size independent: see `batches.GlobalBatchSampler`)
and the step as common state; RNG states (python, numpy, torch, CUDA, megatron's tracker streams) as a
`ShardedObject` per (pipeline, tensor) rank, restored only at the same TP/PP layout (data-parallel replicas
share their streams, so any DP size restores them).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.megatron_io import CHECKPOINT_HEADER, AtomicOutputDir
from protein_llm_nemo.models.dist_checkpoint import load_sharded_state
from protein_llm_nemo.runtime import get_logger
from protein_llm_nemo.training.checkpoint_files import (
    LATEST,
    STEP_PATTERN,
    TRAIN_STATE,
    incomplete_reason,
    latest_checkpoint,
    list_checkpoints,
    prune,
    remove_stale,
    step_dir_name,
    write_latest,
    write_marker,
)
from protein_llm_nemo.training.ddp import unwrap

logger = get_logger(__name__)

__all__ = [
    "LATEST",
    "STEP_PATTERN",
    "TRAIN_STATE",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_weights",
    "resolve_resume",
    "save_checkpoint",
    "step_dir_name",
]

FORMAT_VERSION = 1


def _layout() -> dict[str, int]:
    from megatron.core import parallel_state

    return {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": parallel_state.get_pipeline_model_parallel_world_size(),
        "data_parallel_size": parallel_state.get_data_parallel_world_size(),
    }


# -- RNG ---------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    from megatron.core import tensor_parallel

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _rng_sharded_object(data: Any):
    from megatron.core import parallel_state
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    return ShardedObject(
        "rng_state",
        data,
        (
            parallel_state.get_pipeline_model_parallel_world_size(),
            parallel_state.get_tensor_model_parallel_world_size(),
        ),
        (parallel_state.get_pipeline_model_parallel_rank(), parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(),
    )


# -- state dicts --------------------------------------------------------------------------------------------
def _only_model(model_chunks) -> torch.nn.Module:
    if len(model_chunks) != 1:
        raise NotImplementedError("virtual pipeline stages (several model chunks) are not checkpointed yet")
    return unwrap(model_chunks[0])


def save_checkpoint(
    root: str | Path,
    step: int,
    model_chunks,
    optimizer,
    scheduler,
    data_state: dict,
    extra: dict | None = None,
    keep_last: int = 0,
    export_header: Any = None,
) -> Path:
    """Write `root/step_<step>` atomically (every rank calls this); returns its path.

    `export_header` (a `CheckpointHeader` naming the architecture, bridge, encoder and LoRA) makes the step
    folder a ProteinLLM checkpoint that `protein-llm convert export` reads as it is.
    """
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.models.checkpoint_writer import InProcessSaveStrategy

    root = Path(root)
    out = root / step_dir_name(step)
    model_state = _only_model(model_chunks).sharded_state_dict()
    state: dict[str, Any] = {"model": model_state}
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(model_state, is_loading=False)
    state["rng"] = _rng_sharded_object(rng_state())
    state["scheduler"] = scheduler.state_dict() if scheduler is not None else {}
    state["data"] = dict(data_state)
    state["step"] = step
    train_state = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "layout": _layout(),
        "data": dict(data_state),
        **(extra or {}),
    }
    state["train_state"] = train_state
    if _rank() == 0:
        remove_stale(root)  # before writing: a killed save's temp folder may hold a whole checkpoint's space
    with AtomicOutputDir(out, overwrite=True) as tmp:
        dist_checkpointing.save(state, str(tmp), sharded_strategy=InProcessSaveStrategy())
        if _rank() == 0 and export_header is not None:
            (tmp / CHECKPOINT_HEADER).write_text(export_header.to_json())
        _barrier()  # every rank's files are on disk before the marker says the folder is complete
        if _rank() == 0:
            write_marker(tmp, train_state)
    if _rank() == 0:
        write_latest(root, out.name)
        prune(root, keep_last, keep=out)
    _barrier()
    return out


def load_checkpoint(path: str | Path, model_chunks, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler (and RNG at the same layout); returns the common train state
    (`step`, `data`, ...)."""
    from megatron.core import dist_checkpointing

    path = Path(path)
    common = dist_checkpointing.load_common_state_dict(str(path))
    saved_layout = common["train_state"]["layout"]
    layout = _layout()
    same_model_layout = all(
        saved_layout[k] == layout[k] for k in ("tensor_model_parallel_size", "pipeline_model_parallel_size")
    )

    def optimizer_and_rng(model_state: dict) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if optimizer is not None:
            state["optimizer"] = optimizer.sharded_state_dict(model_state, is_loading=True)
        if same_model_layout:
            state["rng"] = _rng_sharded_object(None)
        return state

    loaded = load_sharded_state(_only_model(model_chunks), path, also_load=optimizer_and_rng)
    if optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(loaded["scheduler"])
    if same_model_layout:
        set_rng_state(loaded["rng"])
    else:
        logger.warning(
            "checkpoint %s was saved at TP/PP %s; RNG streams are not restored at this layout (%s)",
            path,
            saved_layout,
            layout,
        )
    # DDP keeps a separate fp32 copy only for fp16/bf16 optimizers; those reload their main params above.
    return dict(loaded["train_state"], data=loaded["data"], step=int(loaded["step"]))


def load_model_weights(path: str | Path, model_chunks) -> None:
    """Only the model weights of a training checkpoint (e.g. SSL's, to start SFT)."""
    load_sharded_state(_only_model(model_chunks), path)


def resolve_resume(root: str | None, resume_from: str | None, auto_resume: bool) -> Path | None:
    if resume_from:
        path = Path(resume_from)
        if path.is_dir() and not (path / TRAIN_STATE).is_file() and not STEP_PATTERN.match(path.name):
            newest = latest_checkpoint(path)  # a checkpoint root was given
            if newest is None:
                raise FileNotFoundError(f"{path} holds no complete training checkpoint")
            return newest
        reason = incomplete_reason(path)
        if reason is not None:
            raise FileNotFoundError(f"{path} is not a complete training checkpoint ({reason})")
        return path
    if auto_resume and root:
        return latest_checkpoint(root)
    return None


# -- distributed ----------------------------------------------------------------------------------------
def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
