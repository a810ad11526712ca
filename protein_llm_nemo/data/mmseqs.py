"""Thin wrappers over the ``mmseqs`` executable (Debian package ``mmseqs2``): clustering and searching.

Only this module starts mmseqs; everything above it works on Python dicts. Errors name the missing tool.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SEARCH_COLUMNS = ("query", "target", "fident", "alnlen", "qcov", "tcov", "evalue")


def mmseqs_executable() -> str:
    exe = shutil.which("mmseqs")
    if exe is None:
        raise FileNotFoundError("mmseqs not found: install the Debian package mmseqs2 (`make setup` does)")
    return exe


def write_fasta(entries: Iterable[tuple[str, str]], path: str | Path) -> int:
    """Entries sorted by name: mmseqs' prefilter breaks ties at ``--max-seqs`` by database position, so the
    split's last purge search and a later leakage report on the written files must see one order."""
    n = 0
    with open(path, "w") as handle:
        for name, seq in sorted(entries):
            handle.write(f">{name}\n{seq}\n")
            n += 1
    return n


def _run(args: list[str], workdir: Path) -> None:
    proc = subprocess.run([mmseqs_executable(), *args], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"mmseqs {args[0]} failed (exit {proc.returncode}): {tail}")


@dataclass
class ClusterParams:
    min_seq_id: float = 0.3
    coverage: float = 0.8
    cov_mode: int = 0
    sensitivity: float | None = None  # None: mmseqs default
    linclust: bool = False  # easy-linclust: linear time, less sensitive at low identity
    threads: int = 2


def cluster(fasta: str | Path, params: ClusterParams, tmp_root: str | Path | None = None) -> dict[str, str]:
    """member -> representative, for every sequence in ``fasta``."""
    with tempfile.TemporaryDirectory(prefix="mmseqs_cluster_", dir=tmp_root) as tmp:
        tmpdir = Path(tmp).resolve()  # mmseqs runs inside it: a relative tmp_root would not resolve
        args = [
            "easy-linclust" if params.linclust else "easy-cluster",
            str(Path(fasta).resolve()),
            str(tmpdir / "res"),
            str(tmpdir / "work"),
            "--min-seq-id", str(params.min_seq_id),
            "-c", str(params.coverage),
            "--cov-mode", str(params.cov_mode),
            "--threads", str(params.threads),
            "-v", "1",
        ]  # fmt: skip
        if params.sensitivity is not None and not params.linclust:
            args += ["-s", str(params.sensitivity)]
        _run(args, tmpdir)
        members: dict[str, str] = {}
        with open(tmpdir / "res_cluster.tsv") as handle:
            for line in handle:
                rep, member = line.rstrip("\n").split("\t")
                members[member] = rep
        return members


@dataclass
class SearchParams:
    min_seq_id: float = 0.0
    coverage: float = 0.5
    cov_mode: int = 2  # 2: coverage of the query (the evaluated protein)
    sensitivity: float = 5.7
    max_seqs: int = 300
    max_accept: int | None = None  # stop aligning a query after this many accepted hits
    threads: int = 2


def search(
    query_fasta: str | Path,
    target_fasta: str | Path,
    params: SearchParams,
    tmp_root: str | Path | None = None,
) -> list[dict[str, float | str]]:
    """All alignments query -> target passing the filters, as dicts keyed by `SEARCH_COLUMNS`."""
    with tempfile.TemporaryDirectory(prefix="mmseqs_search_", dir=tmp_root) as tmp:
        tmpdir = Path(tmp).resolve()  # mmseqs runs inside it: a relative tmp_root would not resolve
        out = tmpdir / "hits.m8"
        args = [
            "easy-search",
            str(Path(query_fasta).resolve()),
            str(Path(target_fasta).resolve()),
            str(out),
            str(tmpdir / "work"),
            "--min-seq-id", str(params.min_seq_id),
            "-c", str(params.coverage),
            "--cov-mode", str(params.cov_mode),
            "-s", str(params.sensitivity),
            "--max-seqs", str(params.max_seqs),
            "--threads", str(params.threads),
            "--format-output", ",".join(SEARCH_COLUMNS),
            "-v", "1",
        ]  # fmt: skip
        if params.max_accept is not None:
            args += ["--max-accept", str(params.max_accept)]
        _run(args, tmpdir)
        hits: list[dict[str, float | str]] = []
        with open(out) as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                hit: dict[str, float | str] = {"query": fields[0], "target": fields[1]}
                for name, value in zip(SEARCH_COLUMNS[2:], fields[2:], strict=True):
                    hit[name] = float(value)
                hits.append(hit)
        return hits
