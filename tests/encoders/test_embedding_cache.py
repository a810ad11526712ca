"""Embedding cache: round trip, resumable builds, rank sharding, verification, refusal to mix encoders."""

import json
import pickle
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from protein_llm_nemo.encoders import InvalidSequenceError, ProteinEmbedder, build_protein_encoder
from protein_llm_nemo.encoders.cache import (
    CacheCorruptError,
    CachedProteinEncoder,
    CacheError,
    CacheMismatchError,
    CacheMissError,
    EmbeddingCache,
    build_embedding_cache,
    finalize_cache,
)

_rng = random.Random(0)
SEQS = ["".join(_rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(_rng.randint(3, 40))) for _ in range(24)]
FP16_ATOL = 2e-3  # tiny encoders' outputs are O(1); fp16 keeps ~3 significant digits


@pytest.fixture(scope="module")
def encoder():
    # Small forward passes (several chunks) and tiny parts (several shard files).
    return build_protein_encoder("esmc-tiny", max_residues_per_batch=120)


def build(encoder, cache_dir, seqs=SEQS, **kwargs):
    return build_embedding_cache(encoder, seqs, cache_dir, progress=False, part_max_bytes=16384, **kwargs)


def stored_bytes(cache_dir):
    cache = EmbeddingCache(cache_dir)
    return {key: cache.get(key).numpy().tobytes() for key in cache._entries}


def test_round_trip_matches_the_live_encoder(encoder, tmp_path):
    report = build(encoder, tmp_path / "c", seqs=[*SEQS, SEQS[0]])  # a duplicate is encoded once
    assert report.num_encoded == len(set(SEQS)) and report.manifest is not None
    assert len(list((tmp_path / "c").glob("rank-*/part-*.bin"))) > 1
    cached = CachedProteinEncoder.for_encoder(tmp_path / "c", encoder)
    assert isinstance(cached, ProteinEmbedder) and cached.embedding_dim == encoder.embedding_dim
    query = [SEQS[5], SEQS[0].lower(), SEQS[17]]
    live, live_mask = encoder.encode(query)
    got, mask = cached.encode(query)
    assert got.dtype == torch.float32 and torch.equal(mask, live_mask)
    torch.testing.assert_close(got, live, rtol=0, atol=FP16_ATOL)
    assert got[~mask].abs().sum() == 0


def test_bfloat16_storage(encoder, tmp_path):
    build(encoder, tmp_path, storage_dtype="bfloat16")
    cache = EmbeddingCache(tmp_path)
    assert cache.storage_dtype == torch.bfloat16
    key = cache.key(SEQS[3])
    assert cache.get(key).dtype == torch.bfloat16
    live = encoder.encode([SEQS[3]]).embeddings[0]
    torch.testing.assert_close(cache.get(key).float(), live, rtol=1e-2, atol=1e-2)
    assert torch.equal(torch.from_numpy(cache.get_float32(key)), cache.get(key).float())
    as_bf16 = CachedProteinEncoder(tmp_path, dtype=torch.bfloat16).encode([SEQS[3], SEQS[0]])
    as_fp32 = CachedProteinEncoder(tmp_path).encode([SEQS[3], SEQS[0]])
    assert as_bf16.embeddings.dtype == torch.bfloat16
    assert torch.equal(as_bf16.embeddings.float(), as_fp32.embeddings)


def test_interrupted_build_resumes_to_identical_bytes(encoder, tmp_path):
    build(encoder, tmp_path / "reference")
    commits = []

    def interrupt_after_two_parts(path):
        commits.append(path)
        if len(commits) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(encoder, tmp_path / "resumed", on_part_committed=interrupt_after_two_parts)
    rank_dir = tmp_path / "resumed" / "rank-00000-of-00001"
    assert not (tmp_path / "resumed" / "manifest.json").exists() and not (rank_dir / "DONE.json").exists()
    (rank_dir / "part-000099.bin.tmp").write_bytes(b"torn write")  # as a kill mid-write leaves it
    (rank_dir / "part-000098.bin").write_bytes(b"data without its index")
    report = build(encoder, tmp_path / "resumed")
    assert 0 < report.num_skipped < len(SEQS) and report.num_encoded == len(SEQS) - report.num_skipped
    assert not list(rank_dir.glob("*.tmp")) and not (rank_dir / "part-000098.bin").exists()
    assert stored_bytes(tmp_path / "resumed") == stored_bytes(tmp_path / "reference")
    again = build(encoder, tmp_path / "resumed")
    assert again.num_encoded == 0 and again.num_skipped == len(SEQS)


