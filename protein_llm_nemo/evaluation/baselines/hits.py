"""Homology hits with bitscores: one mmseqs2 ``easy-search`` of evaluation proteins against training proteins.

`data.mmseqs.search` reports identity and coverage for the split's leakage checks but no bitscore, which
the homology baselines weigh hits by; this is the same search with ``bits`` in the output (it starts mmseqs
through the wrapper's runner, so a missing tool or a failed run reads the same). Sequences are deduplicated
before the search: each distinct sequence is searched (or indexed) once and its hits fan out to every id
that has it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protein_llm_nemo.data.mmseqs import _run, write_fasta

HIT_COLUMNS = ("query", "target", "bits", "fident", "evalue")


@dataclass(frozen=True)
class Hit:
    target: str
    bits: float
    identity: float
    evalue: float


@dataclass
class HomologySearch:
    """mmseqs2 ``easy-search`` settings for function transfer: no identity or coverage floor (the e-value
    decides, mmseqs's default 1e-3 as DIAMOND's in DeepGOPlus), default sensitivity."""

    sensitivity: float = 5.7
    max_seqs: int = 300
    evalue: float = 1e-3
    threads: int = 2


def _sequence_key(sequence: str) -> str:
    return hashlib.sha1(sequence.encode()).hexdigest()[:20]


def search_hits(
    queries: Mapping[str, str],
    targets: Mapping[str, str],
    params: HomologySearch | None = None,
    tmp_root: str | Path | None = None,
) -> dict[str, list[Hit]]:
    """query id -> its hits among `targets` (id -> sequence), best bitscore first (ties by target id).
    A query with no hit is absent; a target with the query's own sequence is a hit like any other."""
    params = params or HomologySearch()
    if not queries or not targets:
        return {}
    query_ids: dict[str, list[str]] = {}
    for name, sequence in queries.items():
        query_ids.setdefault(_sequence_key(sequence), []).append(name)
    target_ids: dict[str, list[str]] = {}
    for name, sequence in targets.items():
        target_ids.setdefault(_sequence_key(sequence), []).append(name)
    with tempfile.TemporaryDirectory(prefix="mmseqs_hits_", dir=tmp_root) as tmp:
        tmpdir = Path(tmp)
        write_fasta(((key, queries[names[0]]) for key, names in query_ids.items()), tmpdir / "queries.fasta")
        write_fasta(((key, targets[names[0]]) for key, names in target_ids.items()), tmpdir / "targets.fasta")
        out = tmpdir / "hits.m8"
        args = [
            "easy-search",
            str(tmpdir / "queries.fasta"),
            str(tmpdir / "targets.fasta"),
            str(out),
            str(tmpdir / "work"),
            "-s", str(params.sensitivity),
            "--max-seqs", str(params.max_seqs),
            "-e", str(params.evalue),
            "--threads", str(params.threads),
            "--format-output", ",".join(HIT_COLUMNS),
            "-v", "1",
        ]  # fmt: skip
        _run(args, tmpdir)
        by_query_key: dict[str, list[tuple[str, float, float, float]]] = {}
        with open(out) as handle:
            for line in handle:
                query, target, bits, identity, evalue = line.rstrip("\n").split("\t")
                by_query_key.setdefault(query, []).append(
                    (target, float(bits), float(identity), float(evalue))
                )
    hits: dict[str, list[Hit]] = {}
    for query_key, rows in by_query_key.items():
        best: dict[str, Hit] = {}  # one alignment per target (mmseqs may report several)
        for target_key, bits, identity, evalue in rows:
            for target in target_ids[target_key]:
                if target not in best or bits > best[target].bits:
                    best[target] = Hit(target, bits, identity, evalue)
        ordered = sorted(best.values(), key=lambda hit: (-hit.bits, hit.target))
        for query in query_ids[query_key]:
            hits[query] = ordered
    return hits
