"""Leakage report for any split: for each evaluation protein, its maximum identity to any training protein
(mmseqs2 search; query coverage filter), exact sequence overlaps, and how many exceed the threshold.

Runs on record files (JSONL / Arrow) or FASTA files, so a user can audit a split they did not build here.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.converters._common import read_fasta
from protein_llm_nemo.data.homology import sequence_key
from protein_llm_nemo.data.mmseqs import SearchParams, search, write_fasta
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import read_records

IDENTITY_BINS: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.7, 0.9, 0.95, 1.0)


@dataclass
class LeakageConfig:
    threshold: float = 0.3
    coverage: float = 0.5  # fraction of the evaluation protein covered by the alignment
    sensitivity: float = 5.7
    max_seqs: int = 300  # prefilter candidates aligned per evaluation protein
    threads: int = 2
    tmp_root: str | None = None
    # Audit a seeded random subset of this many evaluation proteins (None: all); exact overlaps always use all.
    sample: int | None = None
    seed: int = 0


def leakage_search_params(config: LeakageConfig) -> SearchParams:
    """The mmseqs search of the report: evaluation proteins query training, coverage of the evaluation protein.
    The homology split's iterative purge runs this same search until it finds nothing."""
    return SearchParams(
        min_seq_id=0.0,
        coverage=config.coverage,
        cov_mode=2,
        sensitivity=config.sensitivity,
        max_seqs=config.max_seqs,
        threads=config.threads,
    )


def load_proteins(path: str | Path, counter: ReasonCounter) -> dict[str, str]:
    """Unique proteins (key -> sequence) of a FASTA or a record file/folder; `counter` counts the FASTA
    entries or record lines read (malformed ones dropped by reason) and is checked."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    proteins: dict[str, str] = {}
    if name.endswith((".fasta", ".fa", ".faa")):
        for _, seq in read_fasta(path, counter):
            counter.seen += 1
            counter.keep()
            proteins[sequence_key(seq)] = seq
    else:
        for record in read_records(path, counter):
            proteins.update((sequence_key(s), s) for s in record.sequences)
    counter.check(f"proteins read from {path}")
    return proteins


def read_eval_fastas(paths: Sequence[str | Path]) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    """The proteins of registered evaluation FASTAs as (``external:i``, sequence), and each file's counts
    (entries without residues or with bytes that are not UTF-8 are dropped by reason)."""
    entries: list[tuple[str, str]] = []
    counts: dict[str, dict[str, Any]] = {}
    for path in paths:
        counter = ReasonCounter()
        for _, seq in read_fasta(path, counter):
            counter.seen += 1
            counter.keep()
            entries.append((f"external:{len(entries)}", seq))
        counter.check(f"evaluation FASTA {path}")
        counts[str(path)] = counter.to_dict()
    return entries, counts


def leakage_report(
    train: dict[str, str], evaluation: dict[str, str], config: LeakageConfig | None = None
) -> dict[str, Any]:
    config = config or LeakageConfig()
    exact = set(train) & set(evaluation)
    total_evaluation = len(evaluation)
    if config.sample is not None and config.sample < len(evaluation):
        keys = sorted(evaluation)
        random.Random(config.seed).shuffle(keys)
        evaluation = {k: evaluation[k] for k in keys[: config.sample]}
    max_identity = dict.fromkeys(evaluation, 0.0)
    for key in exact & set(evaluation):
        max_identity[key] = 1.0
    if train and evaluation:
        with tempfile.TemporaryDirectory(prefix="leakage_", dir=config.tmp_root) as tmp:
            tmpdir = Path(tmp)
            write_fasta(evaluation.items(), tmpdir / "eval.fasta")
            write_fasta(train.items(), tmpdir / "train.fasta")
            params = leakage_search_params(config)
            for hit in search(tmpdir / "eval.fasta", tmpdir / "train.fasta", params, tmp_root=tmpdir):
                query = str(hit["query"])
                max_identity[query] = max(max_identity[query], float(hit["fident"]))
    values = sorted(max_identity.values())
    histogram = _histogram(values)
    above = [k for k, v in max_identity.items() if v >= config.threshold and v > 0]
    return {
        "config": asdict(config),
        "train_proteins": len(train),
        "evaluation_proteins": total_evaluation,
        "audited_proteins": len(evaluation),
        "exact_overlaps": len(exact),
        "at_or_above_threshold": len(above),
        "fraction_at_or_above_threshold": round(len(above) / max(len(evaluation), 1), 6),
        "max_identity": max(values, default=0.0),
        "median_max_identity": values[len(values) // 2] if values else 0.0,
        "without_any_hit": sum(1 for v in values if v == 0.0),
        "max_identity_histogram": histogram,
        "worst_examples": sorted(((max_identity[k], k) for k in above), reverse=True)[:10],
    }


def _histogram(values: Iterable[float]) -> dict[str, int]:
    bins = {f"[{lo:.2f},{hi:.2f})": 0 for lo, hi in zip(IDENTITY_BINS[:-1], IDENTITY_BINS[1:], strict=True)}
    bins["1.00"] = 0
    keys = list(bins)
    for v in values:
        if v >= 1.0:
            bins["1.00"] += 1
            continue
        for i, hi in enumerate(IDENTITY_BINS[1:]):
            if v < hi:
                bins[keys[i]] += 1
                break
    return bins
