"""On-disk format of the embedding cache: file names, identity, content keys, errors and file helpers.

Shared by the builder (`cache.build`) and the reader (`cache.reader`); holds no build or read logic.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protein_llm_nemo.encoders.base import ProteinEncoder

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
IDENTITY = "identity.json"
DONE = "DONE.json"
STORAGE_DTYPES: dict[str, tuple[type[np.generic], torch.dtype]] = {
    "float16": (np.float16, torch.float16),
    # numpy has no bfloat16: its bits are stored and memory-mapped as uint16
    "bfloat16": (np.uint16, torch.bfloat16),
}
"""Storage dtype name -> (numpy dtype of the shard files, torch dtype of the embeddings)."""


class CacheError(RuntimeError):
    """Base class of embedding-cache errors."""


class CacheMismatchError(CacheError):
    """The cache was built by a different encoder (or width / storage dtype) than the one asked for."""


class CacheCorruptError(CacheError):
    """The manifest checksum, a shard's size or an entry's shape does not match."""


class CacheMissError(CacheError, KeyError):
    """A sequence is not in the cache."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class CacheIdentity:
    """What a cache was built with; two builders may share a directory only if these are equal."""

    encoder_name: str
    weights_fingerprint: str
    embedding_dim: int
    storage_dtype: str
    alphabet: str
    max_length: int
    crop: str
    format: int = CACHE_FORMAT

    @property
    def encoder_id(self) -> str:
        return f"{self.encoder_name}@{self.weights_fingerprint}"

    @classmethod
    def of(cls, encoder: ProteinEncoder, storage_dtype: str = "float16") -> CacheIdentity:
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype must be one of {sorted(STORAGE_DTYPES)}, got {storage_dtype!r}")
        c = encoder.config
        return cls(
            encoder_name=c.name,
            weights_fingerprint=encoder.weights_fingerprint,
            embedding_dim=c.embedding_dim,
            storage_dtype=storage_dtype,
            alphabet=c.alphabet,
            max_length=c.max_length,
            crop=c.crop,
        )

    def describe_difference(self, other: CacheIdentity) -> str:
        mine, theirs = asdict(self), asdict(other)
        return "; ".join(
            f"{k}: {theirs[k]!r} in the cache vs {mine[k]!r} here" for k in mine if mine[k] != theirs[k]
        )


def sequence_key(encoder_id: str, sequence: str) -> str:
    """Content address of one (encoder, normalised sequence) pair."""
    return hashlib.sha256(f"{encoder_id}\n{sequence}".encode()).hexdigest()


def rank_of_key(key: str, world_size: int) -> int:
    """The rank that builds `key` out of `world_size`."""
    return int(key[:16], 16) % world_size


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a process-unique temporary file, fsync, rename: readers see all or nothing."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def canonical_json(obj: Any) -> bytes:
    """Key-sorted, compact JSON: the same object always gives the same bytes (and checksum)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in blocks so that large shards need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def check_identity(cache_dir: Path, identity: CacheIdentity, create: bool) -> None:
    """Refuse `cache_dir` unless it was built with `identity`; with `create`, claim a new directory."""
    path = cache_dir / IDENTITY
    if not path.exists():
        if not create:
            raise CacheError(f"{cache_dir}: not an embedding cache (no {IDENTITY})")
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{IDENTITY}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(canonical_json(asdict(identity)))
        try:  # link() creates the name only if absent, with the full content: ranks may race here
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    existing = CacheIdentity(**json.loads(path.read_text()))
    if existing != identity:
        raise CacheMismatchError(
            f"{cache_dir} holds embeddings of another encoder configuration and refuses to mix: "
            f"{identity.describe_difference(existing)}. Use a new cache directory."
        )
