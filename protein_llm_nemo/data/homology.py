"""Homology-aware split: cluster proteins with mmseqs2, give whole clusters to train / validation / test,
then purge from training every protein homologous to an evaluation protein (the split's own validation and
test sets plus any registered external evaluation set).

Records are keyed by their proteins: a record whose proteins land in different splits (PPI pairs) is
dropped and counted; protein-free records are split by a hash of their id. Deterministic given the seed.
The split files, protein table and report are written together, or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from protein_llm_nemo.data.files import AtomicOutputs, DataFileError
from protein_llm_nemo.data.mmseqs import ClusterParams, SearchParams, cluster, search, write_fasta
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter, write_json_report
from protein_llm_nemo.data.storage import read_records

SPLITS: tuple[str, str, str] = ("train", "validation", "test")

logger = logging.getLogger(__name__)


def sequence_key(sequence: str) -> str:
    """Stable protein id: 20 hex chars of blake2b over the residues (same sequence -> same key)."""
    return hashlib.blake2b(sequence.encode("ascii", "replace"), digest_size=10).hexdigest()


def seeded_unit(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the split's deterministic order of clusters and families."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


@dataclass
class SplitConfig:
    identity: float = 0.3  # clustering identity; also the leakage threshold
    coverage: float = 0.8  # clustering coverage (both sequences, mmseqs --cov-mode 0)
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    linclust: bool = False
    # Purge train proteins whose alignment to an eval protein reaches `identity` over >= purge_coverage of the eval protein.
    purge: bool = True
    purge_coverage: float = 0.5
    purge_sensitivity: float = 5.7
    purge_max_seqs: int = 300  # prefilter candidates aligned per evaluation protein
    # First pass also searches train proteins against evaluation proteins (each train protein needs one hit, so
    # a large family cannot hide behind max_seqs). Its cost grows with the training set: at hundreds of
    # thousands of proteins on few cores, turn it off and let the iterated leakage search converge instead.
    reverse_search: bool = True
    # Grow evaluation clusters into homology families before the purge (`data.families`): seed clusters
    # (family_seed_factor x the evaluation target) search all proteins once; families go whole to one split.
    grow_eval_families: bool = True
    family_seed_factor: float = 2.0
    # After the first purge pass, the leakage report's search (evaluation proteins query the remaining training
    # proteins) runs again and again, each hit >= identity purged, until it finds nothing: mmseqs' prefilter
    # keeps only `max_seqs` candidates per query, so removing training proteins lets new ones surface.
    leakage_sensitivity: float = 5.7  # as `leakage-report`'s default: the split passes the default audit
    leakage_max_seqs: int = 300
    purge_max_iterations: int = 20  # PurgeNotConverged past this many searches that still find leaks
    threads: int = 2
    tmp_root: str | None = None
    # Extra evaluation sets (FASTA files) whose homologs must never be trained on.
    eval_fastas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.identity <= 1:
            raise ValueError(f"identity must be in (0, 1], got {self.identity}")
        if (
            self.validation_fraction < 0
            or self.test_fraction < 0
            or self.validation_fraction + self.test_fraction >= 1
        ):
            raise ValueError("validation_fraction + test_fraction must be in [0, 1)")
        if self.family_seed_factor <= 0:
            raise ValueError(f"family_seed_factor must be > 0, got {self.family_seed_factor}")
        if self.purge_max_iterations < 1:
            raise ValueError(f"purge_max_iterations must be >= 1, got {self.purge_max_iterations}")


class PurgeNotConverged(RuntimeError):
    """The iterative purge still found training proteins above the identity after `purge_max_iterations`."""


@dataclass
class SplitResult:
    assignment: dict[str, str]  # protein key -> split
    splits: dict[str, list[ProteinRecord]]
    counter: ReasonCounter
    report: dict[str, Any] = field(default_factory=dict)


def cluster_order(members: dict[str, str], seed: int) -> list[str]:
    """Cluster representatives in the split's deterministic order (a seeded hash of each representative)."""
    return sorted(set(members.values()), key=lambda rep: (seeded_unit(seed, rep), rep))


