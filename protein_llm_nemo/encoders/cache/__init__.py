"""Embedding cache: per-residue embeddings computed once per (encoder, sequence), read by memory map.

Layout of a cache directory::

    identity.json                       the encoder (name + weights fingerprint), width, storage dtype
    rank-00000-of-00002/part-000000.bin raw [rows, D] fp16/bf16 rows, one block of rows per protein
    rank-00000-of-00002/part-000000.json the part's index (key -> row offset, length) and sha256
    rank-00000-of-00002/DONE.json       the rank finished this input
    manifest.json                       all parts joined; carries the sha256 of its own content

Keys are content addresses: sha256(encoder name, weights fingerprint, normalised sequence). Each rank
owns the keys with `int(key) % world_size == rank`, encodes them longest-first in fixed chunks, and
commits whole chunks as parts (data file, fsync, rename; then its index the same way). A rerun skips
committed chunks, so an interrupted build resumes where it stopped and writes the same bytes as an
uninterrupted one. The last rank to finish (or `protein-llm encode --finalize`) joins the parts into
the manifest. Readers verify the manifest checksum, the dtype and every shard's shape, and refuse a
cache built by another encoder than the one they expect.

Modules: `format` (file names, identity, keys, errors), `build` (writing), `reader` (reading).
"""

from protein_llm_nemo.encoders.cache.build import BuildReport, build_embedding_cache, finalize_cache
from protein_llm_nemo.encoders.cache.format import (
    CACHE_FORMAT,
    DONE,
    IDENTITY,
    MANIFEST,
    CacheCorruptError,
    CacheError,
    CacheIdentity,
    CacheMismatchError,
    CacheMissError,
    rank_of_key,
    sequence_key,
)
from protein_llm_nemo.encoders.cache.reader import CachedProteinEncoder, EmbeddingCache

__all__ = [
    "CACHE_FORMAT",
    "DONE",
    "IDENTITY",
    "MANIFEST",
    "BuildReport",
    "CacheCorruptError",
    "CacheError",
    "CacheIdentity",
    "CacheMismatchError",
    "CacheMissError",
    "CachedProteinEncoder",
    "EmbeddingCache",
    "build_embedding_cache",
    "finalize_cache",
    "rank_of_key",
    "sequence_key",
]
