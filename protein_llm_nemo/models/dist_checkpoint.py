"""Load a module's weights from a megatron dist checkpoint, whatever TP/PP layout wrote it; read its header.

The one loader behind every reader of model weights: `ProteinLLMModel.load_language_model`, the
conversion code's Qwen3 and ProteinLLM checkpoints, and training resume. A dist checkpoint addresses each
tensor by its own global key, so the module's entries load whether the checkpoint nests them (a training
checkpoint keeps them under `model`) or not, and next to whatever else it holds (optimizer, scheduler).

The header (`protein_llm_checkpoint.json`, written by `protein-llm convert import` and by training runs)
records the Qwen3 architecture; `read_checkpoint_arch` reads it here, below `conversion`, so the model can
check a checkpoint before loading it. Unreadable files (truncated `.distcp`, corrupt JSON) raise
`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from protein_llm_nemo.models.qwen3 import Qwen3Arch

__all__ = [
    "ARCH_FIELDS_CHECKED",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_HEADER",
    "CheckpointError",
    "CheckpointMismatchError",
    "arch_differences",
    "arch_from_header",
    "load_sharded_state",
    "read_checkpoint_arch",
    "read_header_payload",
    "read_json_file",
    "read_tensors_metadata",
    "storage_error",
    "unreadable_storage_files",
]

CHECKPOINT_HEADER = "protein_llm_checkpoint.json"
CHECKPOINT_FORMAT = "protein-llm-nemo/megatron-dist"
# Architecture fields that make loaded weights a different model when they differ. Not compared:
# max_position_embeddings (a serving limit; megatron's rotary tables follow the input length) and
# initializer_range (used only by fresh weights).
ARCH_FIELDS_CHECKED = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
    "rope_theta",
    "rms_norm_eps",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, converted or loaded: unreadable files, missing, extra or mis-shaped
    tensors, another architecture. The message names the file or the tensors."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint lacks weights the module needs, holds some it lacks, or describes another model."""