def assign_clusters(members: dict[str, str], config: SplitConfig) -> dict[str, str]:
    """Protein key -> split. Clusters are ordered by a seeded hash of their representative and filled into
    test, then validation, until each reaches its fraction of proteins; the rest is train."""
    by_rep: dict[str, list[str]] = defaultdict(list)
    for member, rep in members.items():
        by_rep[rep].append(member)
    total = len(members)
    targets = {"test": config.test_fraction * total, "validation": config.validation_fraction * total}
    filled = {"test": 0, "validation": 0}
    assignment: dict[str, str] = {}
    for rep in cluster_order(members, config.seed):
        size = len(by_rep[rep])
        split = "train"
        for name in ("test", "validation"):
            if filled[name] + size / 2 <= targets[name]:
                split = name
                filled[name] += size
                break
        for member in by_rep[rep]:
            assignment[member] = split
    return assignment


def protein_assignment(
    sequences: dict[str, str], config: SplitConfig
) -> tuple[dict[str, str], dict[str, Any]]:
    """Cluster the unique proteins (key -> sequence), assign clusters to splits, purge train homologs of
    evaluation proteins (their split becomes ``"purged"``). Returns (assignment, report)."""
    report: dict[str, Any] = {"config": asdict(config), "unique_proteins": len(sequences)}
    with tempfile.TemporaryDirectory(prefix="homology_split_", dir=config.tmp_root) as tmp:
        tmpdir = Path(tmp)
        fasta = tmpdir / "proteins.fasta"
        write_fasta(sorted(sequences.items()), fasta)
        params = ClusterParams(config.identity, config.coverage, 0, None, config.linclust, config.threads)
        start = time.perf_counter()
        members = cluster(fasta, params, tmp_root=tmpdir) if sequences else {}
        report["cluster_seconds"] = round(time.perf_counter() - start, 1)
        logger.info("clustered %d proteins in %.0f s", len(sequences), report["cluster_seconds"])
        cluster_sizes = Counter(members.values())
        report["clusters"] = len(cluster_sizes)
        report["largest_cluster"] = max(cluster_sizes.values(), default=0)
        report["singleton_clusters"] = sum(1 for n in cluster_sizes.values() if n == 1)
        if config.grow_eval_families and sequences:
            from protein_llm_nemo.data.families import grow_eval_families

            start = time.perf_counter()
            order = cluster_order(members, config.seed)
            assignment, report["families"] = grow_eval_families(
                members, sequences, order, config, tmpdir, fasta
            )
            report["families"]["seconds"] = round(time.perf_counter() - start, 1)
            logger.info("evaluation families: %s", report["families"])
        else:
            assignment = assign_clusters(members, config)
        report["proteins_per_split_before_purge"] = dict(Counter(assignment.values()))
        if config.purge and sequences:
            from protein_llm_nemo.data.leakage import read_eval_fastas

            external, report["eval_fastas"] = read_eval_fastas(config.eval_fastas)
            start = time.perf_counter()
            purged, passes = purge_train(assignment, sequences, config, tmpdir, external)
            report["purge_seconds"] = round(time.perf_counter() - start, 1)
            report["purged_train_proteins"] = len(purged)
            report["purge_passes"] = passes
            report["purge_iterations"] = sum(1 for p in passes if p["pass"] >= 1)
            for key in purged:
                assignment[key] = "purged"
    report["proteins_per_split"] = dict(Counter(assignment.values()))
    return assignment, report


def record_split(record: ProteinRecord, assignment: dict[str, str], config: SplitConfig) -> str:
    """The record's split, or a drop reason prefixed with ``drop:``."""
    if record.sequences:
        names = {assignment[sequence_key(s)] for s in record.sequences}
    else:
        u = seeded_unit(config.seed, record.id)
        val_end = config.test_fraction + config.validation_fraction
        names = {"test" if u < config.test_fraction else "validation" if u < val_end else "train"}
    if len(names) > 1:
        return "drop:proteins_in_different_splits"
    (name,) = names
    return "drop:homologous_to_evaluation_protein" if name == "purged" else name