def test_ranks_build_disjoint_shards_joined_by_the_manifest(encoder, tmp_path):
    reports = [build(encoder, tmp_path / "sharded", rank=r, world_size=3) for r in range(3)]
    assert [r.manifest is None for r in reports] == [True, True, False]  # the last rank joins
    assert sum(r.num_encoded for r in reports) == len(SEQS)
    assert all(r.num_encoded > 0 for r in reports)
    build(encoder, tmp_path / "single")
    sharded, single = EmbeddingCache(tmp_path / "sharded"), EmbeddingCache(tmp_path / "single")
    assert len(sharded) == len(single) == len(SEQS)
    for seq in SEQS:
        torch.testing.assert_close(
            sharded.get(sharded.key(seq)).float(), single.get(single.key(seq)).float(), rtol=0, atol=FP16_ATOL
        )


def test_finalize_joins_whatever_is_committed(encoder, tmp_path):
    build(encoder, tmp_path, rank=0, world_size=2)
    assert not (tmp_path / "manifest.json").exists()
    finalize_cache(tmp_path)
    cache = EmbeddingCache(tmp_path)
    assert 0 < len(cache) < len(SEQS)


def test_refuses_to_mix_encoders(encoder, tmp_path):
    build(encoder, tmp_path)
    other_weights = build_protein_encoder("esmc-tiny", seed=1)
    with pytest.raises(CacheMismatchError, match="weights_fingerprint"):
        build(other_weights, tmp_path)
    with pytest.raises(CacheMismatchError, match="storage_dtype"):
        build(encoder, tmp_path, storage_dtype="bfloat16")
    with pytest.raises(CacheMismatchError, match="other weights"):
        CachedProteinEncoder.for_encoder(tmp_path, other_weights)
    with pytest.raises(CacheMismatchError, match="'esmc-tiny', not 'esm3-tiny'"):
        CachedProteinEncoder(tmp_path, encoder_name="esm3-tiny")


def test_verification_on_read(encoder, tmp_path):
    build(encoder, tmp_path)
    manifest_path = tmp_path / "manifest.json"
    original = manifest_path.read_bytes()
    manifest = json.loads(original)
    manifest["identity"]["embedding_dim"] = 32
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheCorruptError, match="checksum"):
        EmbeddingCache(tmp_path)
    manifest_path.write_bytes(original)

    shard = tmp_path / manifest["shards"][0]["file"]
    data = shard.read_bytes()
    shard.write_bytes(data[:-2])
    with pytest.raises(CacheCorruptError, match="expected"):
        EmbeddingCache(tmp_path)
    flipped = np.frombuffer(data, dtype=np.uint8).copy()
    flipped[0] ^= 0xFF
    shard.write_bytes(flipped.tobytes())
    EmbeddingCache(tmp_path)  # same size: the cheap check passes
    with pytest.raises(CacheCorruptError, match="sha256"):
        EmbeddingCache(tmp_path, deep_verify=True)


def test_miss_and_missing_manifest_are_explained(encoder, tmp_path):
    with pytest.raises(CacheError, match="--finalize"):
        EmbeddingCache(tmp_path)
    build(encoder, tmp_path, seqs=SEQS[:3])
    cached = CachedProteinEncoder(tmp_path)
    with pytest.raises(CacheMissError, match="'P99'.*protein-llm encode"):
        cached.encode([SEQS[0], "MKTAYIAKQRW"], ids=["P1", "P99"])


_KILLED_BUILD = """
import json, os, signal, sys
from protein_llm_nemo.encoders import build_protein_encoder
from protein_llm_nemo.encoders.cache import build_embedding_cache

commits = []
def kill_after_two_parts(path):
    commits.append(path)
    if len(commits) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no handler runs, nothing is flushed

encoder = build_protein_encoder("esmc-tiny", max_residues_per_batch=120)
build_embedding_cache(encoder, json.loads(sys.argv[2]), sys.argv[1], progress=False, part_max_bytes=16384,
                      on_part_committed=kill_after_two_parts)
"""


