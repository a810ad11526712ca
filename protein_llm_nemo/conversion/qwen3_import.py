"""HuggingFace Qwen3 folder -> megatron-core GPTModel weights -> dist checkpoint, at any TP x PP layout.

Import reads one HF tensor at a time, builds the global megatron tensor, keeps this rank's shard and
drops the rest; the model is then saved with `dist_checkpointing`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.hf_io import (
    CheckpointError,
    HFCheckpointReader,
    copy_hf_assets,
    read_json_file,
    resolve_hf_source,
)
from protein_llm_nemo.conversion.mappings import (
    DirectMapping,
    WeightMapping,
    expected_hf_shapes,
    global_parameter_names,
    qwen3_mappings,
)
from protein_llm_nemo.conversion.megatron_io import (
    HF_ASSETS_DIR,
    AtomicOutputDir,
    CheckpointHeader,
    check_output_dir,
    dtype_name,
    save_megatron_checkpoint,
)
from protein_llm_nemo.models.qwen3 import Qwen3Arch, build_qwen3_model, transformer_config
from protein_llm_nemo.runtime.logging import get_logger

__all__ = [
    "Qwen3Shards",
    "copy_shard",
    "hf_params_dtype",
    "import_hf_checkpoint",
    "load_hf_weights",
    "read_hf_arch",
    "validate_hf_checkpoint",
]

logger = get_logger(__name__)


def read_hf_arch(folder: Path) -> Qwen3Arch:
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{folder} has no config.json: not a HuggingFace model folder")
    if not isinstance(read_json_file(config_path), dict):  # names the file and the position of a JSON error
        raise CheckpointError(f"{config_path}: expected a JSON object")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise CheckpointError(f"{config_path}: cannot read the model config ({error})") from error
    try:
        return Qwen3Arch.from_hf_config(config)
    except ValueError as error:
        raise CheckpointError(f"{config_path}: {error}") from error


def validate_hf_checkpoint(reader: HFCheckpointReader, arch: Qwen3Arch) -> None:
    """Compare tensor names and shapes with the architecture, from the file headers only."""
    found = reader.shapes()
    expected = expected_hf_shapes(arch)
    if arch.tie_word_embeddings:
        found.pop("lm_head.weight", None)  # some tied checkpoints store the shared head too
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: {found[k]} != expected {expected[k]}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {missing[:6]}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s): {extra[:6]}")
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped tensor(s): {wrong[:6]}")
    if problems:
        raise CheckpointError(f"{reader.folder} does not match its config.json ({'; '.join(problems)})")


def hf_params_dtype(reader: HFCheckpointReader) -> torch.dtype:
    """bfloat16 for an all-bfloat16 checkpoint, float32 for anything else."""
    return torch.bfloat16 if reader.dtypes() == {torch.bfloat16} else torch.float32


@dataclass
class Qwen3Shards:
    """This tensor-parallel rank's shard of any Qwen3 megatron parameter, built from HF tensors.

    `read(hf_name)` returns one HF tensor; `padded_vocab_size`: the embedding rows of the megatron model
    (the vocabulary padded for its TP size).
    """

    arch: Qwen3Arch
    read: Callable[[str], torch.Tensor]
    padded_vocab_size: int
    mappings: dict[str, WeightMapping] = field(init=False)

    def __post_init__(self) -> None:
        self.mappings = {m.megatron: m for m in qwen3_mappings(self.arch)}

    def mapping(self, global_name: str) -> WeightMapping:
        if global_name == "output_layer.weight" and self.arch.tie_word_embeddings:
            # With PP > 1 the last stage keeps its own copy of the tied embedding as the output layer.
            return self.mappings["embedding.word_embeddings.weight"]
        try:
            return self.mappings[global_name]
        except KeyError:
            raise CheckpointError(f"no HuggingFace mapping for megatron parameter {global_name!r}") from None

    def shard(self, global_name: str) -> torch.Tensor:
        """This rank's slice of the canonical global parameter `global_name`."""
        from megatron.core import parallel_state

        mapping = self.mapping(global_name)
        full = mapping.to_megatron({key: self.read(key) for key in mapping.hf_keys}, self.arch)
        is_vocab = isinstance(mapping, DirectMapping) and mapping.parallelism == "vocab"
        if is_vocab and full.shape[0] < self.padded_vocab_size:
            padding = full.new_zeros(self.padded_vocab_size - full.shape[0], *full.shape[1:])
            full = torch.cat([full, padding], dim=0)
        return mapping.shard(
            full,
            parallel_state.get_tensor_model_parallel_rank(),
            parallel_state.get_tensor_model_parallel_world_size(),
        )


def copy_shard(param: torch.Tensor, shard: torch.Tensor, name: str) -> None:
    """Copy a converted shard into its parameter; a shape mismatch is a conversion error."""
    if tuple(shard.shape) != tuple(param.shape):
        raise CheckpointError(
            f"{name}: converted shard {tuple(shard.shape)} != parameter {tuple(param.shape)}"
        )
    param.copy_(shard)


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module, reader: HFCheckpointReader, arch: Qwen3Arch) -> int:
    """Fill this rank's parameters from a HF checkpoint; returns the number of parameters filled."""
    shards = Qwen3Shards(arch, reader.get, model.vocab_size)
    names = global_parameter_names(model)
    for local_name, param in model.named_parameters():
        copy_shard(param, shards.shard(names[local_name]), names[local_name])
    return len(names)


def import_hf_checkpoint(
    hf_source: str | os.PathLike,
    out: str | os.PathLike,
    params_dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> CheckpointHeader:
    """HF Qwen3 folder or hub id -> Megatron dist checkpoint, at the current parallel layout."""
    from megatron.core import parallel_state

    check_output_dir(out, overwrite)  # every rank checks, so all fail together before any work
    folder = resolve_hf_source(hf_source)
    arch = read_hf_arch(folder)
    reader = HFCheckpointReader(folder)
    validate_hf_checkpoint(reader, arch)
    params_dtype = params_dtype or hf_params_dtype(reader)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    # Every weight is overwritten, so skip the random initialisation (minutes at real sizes).
    config = transformer_config(arch, tp, pp, params_dtype=params_dtype, perform_initialization=False)
    model = build_qwen3_model(arch, config=config)
    filled = load_hf_weights(model, reader, arch)
    logger.info("import: filled %d parameters of this stage from %s", filled, folder)
    header = CheckpointHeader(
        arch=arch,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        params_dtype=dtype_name(params_dtype),
        source=str(hf_source),
    )
    with AtomicOutputDir(out, overwrite) as tmp:
        save_megatron_checkpoint(model, tmp, header, release_model_memory=True)
        if not dist.is_initialized() or dist.get_rank() == 0:
            copy_hf_assets(folder, tmp / HF_ASSETS_DIR)
    return header
