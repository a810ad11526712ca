"""Training data loading counts what it reads (record lines, formatting, batching), checks the counts, logs
them and writes them as the `data` entry of metrics.jsonl; the data config holds only what is used; the
embedding-cache path is what its docstring says (no live fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, write_records


def _with_bad_lines(path: Path, n: int, seed: int) -> None:
    write_records(path, n, seed=seed)
    with open(path, "ab") as handle:
        handle.write(b"{not json\n")
        handle.write(b'{"id": "caf\xe9"}\n')  # not UTF-8


def _setup_and_read_metrics(rank: int, world_size: int, data_dir: str, log_dir: str) -> list[dict]:
    from protein_llm_nemo.training.sft import setup_sft

    session = setup_sft(tiny_config(data_dir, logging__log_dir=log_dir))
    session.parts.metrics.close()
    return [json.loads(line) for line in (Path(log_dir) / "metrics.jsonl").read_text().splitlines()]


def test_sft_reports_dropped_lines_in_its_metrics(tmp_path):
    _with_bad_lines(tmp_path / "train.jsonl", 8, seed=0)
    write_records(tmp_path / "valid.jsonl", 3, seed=1)
    lines = run_distributed(
        _setup_and_read_metrics, world_size=1, args=(str(tmp_path), str(tmp_path / "logs"))
    )[0]
    (entry,) = [line for line in lines if "data" in line]
    train, valid = entry["data"]["train"], entry["data"]["valid"]
    assert entry["step"] == 0
    assert train["read"]["seen"] == 10 and train["read"]["kept"] == 8
    assert train["read"]["dropped"] == {"invalid_json": 1, "invalid_utf8": 1}
    assert train["formatting"]["seen"] == 8 and train["batching"]["seen"] == train["formatting"]["kept"]
    assert valid["read"] == {**valid["read"], "seen": 3, "kept": 3, "dropped_total": 0}


def test_read_examples_checks_and_returns_its_report(tmp_path):
    from types import SimpleNamespace

    from protein_llm_nemo.tokenizer import load_tokenizer
    from protein_llm_nemo.training.sft import read_examples

    _with_bad_lines(tmp_path / "train.jsonl", 4, seed=2)
    bridge = SimpleNamespace(name="mlp", num_slots=4)
    loaded = read_examples(
        str(tmp_path / "train.jsonl"), load_tokenizer(), bridge, tiny_config(str(tmp_path))
    )
    assert len(loaded.examples) == 4 == loaded.report["formatting"]["kept"]
    assert loaded.report["read"]["dropped"] == {"invalid_json": 1, "invalid_utf8": 1}


def test_unpacked_batches_count_every_example():
    from protein_llm_nemo.training.batches import SFTBatches

    class Example:
        def __init__(self, n: int):
            self.n = n

        def __len__(self) -> int:
            return self.n

    batches = SFTBatches([Example(10), Example(70), Example(20)], 64, 1, 0, packing=False)
    assert batches.items == [[0], [2]]
    assert batches.counter.to_dict()["dropped"] == {"longer_than_seq_length": 1}
    assert batches.counter.seen == 3 and batches.counter.kept == 2


def test_data_config_has_no_unused_num_workers():
    from protein_llm_nemo.training import DataConfig

    with pytest.raises(TypeError, match="num_workers"):
        DataConfig(num_workers=2)


def test_a_cache_miss_is_an_error_as_build_encoder_says(tmp_path):
    from protein_llm_nemo.encoders import build_protein_encoder
    from protein_llm_nemo.encoders.cache import CacheMissError, build_embedding_cache
    from protein_llm_nemo.training.config import EncoderSelection
    from protein_llm_nemo.training.sft import build_encoder

    assert "no live fallback" in " ".join(build_encoder.__doc__.split())
    live = build_protein_encoder("esmc-tiny")
    build_embedding_cache(live, ["MKTAYIAKQR", "MSSKLLV"], tmp_path / "cache", progress=False)
    cached = build_encoder(EncoderSelection(name="esmc-tiny", cache_dir=str(tmp_path / "cache")))
    embeddings, mask = cached.encode(["MKTAYIAKQR"])
    assert embeddings.shape[:2] == mask.shape == (1, 10)
    with pytest.raises(CacheMissError, match="not in the embedding cache"):
        cached.encode(["MKVLAAGIVGLL"])
