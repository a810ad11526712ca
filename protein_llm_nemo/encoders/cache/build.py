"""Building the embedding cache: each rank encodes its share into atomically committed parts, resumably.

`finalize_cache` then joins the committed parts of every rank into the checksummed manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from protein_llm_nemo.encoders.base import ProteinEncoder, length_sorted_batches
from protein_llm_nemo.encoders.cache.format import (
    CACHE_FORMAT,
    DONE,
    IDENTITY,
    MANIFEST,
    STORAGE_DTYPES,
    CacheError,
    CacheIdentity,
    canonical_json,
    check_identity,
    rank_of_key,
    sequence_key,
    write_atomic,
)
from protein_llm_nemo.encoders.sequences import InvalidSequenceError

_RANK_DIR = re.compile(r"^rank-(\d{5})-of-(\d{5})$")


class RankWriter:
    """Appends whole chunks of embeddings to the parts of one rank, committing each part atomically."""

    def __init__(self, rank_dir: Path, identity: CacheIdentity, part_max_bytes: int):
        self.rank_dir = rank_dir
        self.np_dtype, self.torch_dtype = STORAGE_DTYPES[identity.storage_dtype]
        self.dim = identity.embedding_dim
        self.part_max_bytes = part_max_bytes
        rank_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(rank_dir / ".lock", "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CacheError(f"{rank_dir} is being built by another process (same rank twice?)") from None
        (rank_dir / DONE).unlink(missing_ok=True)
        for stale in rank_dir.glob("*.tmp"):  # torn writes of an interrupted run
            stale.unlink()
        self.done_keys: set[str] = set()
        self.next_part = 0
        for index in sorted(rank_dir.glob("part-*.json")):
            entries = json.loads(index.read_text())["entries"]
            self.done_keys.update(key for key, _, _ in entries)
            self.next_part = max(self.next_part, int(index.stem.split("-")[1]) + 1)
        for orphan in rank_dir.glob("part-*.bin"):  # data whose index never got committed
            if not orphan.with_suffix(".json").exists():
                orphan.unlink()
        self._rows: list[np.ndarray] = []
        self._entries: list[tuple[str, int, int]] = []
        self._buffered_rows = 0

    def add(self, key: str, embedding: torch.Tensor) -> None:
        rows = embedding.detach().to("cpu", self.torch_dtype).contiguous()
        array = rows.view(torch.uint16).numpy() if self.torch_dtype == torch.bfloat16 else rows.numpy()
        self._entries.append((key, self._buffered_rows, array.shape[0]))
        self._rows.append(array)
        self._buffered_rows += array.shape[0]

    def chunk_done(self) -> Path | None:
        """Call between chunks: commits a part once the buffer reaches the part size."""
        if self._buffered_rows * self.dim * np.dtype(self.np_dtype).itemsize >= self.part_max_bytes:
            return self.commit()
        return None

    def commit(self) -> Path | None:
        if not self._entries:
            return None
        name = f"part-{self.next_part:06d}"
        payload = np.concatenate(self._rows, axis=0).tobytes()
        write_atomic(self.rank_dir / f"{name}.bin", payload)
        index = {
            "file": f"{name}.bin",
            "rows": self._buffered_rows,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "entries": self._entries,
        }
        write_atomic(self.rank_dir / f"{name}.json", canonical_json(index))  # the commit point
        self.done_keys.update(key for key, _, _ in self._entries)
        self.next_part += 1
        self._rows, self._entries, self._buffered_rows = [], [], 0
        return self.rank_dir / f"{name}.json"

    def close(self) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


@dataclass
class BuildReport:
    rank: int
    world_size: int
    num_assigned: int
    num_encoded: int
    num_skipped: int
    num_residues_encoded: int
    seconds: float
    manifest: Path | None
    skipped_invalid: dict[str, int] = field(default_factory=dict)
    """Invalid input sequences left out (skip_invalid), counted by reason."""
    invalid_examples: list[str] = field(default_factory=list)

    @property
    def proteins_per_second(self) -> float:
        return self.num_encoded / self.seconds if self.seconds > 0 else float("nan")


def build_embedding_cache(
    encoder: ProteinEncoder,
    sequences: Sequence[str],
    cache_dir: str | Path,
    *,
    ids: Sequence[str] | None = None,
    rank: int = 0,
    world_size: int = 1,
    storage_dtype: str = "float16",
    part_max_bytes: int = 256 << 20,
    progress: bool = True,
    on_part_committed: Callable[[Path], None] | None = None,
    skip_invalid: bool = False,
) -> BuildReport:
    """Encode this rank's share of `sequences` into `cache_dir`, resuming any earlier run.

    Every sequence is validated first: the first invalid one raises `InvalidSequenceError` naming
    it, or, with `skip_invalid`, invalid ones are left out and counted by reason in the report.
    Duplicates are encoded once.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    cache_dir = Path(cache_dir)
    identity = CacheIdentity.of(encoder, storage_dtype)
    check_identity(cache_dir, identity, create=True)
    if ids is None:
        ids = [f"#{i}" for i in range(len(sequences))]
    skipped_invalid: dict[str, int] = {}
    examples: list[str] = []
    prepared = []
    for seq, seq_id in zip(sequences, ids, strict=True):
        try:
            prepared += encoder.prepare([seq], [seq_id])
        except InvalidSequenceError as err:
            if not skip_invalid:
                raise
            skipped_invalid[err.reason] = skipped_invalid.get(err.reason, 0) + 1
            if len(examples) < 5:
                examples.append(str(err))
    by_key = {sequence_key(identity.encoder_id, s): s for s in prepared}
    input_digest = hashlib.sha256("\n".join(sorted(by_key)).encode()).hexdigest()
    mine = sorted(
        (k for k in by_key if rank_of_key(k, world_size) == rank), key=lambda k: (-len(by_key[k]), k)
    )
    # Fixed chunks (one forward pass each) over the whole share, so that a resumed run encodes the
    # same batches as an uninterrupted one and writes the same bytes.
    c = encoder.config
    chunks = [
        [mine[i] for i in batch]
        for batch in length_sorted_batches(
            [len(by_key[k]) for k in mine], c.max_residues_per_batch, c.max_batch_size
        )
    ]
    writer = RankWriter(cache_dir / f"rank-{rank:05d}-of-{world_size:05d}", identity, part_max_bytes)
    todo = [chunk for chunk in chunks if not all(k in writer.done_keys for k in chunk)]
    skipped = len(mine) - sum(len(chunk) for chunk in todo)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(mine),
        initial=skipped,
        desc=f"encode {c.name} [rank {rank}/{world_size}]",
        unit="seq",
        disable=not progress,
        position=rank if world_size > 1 else None,
    )
    start = time.perf_counter()
    encoded = residues = 0
    try:
        for chunk in todo:
            out = encoder.encode_prepared([by_key[k] for k in chunk])
            for row, key in enumerate(chunk):
                if key not in writer.done_keys:  # a chunk only partly done when the input changed
                    writer.add(key, out.embeddings[row, : len(by_key[key])])
                    residues += len(by_key[key])
            encoded += len(chunk)
            bar.update(len(chunk))
            committed = writer.chunk_done()
            if committed is not None and on_part_committed is not None:
                on_part_committed(committed)
        committed = writer.commit()
        if committed is not None and on_part_committed is not None:
            on_part_committed(committed)
    except KeyboardInterrupt:
        writer.commit()  # keep the whole chunks already encoded
        raise
    finally:
        bar.close()
        writer.close()
    seconds = time.perf_counter() - start
    write_atomic(
        writer.rank_dir / DONE,
        canonical_json(
            {"rank": rank, "world_size": world_size, "input_digest": input_digest, "num": len(mine)}
        ),
    )
    manifest = finalize_cache(cache_dir, world_size=world_size, input_digest=input_digest)
    return BuildReport(
        rank, world_size, len(mine), encoded, skipped, residues, seconds, manifest, skipped_invalid, examples
    )