def homology_split(records: Iterable[ProteinRecord], config: SplitConfig) -> SplitResult:
    """In-memory split (tests, small sets); `split_file` streams large record files."""
    records = list(records)
    sequences = {sequence_key(s): s for r in records for s in r.sequences}
    assignment, report = protein_assignment(sequences, config)
    counter = ReasonCounter()
    splits: dict[str, list[ProteinRecord]] = {name: [] for name in SPLITS}
    for record in records:
        counter.seen += 1
        name = record_split(record, assignment, config)
        if name.startswith("drop:"):
            counter.drop(name[5:])
            continue
        splits[name].append(record)
        counter.keep()
    counter.check("split records")
    report["records_per_split"] = {name: len(rs) for name, rs in splits.items()}
    report["records"] = counter.to_dict()
    return SplitResult(assignment, splits, counter, report)


def split_file(input_path: str | Path, out_dir: str | Path, config: SplitConfig) -> dict[str, Any]:
    """Two streaming passes over a record file: collect proteins, then write ``{train,validation,test}.jsonl``,
    ``split_report.json`` and ``protein_splits.tsv`` (key, split) into ``out_dir``, all together or none.

    The report's ``read`` counts every input line (malformed ones dropped by reason), ``records`` every record
    read: kept in a split or dropped by reason; both are checked (``seen == kept + dropped``).
    """
    out_dir = Path(out_dir)
    read_counter = ReasonCounter()
    sequences: dict[str, str] = {}
    for record in tqdm(read_records(input_path, read_counter), desc="collect proteins", unit="rec"):
        for seq in record.sequences:
            sequences.setdefault(sequence_key(seq), seq)
    assignment, report = protein_assignment(sequences, config)
    del sequences
    second_read = ReasonCounter()
    counter = ReasonCounter()
    per_split: Counter = Counter()
    with AtomicOutputs() as outputs, contextlib.ExitStack() as stack:
        handles = {
            name: stack.enter_context(open(outputs.stage(out_dir / f"{name}.jsonl"), "w", encoding="utf-8"))
            for name in SPLITS
        }
        for record in tqdm(read_records(input_path, second_read), desc="write splits", unit="rec"):
            counter.seen += 1
            name = record_split(record, assignment, config)
            if name.startswith("drop:"):
                counter.drop(name[5:])
                continue
            handles[name].write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            per_split[name] += 1
            counter.keep()
        stack.close()
        if second_read.to_dict() != read_counter.to_dict():
            raise DataFileError(
                f"{input_path} changed while it was split: first read {read_counter.to_dict()}, "
                f"second read {second_read.to_dict()}"
            )
        read_counter.check(f"records read from {input_path}")
        counter.check("split records")
        with open(outputs.stage(out_dir / "protein_splits.tsv"), "w", encoding="utf-8") as handle:
            for key, name in sorted(assignment.items()):
                handle.write(f"{key}\t{name}\n")
        report.update(
            input=str(input_path),
            read=read_counter.to_dict(),
            records_per_split=dict(per_split),
            records=counter.to_dict(),
        )
        write_json_report(report, outputs.stage(out_dir / "split_report.json"))
    return report