def read_json_file(path: str | os.PathLike) -> Any:
    """The JSON in `path`; a `CheckpointError` naming the file (and the position of a syntax error)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read it ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path} is corrupt: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from error


def read_header_payload(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The checked JSON of a checkpoint's header; None when the checkpoint has no header."""
    path = Path(checkpoint) / CHECKPOINT_HEADER
    if not path.is_file():
        return None
    payload = read_json_file(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: unknown checkpoint format {found!r}")
    if payload.get("model_type") != "qwen3":
        raise CheckpointError(
            f"{path}: architecture {payload.get('model_type')!r} is not supported (qwen3 only)"
        )
    return payload


def arch_from_header(payload: dict[str, Any], path: str | os.PathLike) -> Qwen3Arch:
    """The `Qwen3Arch` of a header payload (`path`: the header file, for messages)."""
    if not isinstance(payload.get("arch"), dict):
        raise CheckpointError(f"{path} has no 'arch' entry")
    try:
        return Qwen3Arch.from_dict(payload["arch"])
    except (TypeError, ValueError) as error:  # missing, unknown or inconsistent fields
        raise CheckpointError(f"{path}: its 'arch' entry is not a Qwen3 architecture ({error})") from error


def read_checkpoint_arch(checkpoint: str | os.PathLike) -> Qwen3Arch | None:
    """The Qwen3 architecture a checkpoint's header records; None for a checkpoint without a header."""
    payload = read_header_payload(checkpoint)
    if payload is None:
        return None
    return arch_from_header(payload, Path(checkpoint) / CHECKPOINT_HEADER)


def arch_differences(configured: dict[str, Any], stored: Qwen3Arch) -> list[str]:
    """`field: model X, checkpoint Y` for each `ARCH_FIELDS_CHECKED` field where `configured` (the built
    model's values, see `models.qwen3.qwen3_arch_of`) and `stored` differ."""
    differences = []
    for name in ARCH_FIELDS_CHECKED:
        mine, theirs = configured[name], getattr(stored, name)
        same = (
            math.isclose(float(mine), float(theirs), rel_tol=1e-9)
            if isinstance(theirs, float)
            else mine == theirs
        )
        if not same:
            differences.append(f"{name}: model {mine}, checkpoint {theirs}")
    return differences


def read_tensors_metadata(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """megatron's tensor index of a dist checkpoint (keys, global shapes, dtypes), read without the data."""
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint import CheckpointException

    folder = Path(checkpoint)
    if not (folder / "metadata.json").is_file():
        raise CheckpointError(f"{folder} is not a megatron dist checkpoint: metadata.json is missing")
    try:
        return dist_checkpointing.load_tensors_metadata(str(folder))
    except (Exception, CheckpointException) as error:  # DCP's CheckpointException is a BaseException
        raise CheckpointError(
            f"{folder / '.metadata'}: cannot read the dist checkpoint metadata ({_last_line(error)})"
        ) from error


def unreadable_storage_files(checkpoint: str | os.PathLike) -> list[str]:
    """Data files of a dist checkpoint (`*.distcp`) that are missing or shorter than its metadata says, e.g.
    a copy or a save cut short: `name is missing` / `name is truncated (n of m bytes)`. Reads no tensor."""
    import torch.distributed.checkpoint as dcp

    folder = Path(checkpoint)
    try:
        storage = dcp.FileSystemReader(str(folder)).read_metadata().storage_data or {}
    except Exception:  # an unreadable index is reported by read_tensors_metadata
        return []
    needed: dict[str, int] = {}
    for info in storage.values():
        end = int(getattr(info, "offset", 0)) + int(getattr(info, "length", 0))
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    problems = []
    for name, size in sorted(needed.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size < size:
            problems.append(f"{path} is truncated ({path.stat().st_size} of {size} bytes)")
    return problems


def storage_error(checkpoint: str | os.PathLike, error: BaseException) -> CheckpointError | None:
    """A `CheckpointError` naming the missing or truncated data files when they explain `error`, else None."""
    problems = unreadable_storage_files(checkpoint)
    if not problems:
        return None
    return CheckpointError(
        f"{checkpoint} cannot be read: {'; '.join(problems)} (an incomplete copy or save; "
        f"{type(error).__name__} while reading)"
    )


def _last_line(error: BaseException) -> str:
    """DCP's message holds every rank's traceback; its last line names the failure."""
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]


def load_sharded_state(
    module: nn.Module,
    checkpoint: str | os.PathLike,
    prefix: str = "",
    skip: Callable[[str], bool] | None = None,
    also_load: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fill this rank's shards of `module` from the dist checkpoint folder `checkpoint`.

    - `prefix`: what the checkpoint's keys put in front of the module's own names (`language_model.` for
      the LLM inside a ProteinLLM checkpoint).
    - `skip(name)`: module state names (without `prefix`) the checkpoint is not expected to hold; they keep
      their current values (e.g. LoRA adapters and gated blocks when loading a plain LLM).
    - `also_load(model_state)`: more sharded entries to read in the same pass, built from the module's
      sharded state (an optimizer's state is keyed by its parameters').

    Every other entry must load: a missing, unexpected or unreadable one raises `CheckpointMismatchError`
    naming the keys; a missing or truncated data file raises `CheckpointError` naming the file.
    `_extra_state` entries (TransformerEngine's FP8 metadata) are never a mismatch.
    Returns the loaded entries that are not the module's: `also_load`'s and the checkpoint's common state
    (a training checkpoint's step, scheduler and data position). Every rank of the layout calls it.
    """
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint import CheckpointException

    def skipped(name: str) -> bool:
        return skip is not None and skip(name)

    model_state = {
        key: value
        for key, value in module.sharded_state_dict(prefix=prefix).items()
        if not skipped(key.removeprefix(prefix))
    }
    request = {**model_state, **(also_load(model_state) if also_load is not None else {})}
    try:
        loaded = dist_checkpointing.load(request, str(checkpoint))
    except (Exception, CheckpointException) as error:  # torch DCP's CheckpointException is a BaseException
        unreadable = storage_error(checkpoint, error)
        if unreadable is not None:
            raise unreadable from error
        # Absent or mis-shaped keys raise assorted types; the last line names the key (the error stays chained).
        raise CheckpointMismatchError(
            f"{checkpoint}: cannot load it into the model ({_last_line(error)})"
        ) from error
    weights = {key.removeprefix(prefix): loaded.pop(key) for key in model_state if key in loaded}
    missing, unexpected = module.load_state_dict(weights, strict=False)
    mismatched = sorted(
        key for key in [*missing, *unexpected] if not skipped(key) and not key.endswith("_extra_state")
    )
    if mismatched:
        raise CheckpointMismatchError(
            f"{checkpoint} does not match the model: {len(mismatched)} mismatched key(s), e.g. {mismatched[:8]}"
        )
    return loaded
