"""Streaming access to HuggingFace checkpoint folders (safetensors, single file or sharded with an index).

Reading opens the file for each request, so no memory map outlives the tensor it served: a whole
model is never resident twice. Writing plans the shards up front and
streams each tensor's bytes to disk as it arrives; the index is written last.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

# Defined next to the dist-checkpoint loader (models may not import conversion); re-exported here.
from protein_llm_nemo.models.dist_checkpoint import CheckpointError, read_json_file

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
# Files of a HF model folder that are not weights and travel with the checkpoint.
HF_ASSET_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
_DTYPE_NAMES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
}


__all__ = [
    "CheckpointError",
    "HFCheckpointReader",
    "HFCheckpointWriter",
    "TensorPlan",
    "copy_hf_assets",
    "open_safetensors",
    "read_json_file",
    "resolve_hf_source",
    "stream_to_safetensors",
]


@contextmanager
def open_safetensors(file: Path) -> Iterator[Any]:
    """`safe_open` whose format errors (a truncated or corrupt file) are a `CheckpointError` naming the file."""
    try:
        with safe_open(file, framework="pt") as handle:
            yield handle
    except SafetensorError as error:
        raise CheckpointError(
            f"{file} is not a readable safetensors file ({error}); the download or copy may be incomplete"
        ) from error
    except OSError as error:
        raise CheckpointError(f"{file}: cannot read it ({error})") from error


def resolve_hf_source(source: str | os.PathLike) -> Path:
    """A local HF folder as-is; otherwise a hub id fetched into the local cache (config + safetensors)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a HuggingFace model folder or a hub id")
    looks_like_hub_id = str(source).count("/") == 1 and not str(source).startswith((".", "/"))
    if not looks_like_hub_id:
        raise CheckpointError(f"{source}: no such folder (and not a hub id of the form 'org/name')")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=str(source),
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            )
        )
    except Exception as error:  # hub errors come in many types; the message is what matters here
        raise CheckpointError(
            f"could not fetch {source!r} from the HuggingFace hub ({type(error).__name__}: {error}). "
            "On an offline machine, download the model elsewhere and pass its local folder instead."
        ) from error


class HFCheckpointReader:
    """Tensor-by-tensor reader of a HF safetensors checkpoint folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index_path = self.folder / SAFETENSORS_INDEX
        single_path = self.folder / SAFETENSORS_SINGLE
        if index_path.exists():
            index = read_json_file(index_path)
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index_path} has no 'weight_map' (tensor name -> shard file)")
            self._files = {name: self.folder / file for name, file in weight_map.items()}
        elif single_path.exists():
            with open_safetensors(single_path) as handle:
                self._files = dict.fromkeys(handle.keys(), single_path)
        else:
            found = sorted(p.name for p in self.folder.glob("*"))[:10]
            raise CheckpointError(
                f"{self.folder} holds no {SAFETENSORS_SINGLE} or {SAFETENSORS_INDEX} (found: {found}); "
                "only safetensors checkpoints are read (pickled .bin files are refused for safety)"
            )
        missing_files = sorted({str(p) for p in self._files.values() if not p.exists()})
        if missing_files:
            raise CheckpointError(
                f"the index of {self.folder} names shard files that do not exist: {missing_files}"
            )

    def keys(self) -> list[str]:
        return list(self._files)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes from the safetensors headers, without reading any tensor data."""
        shapes: dict[str, tuple[int, ...]] = {}
        for file in sorted(set(self._files.values())):
            with open_safetensors(file) as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        return shapes

    def dtypes(self) -> set[torch.dtype]:
        found: set[torch.dtype] = set()
        for file in sorted(set(self._files.values())):
            with open_safetensors(file) as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                    dtype_name = handle.get_slice(name).get_dtype()
                    found.add(_DTYPE_NAMES.get(dtype_name, torch.float32))
        return found

    def get(self, name: str) -> torch.Tensor:
        try:
            file = self._files[name]
        except KeyError:
            raise CheckpointError(f"tensor {name!r} is not in the checkpoint {self.folder}") from None
        with open_safetensors(file) as handle:
            return handle.get_tensor(name)


