"""Load a module's weights from a megatron dist checkpoint, whatever TP/PP layout wrote it.

The one loader behind every reader of model weights: `ProteinLLMModel.load_language_model`, the
conversion code's Qwen3 and ProteinLLM checkpoints, and training resume. A dist checkpoint addresses each
tensor by its own global key, so the module's entries load whether the checkpoint nests them (a training
checkpoint keeps them under `model`) or not, and next to whatever else it holds (optimizer, scheduler).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["CheckpointMismatchError", "load_sharded_state"]


class CheckpointMismatchError(ValueError):
    """The checkpoint lacks weights the module needs, holds some it lacks, or cannot be read into it."""


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
    naming the keys. `_extra_state` entries (TransformerEngine's FP8 metadata) are never a mismatch.
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
        # Absent or mis-shaped keys raise assorted types; DCP's message holds every rank's traceback, whose
        # last line names the key (the whole error stays chained).
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        raise CheckpointMismatchError(f"{checkpoint}: cannot load it into the model ({reason})") from error
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
