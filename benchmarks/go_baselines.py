"""GO baselines on a homology-controlled split: naive and homology-transfer F-max / S-min per namespace.

Reads the split's record files (`protein-llm data split` of `protein-llm data build-go`'s records), takes the
ontology from Debian metastudent-data's 2014 GO graph (the release the annotations come from; written as an
OBO into the output folder) or from ``--obo``, computes information accretion from the training annotations,
runs both baselines on the test proteins of each namespace and scores them with CAFA-evaluator.

    .venv/bin/python benchmarks/go_baselines.py --train data/go_split/train.jsonl \\
        --test data/go_split/test.jsonl --out-dir outputs/go_baselines

Writes ``results.json`` (scores, precision-recall curves, counts, wall times, peak RSS) and ``results.md`` (the
table). ``--max-test-proteins N --seed S`` scores a seeded random subset of at most N test proteins per namespace
(both baselines on the same proteins, searched against the whole training set). Results on real data:
docs/evaluation.md, "GO baselines on real data".
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.go.build import METASTUDENT_DIR
from protein_llm_nemo.evaluation.baselines.go import (
    homology_transfer_predictions,
    naive_predictions,
    read_go_annotations,
)
from protein_llm_nemo.evaluation.baselines.hits import HomologySearch, search_hits
from protein_llm_nemo.evaluation.metrics.go import GOScores, evaluate_go
from protein_llm_nemo.evaluation.metrics.information_accretion import (
    information_accretion,
    write_information_accretion,
)
from protein_llm_nemo.evaluation.metrics.obo import write_metastudent_obo
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure

NAMESPACES = ("molecular_function", "biological_process", "cellular_component")
SHORT = {"molecular_function": "MF", "biological_process": "BP", "cellular_component": "CC"}


class Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def time(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"  {name}: {self.seconds[name]} s", flush=True)
        return out


def _debian_version(package: str) -> str | None:
    try:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return proc.stdout.strip() or None


def _ontology(args: argparse.Namespace, clock: Clock) -> tuple[Path, dict[str, Any]]:
    if args.obo is not None:
        first_lines = Path(args.obo).read_text(errors="replace").splitlines()[:5]
        version = next((line for line in first_lines if line.startswith("data-version")), "unknown")
        return Path(args.obo), {"source": str(args.obo), "version": version}
    obo = args.out_dir / "metastudent_go.obo"
    summary = clock.time("ontology_obo", write_metastudent_obo, args.metastudent_dir, obo)
    return obo, {
        "source": f"{args.metastudent_dir}/goGraph.txt + nameMapping.txt (metastudent-data)",
        "debian_package_version": _debian_version("metastudent-data"),
        **vars(summary),
    }


def _row(method: str, scores: GOScores) -> dict[str, Any]:
    return {"method": method, **scores.to_dict(with_curve=False)}


def _table(rows: list[dict[str, Any]]) -> str:
    def number(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| method | namespace | F-max | threshold | precision | recall | coverage | weighted F-max | S-min | "
        "test proteins | predicted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {SHORT.get(row['namespace'], row['namespace'])} | {number(row['f_max'])} | "
            f"{number(row['threshold'], 2)} | {number(row['precision'])} | {number(row['recall'])} | "
            f"{number(row['coverage'])} | {number(row['weighted_f_max'])} | {number(row['s_min'], 2)} | "
            f"{row['ground_truth_proteins']:,} | {row['predicted_proteins']:,} |"
        )
    return "\n".join(lines)


def _subset(truth: dict[str, set[str]], limit: int | None, seed: int, namespace: str) -> dict[str, set[str]]:
    """A seeded random subset of at most `limit` test proteins (all of them when `limit` is None): the same
    seed and namespace draw the same proteins from the same test set."""
    if limit is None or len(truth) <= limit:
        return truth
    chosen = random.Random(f"{seed}:{namespace}").sample(sorted(truth), limit)
    return {protein: truth[protein] for protein in sorted(chosen)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="training records (JSONL or Arrow)")
    parser.add_argument("--test", type=Path, required=True, help="evaluation records (JSONL or Arrow)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--obo", type=Path, help="a GO OBO file instead of metastudent-data's graph")
    parser.add_argument("--metastudent-dir", type=Path, default=METASTUDENT_DIR)
    parser.add_argument("--keep-roots", action="store_true", help="score the namespace roots too")
    parser.add_argument(
        "--no-ia", action="store_true", help="skip information accretion (no weighted metrics)"
    )
    parser.add_argument("--sensitivity", type=float, default=HomologySearch.sensitivity)
    parser.add_argument("--max-seqs", type=int, default=HomologySearch.max_seqs)
    parser.add_argument("--threads", type=int, default=2, help="mmseqs2 threads")
    parser.add_argument(
        "--cafaeval-threads", type=int, default=1, help="cafaeval threads (each holds its own score matrices)"
    )
    parser.add_argument("--keep-cafa-files", action="store_true", help="keep each run's CAFA-format inputs")
    parser.add_argument(
        "--max-test-proteins",
        type=int,
        help="score a seeded random subset of at most this many test proteins per namespace (both baselines "
        "on the same subset; the training set stays whole)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --max-test-proteins' subset")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    start = time.perf_counter()

    obo, ontology_info = _ontology(args, clock)
    closure = clock.time("ontology_load", TermClosure.from_obo, obo)
    train = clock.time("read_train", read_go_annotations, args.train)
    test = clock.time("read_test", read_go_annotations, args.test)
    ia = None
    if not args.no_ia:
        all_training = {
            f"{namespace}\t{protein}": terms
            for namespace, proteins in train.terms.items()
            for protein, terms in proteins.items()
        }
        ia = clock.time("information_accretion", information_accretion, all_training, closure)
        write_information_accretion(ia, args.out_dir / "information_accretion.tsv")
    search = HomologySearch(sensitivity=args.sensitivity, max_seqs=args.max_seqs, threads=args.threads)

    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    test_proteins: dict[str, dict[str, int]] = {}
    for namespace in NAMESPACES:
        truth = test.proteins(namespace)
        training = train.proteins(namespace)
        if not truth or not training:
            print(f"{namespace}: no test or no training proteins, skipped")
            continue
        short = SHORT[namespace]
        test_proteins[short] = {"available": len(truth)}
        truth = _subset(truth, args.max_test_proteins, args.seed, namespace)
        test_proteins[short]["scored"] = len(truth)
        print(
            f"{namespace}: {len(truth):,} of {test_proteins[short]['available']:,} test proteins, "
            f"{len(training):,} training proteins",
            flush=True,
        )
        hits = clock.time(
            f"search_{short}",
            search_hits,
            {p: test.sequences[p] for p in truth},
            {p: train.sequences[p] for p in training},
            search,
            args.out_dir.resolve(),  # mmseqs runs inside its temporary folder: a relative root would not resolve
        )
        methods = {
            "naive": clock.time(f"naive_{short}", naive_predictions, training, truth, closure, namespace),
            "homology transfer (mmseqs2)": clock.time(
                f"transfer_{short}", homology_transfer_predictions, hits, training, closure, namespace
            ),
        }
        for method, predictions in methods.items():
            key = f"{method.split()[0]}_{short}"
            files_dir = args.out_dir / "cafa" / key if args.keep_cafa_files else None
            scores = clock.time(
                f"evaluate_{key}",
                evaluate_go,
                predictions,
                truth,
                obo,
                information_accretion=ia,
                exclude_roots=not args.keep_roots,
                threads=args.cafaeval_threads,
                files_dir=files_dir,
            )[namespace]
            rows.append(_row(method, scores))
            curves[key] = [vars(point) for point in scores.curve]
            print(f"    {method}: F-max {scores.f_max:.3f}, S-min {scores.s_min}", flush=True)
        rows[-1]["proteins_with_hits"] = len(hits)

    total = round(time.perf_counter() - start, 1)
    result = {
        "train": str(args.train),
        "test": str(args.test),
        "ontology": ontology_info,
        "exclude_roots": not args.keep_roots,
        "information_accretion": None if ia is None else "from the training annotations (Clark & Radivojac)",
        "search": vars(search),
        "read": {"train": train.read.to_dict(), "test": test.read.to_dict()},
        "test_subset": {"max_test_proteins": args.max_test_proteins, "seed": args.seed, **test_proteins},
        "skipped": {"train": dict(train.skipped), "test": dict(test.skipped)},
        "scores": rows,
        "curves": curves,
        "seconds": {**clock.seconds, "total": total},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
    }
    (args.out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    table = _table(rows)
    if args.max_test_proteins is not None:
        scored = ", ".join(f"{k} {v['scored']:,} of {v['available']:,}" for k, v in test_proteins.items())
        table += f"\n\nTest proteins scored (seeded subset, seed {args.seed}): {scored}."
    (args.out_dir / "results.md").write_text(table + "\n")
    print(table)
    print(f"total {total} s; results in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