_SAFETENSORS_DTYPES = {v: k for k, v in _DTYPE_NAMES.items()}


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


class HFCheckpointWriter:
    """Streams tensors straight into safetensors shards whose layout is planned up front.

    The safetensors header (names, shapes, byte offsets) comes first in each file, so the writer
    takes the full list of tensors in advance, writes every header, and then appends each tensor's
    bytes as it arrives: memory holds one tensor at a time, never a whole shard.
    """

    def __init__(
        self, folder: str | os.PathLike, plan: list[TensorPlan], max_shard_bytes: int = 2 * 1024**3
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        shards: list[list[TensorPlan]] = [[]]
        shard_bytes = 0
        for item in plan:
            if shards[-1] and shard_bytes + item.nbytes > max_shard_bytes:
                shards.append([])
                shard_bytes = 0
            shards[-1].append(item)
            shard_bytes += item.nbytes
        count = len(shards)
        names = (
            [SAFETENSORS_SINGLE]
            if count == 1
            else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        )
        self._queue: list[tuple[TensorPlan, int]] = [
            (item, i) for i, shard in enumerate(shards) for item in shard
        ]
        self._position = 0
        self._files = [
            self._open_shard(self.folder / name, shard) for name, shard in zip(names, shards, strict=True)
        ]
        self._file_names = names
        self.total_bytes = sum(item.nbytes for item in plan)

    @staticmethod
    def _open_shard(path: Path, items: list[TensorPlan]):
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for item in items:
            header[item.name] = {
                "dtype": _SAFETENSORS_DTYPES[item.dtype],
                "shape": list(item.shape),
                "data_offsets": [offset, offset + item.nbytes],
            }
            offset += item.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the format aligns tensor data to 8 bytes
        handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        return handle

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if self._position >= len(self._queue):
            raise CheckpointError(f"tensor {name!r} is not in the export plan")
        item, shard = self._queue[self._position]
        if name != item.name or tuple(tensor.shape) != item.shape or tensor.dtype != item.dtype:
            raise CheckpointError(
                f"export out of plan: got {name} {tuple(tensor.shape)} {tensor.dtype}, "
                f"expected {item.name} {item.shape} {item.dtype}"
            )
        data = tensor.detach().contiguous().cpu()
        # Reinterpret as bytes without a copy (bf16 has no NumPy dtype).
        self._files[shard].write(data.reshape(-1).view(torch.uint8).numpy().data)
        self._position += 1

    def abort(self) -> None:
        """Close the files after a failure (the caller discards the folder)."""
        for handle in self._files:
            handle.close()

    def close(self) -> dict[str, str]:
        """Check every planned tensor arrived, close the files, write the index; returns the weight map."""
        for handle in self._files:
            handle.close()
        if self._position != len(self._queue):
            missing = [item.name for item, _ in self._queue[self._position :]]
            raise CheckpointError(f"export ended before {len(missing)} planned tensor(s): {missing[:6]}")
        weight_map = {item.name: self._file_names[shard] for item, shard in self._queue}
        if len(self._files) > 1:
            index = {
                "metadata": {"total_size": self.total_bytes},
                "weight_map": dict(sorted(weight_map.items())),
            }
            (self.folder / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return weight_map


def stream_to_safetensors(
    folder: str | os.PathLike,
    plan: list[TensorPlan],
    tensors: Iterable[tuple[str, torch.Tensor]],
    max_shard_bytes: int,
    write: bool,
) -> None:
    """Drain `tensors` into planned shards on the writing rank; other ranks only drain (their iterator's
    gathers and sends may be collective, and it yields nothing there). A failure closes the files."""
    writer = HFCheckpointWriter(folder, plan, max_shard_bytes) if write else None
    try:
        for name, tensor in tensors:
            if writer is None:
                raise CheckpointError(f"tensor {name!r} reached a rank that does not write")
            writer.add(name, tensor)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()


def copy_hf_assets(source: Path, target: Path, names: tuple[str, ...] = HF_ASSET_FILES) -> list[str]:
    """Copy the non-weight files of a HF folder (tokenizer, generation config) that exist; returns them."""
    copied = []
    for name in names:
        if (source / name).is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
            copied.append(name)
    return copied