def purge_train(
    assignment: dict[str, str],
    sequences: dict[str, str],
    config: SplitConfig,
    tmpdir: Path,
    external: Sequence[tuple[str, str]] = (),
) -> tuple[set[str], list[dict[str, Any]]]:
    """Train protein keys aligning to any evaluation protein (the split's own, plus `external` ones: see
    `leakage.read_eval_fastas`) at >= identity over >= purge_coverage of the evaluation protein, and one report entry
    per mmseqs search.

    First pass, two searches unioned. Train proteins query evaluation proteins (``reverse_search``): each train
    protein needs one accepted hit (``--max-accept 1``), so a large family cannot hide members behind
    ``--max-seqs`` the way it can when an evaluation protein queries a training set holding hundreds of its
    homologs. Then evaluation proteins query training proteins (the leakage audit's direction), for the hits
    the asymmetric prefilter misses. Without the reverse search, hidden family members surface in the
    iterations below instead.

    Then it iterates to a fixed point: the leakage report's own search (`leakage_search_params`, evaluation
    proteins against the *remaining* training proteins, ``leakage_sensitivity`` / ``leakage_max_seqs``) runs
    again, every hit >= identity is purged, until a search finds none. Each search keeps only ``max_seqs``
    prefilter candidates per evaluation protein, so removing training proteins lets new ones through; only the
    shrinking training set is rewritten, nothing is re-clustered. Raises `PurgeNotConverged` (with the number
    of leaks the last search found) after ``purge_max_iterations`` searches that all still found leaks.
    """
    from protein_llm_nemo.data.leakage import LeakageConfig, leakage_search_params

    eval_entries = [(k, sequences[k]) for k, s in assignment.items() if s != "train"] + list(external)
    train_keys = [k for k, s in assignment.items() if s == "train"]
    if not eval_entries or not train_keys:
        return set(), []
    eval_fasta, train_fasta = tmpdir / "eval.fasta", tmpdir / "train.fasta"
    write_fasta(eval_entries, eval_fasta)
    write_fasta(((k, sequences[k]) for k in train_keys), train_fasta)
    passes: list[dict[str, Any]] = []
    purged: set[str] = set()

    def run(
        search_name: str, query: Path, target: Path, params: SearchParams, pass_index: int, searched: int
    ) -> None:
        logger.info(
            "purge pass %d (%s): %d queries x %d targets, -s %s",
            pass_index,
            search_name,
            *_sizes(search_name, searched, len(eval_entries)),
            params.sensitivity,
        )
        start = time.perf_counter()
        hits = [
            h for h in search(query, target, params, tmp_root=tmpdir) if float(h["fident"]) >= config.identity
        ]
        train_side, eval_side = ("query", "target") if search_name == "train->eval" else ("target", "query")
        leaked = {str(h[train_side]) for h in hits}
        new = leaked - purged
        purged.update(new)
        passes.append(
            {
                "pass": pass_index,
                "search": search_name,
                "sensitivity": params.sensitivity,
                "max_seqs": params.max_seqs,
                "train_proteins_searched": searched,
                "hits_at_or_above_identity": len(hits),
                "eval_proteins_with_hits": len({str(h[eval_side]) for h in hits}),
                "max_identity": max((float(h["fident"]) for h in hits), default=0.0),
                "newly_purged": len(new),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        logger.info(
            "purge pass %d (%s): %d hits >= %.0f%%, %d newly purged, %.0f s",
            pass_index,
            search_name,
            len(hits),
            100 * config.identity,
            len(new),
            passes[-1]["seconds"],
        )

    params = SearchParams(
        min_seq_id=config.identity,
        coverage=config.purge_coverage,
        cov_mode=1,  # coverage of the target = the evaluation protein
        sensitivity=config.purge_sensitivity,
        max_seqs=config.purge_max_seqs,
        max_accept=1,
        threads=config.threads,
    )
    if config.reverse_search:
        run("train->eval", train_fasta, eval_fasta, params, 0, len(train_keys))
    # And the audit's direction (evaluation proteins query training): mmseqs' k-mer prefilter is not
    # symmetric, so each direction finds homologs the other misses.
    params.cov_mode, params.max_accept = 2, None
    run("eval->train", eval_fasta, train_fasta, params, 0, len(train_keys))

    audit = leakage_search_params(
        LeakageConfig(
            threshold=config.identity,
            coverage=config.purge_coverage,
            sensitivity=config.leakage_sensitivity,
            max_seqs=config.leakage_max_seqs,
            threads=config.threads,
        )
    )
    for iteration in range(1, config.purge_max_iterations + 1):
        if len(purged) == len(train_keys):
            break  # nothing left to leak
        searched = write_fasta(((k, sequences[k]) for k in train_keys if k not in purged), train_fasta)
        run("eval->train", eval_fasta, train_fasta, audit, iteration, searched)
        if passes[-1]["hits_at_or_above_identity"] == 0:
            break
    else:
        last = passes[-1]
        raise PurgeNotConverged(
            f"homology purge did not converge in {config.purge_max_iterations} iterations: the last search still "
            f"found {last['newly_purged']} training proteins at >= {config.identity:.0%} identity to "
            f"{last['eval_proteins_with_hits']} evaluation proteins (raise purge_max_iterations)"
        )
    return purged, passes


def _sizes(search_name: str, train: int, evaluation: int) -> tuple[int, int]:
    return (train, evaluation) if search_name == "train->eval" else (evaluation, train)


def split_sequences(splits: dict[str, Sequence[ProteinRecord]]) -> dict[str, dict[str, str]]:
    """Unique proteins per split (key -> sequence)."""
    out: dict[str, dict[str, str]] = {}
    for name, records in splits.items():
        out[name] = {sequence_key(s): s for r in records for s in r.sequences}
    return out