def finalize_cache(
    cache_dir: str | Path, world_size: int | None = None, input_digest: str | None = None
) -> Path | None:
    """Join every committed part into `manifest.json`.

    With `world_size` (and `input_digest`), only once all those ranks have finished that input;
    returns None while some are still running. Without, joins whatever is committed.
    """
    cache_dir = Path(cache_dir)
    identity = json.loads((cache_dir / IDENTITY).read_text())
    if world_size is not None:
        for r in range(world_size):
            done = cache_dir / f"rank-{r:05d}-of-{world_size:05d}" / DONE
            if not done.exists():
                return None
            if input_digest is not None and json.loads(done.read_text())["input_digest"] != input_digest:
                return None
    shards, entries = [], {}
    num_residues = 0
    for rank_dir in sorted(p for p in cache_dir.iterdir() if p.is_dir() and _RANK_DIR.match(p.name)):
        for index_path in sorted(rank_dir.glob("part-*.json")):
            index = json.loads(index_path.read_text())
            shard = len(shards)
            shards.append(
                {"file": f"{rank_dir.name}/{index['file']}", "rows": index["rows"], "sha256": index["sha256"]}
            )
            for key, offset, length in index["entries"]:
                if key not in entries:
                    entries[key] = [shard, offset, length]
                    num_residues += length
    body = {
        "format": CACHE_FORMAT,
        "identity": identity,
        "shards": shards,
        "entries": entries,
        "num_sequences": len(entries),
        "num_residues": num_residues,
    }
    manifest = {**body, "sha256": hashlib.sha256(canonical_json(body)).hexdigest()}
    write_atomic(cache_dir / MANIFEST, canonical_json(manifest))
    return cache_dir / MANIFEST