def test_killed_process_resumes_to_identical_bytes(encoder, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, str(tmp_path / "killed"), json.dumps(SEQS)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    report = build(encoder, tmp_path / "killed")
    assert 0 < report.num_skipped < len(SEQS)
    build(encoder, tmp_path / "reference")
    assert stored_bytes(tmp_path / "killed") == stored_bytes(tmp_path / "reference")


def test_concurrent_rank_processes(encoder, tmp_path):
    """Rank 1 runs the CLI in another process while rank 0 builds here; the last to finish joins."""
    (tmp_path / "in.txt").write_text("\n".join(SEQS))
    cmd = [sys.executable, "-m", "protein_llm_nemo.encoders.cli", "encode", "--encoder", "esmc-tiny"]
    cmd += ["--input", str(tmp_path / "in.txt"), "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    cmd += ["--world-size", "2", "--rank", "1", "--part-size-mb", "0.016", "--max-residues-per-batch", "120"]
    other = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    mine = build(encoder, tmp_path / "c", rank=0, world_size=2)
    assert other.wait(timeout=120) == 0, other.stderr.read().decode()[-2000:]
    if mine.manifest is None:  # rank 1 finished last and wrote it
        assert (tmp_path / "c" / "manifest.json").exists()
    cached = CachedProteinEncoder.for_encoder(tmp_path / "c", encoder)
    assert len(cached.cache) == len(SEQS)
    assert {p.parent.name for p in (tmp_path / "c").glob("rank-*/part-*.bin")} == {
        "rank-00000-of-00002",
        "rank-00001-of-00002",
    }
    torch.testing.assert_close(
        cached.encode(SEQS).embeddings, encoder.encode(SEQS).embeddings, rtol=0, atol=FP16_ATOL
    )


def test_reader_pickles_without_its_memory_maps(encoder, tmp_path):
    build(encoder, tmp_path)
    cached = CachedProteinEncoder(tmp_path)
    before = cached.encode(SEQS[:4]).embeddings
    clone = pickle.loads(pickle.dumps(cached))  # as DataLoader workers receive it
    assert clone.cache._maps == {}
    torch.testing.assert_close(clone.encode(SEQS[:4]).embeddings, before, rtol=0, atol=0)


def test_fallback_encodes_misses_live_and_must_be_the_same_encoder(encoder, tmp_path):
    build(encoder, tmp_path, seqs=SEQS[:3])
    reader = CachedProteinEncoder(tmp_path, fallback=encoder)
    query = [SEQS[0], SEQS[10], SEQS[2]]
    got = reader.encode(query)
    assert reader.num_misses == 1
    torch.testing.assert_close(got.embeddings, encoder.encode(query).embeddings, rtol=0, atol=FP16_ATOL)
    assert torch.equal(got.embeddings[1, : len(SEQS[10])], encoder.encode([SEQS[10]]).embeddings[0])
    with pytest.raises(CacheMismatchError):
        CachedProteinEncoder(tmp_path, fallback=build_protein_encoder("esmc-tiny", seed=5))


def test_invalid_sequences_fail_the_build_or_are_skipped_and_counted(encoder, tmp_path):
    seqs = [SEQS[0], "MK*T", "", SEQS[1], "A" * 2000]
    ids = ["ok1", "star", "blank", "ok2", "huge"]
    with pytest.raises(InvalidSequenceError, match="'star'"):
        build(encoder, tmp_path / "strict", seqs=seqs, ids=ids)
    report = build(encoder, tmp_path / "lenient", seqs=seqs, ids=ids, skip_invalid=True)
    assert report.skipped_invalid == {"invalid_character": 1, "empty": 1, "too_long": 1}
    assert report.num_encoded == 2 and any("'huge'" in e for e in report.invalid_examples)
    assert len(EmbeddingCache(tmp_path / "lenient")) == 2


def test_growing_input_adds_only_new_sequences(encoder, tmp_path):
    build(encoder, tmp_path, seqs=SEQS[:10])
    report = build(encoder, tmp_path)
    assert report.num_residues_encoded == sum(len(s) for s in SEQS[10:])
    rows = sum(json.loads(p.read_text())["rows"] for p in tmp_path.glob("rank-*/part-*.json"))
    assert rows == EmbeddingCache(tmp_path).num_residues == sum(len(s) for s in SEQS)


def test_one_process_per_rank(encoder, tmp_path):
    from protein_llm_nemo.encoders.cache import CacheIdentity
    from protein_llm_nemo.encoders.cache.build import RankWriter

    holder = RankWriter(tmp_path / "rank-00000-of-00001", CacheIdentity.of(encoder), 4096)
    try:
        with pytest.raises(CacheError, match="another process"):
            build(encoder, tmp_path)
    finally:
        holder.close()
    build(encoder, tmp_path)
