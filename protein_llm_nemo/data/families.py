"""Evaluation clusters grown into homology families before the purge.

Fast clustering (`linclust`) at 30% identity fragments protein families: a family's fragments land in
different splits, and the purge then deletes from training every fragment homologous to an evaluation
fragment — on Swiss-Prot GO data about half of the training proteins. Growing fixes the cause instead:
seed clusters (more than the evaluation splits need, in the split's seeded order) search all proteins once;
each seed, the proteins it hits at >= the identity, and their whole clusters form one family (union-find, so
families that touch merge). Families then fill test and validation in seed order, whole, under the same
size rule as `assign_clusters`; families too large for a split stay in training whole. The purge that
follows removes only what one hop of search did not reach.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protein_llm_nemo.data.mmseqs import SearchParams, search, write_fasta

if TYPE_CHECKING:
    from protein_llm_nemo.data.homology import SplitConfig


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self.parent.setdefault(item, item)
        if parent != item:
            parent = self.parent[item] = self.find(parent)
        return parent

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def grow_eval_families(
    members: dict[str, str],
    sequences: dict[str, str],
    order: list[str],
    config: SplitConfig,
    tmpdir: Path,
    all_fasta: Path,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Protein key -> split, with evaluation splits made of whole grown families, and a report.

    ``members``: protein -> cluster representative; ``order``: representatives in the split's seeded order
    (seeds are taken from its head).
    """
    from protein_llm_nemo.data.homology import seeded_unit

    by_rep: dict[str, list[str]] = defaultdict(list)
    for member, rep in members.items():
        by_rep[rep].append(member)
    total = len(members)
    targets = {"test": config.test_fraction * total, "validation": config.validation_fraction * total}
    largest_fit = 2 * max(targets.values())
    budget = config.family_seed_factor * sum(targets.values())
    seeds: list[str] = []
    seeded = 0
    for rep in order:
        if seeded >= budget:
            break
        if len(by_rep[rep]) <= largest_fit:  # a cluster that cannot fit any split cannot seed one
            seeds.append(rep)
            seeded += len(by_rep[rep])
    report: dict[str, Any] = {"seed_clusters": len(seeds), "seed_proteins": seeded}
    families = _UnionFind()
    for rep in seeds:
        families.find(rep)
    if seeds:
        seed_fasta = tmpdir / "family_seeds.fasta"
        write_fasta(((m, sequences[m]) for rep in seeds for m in by_rep[rep]), seed_fasta)
        params = SearchParams(
            min_seq_id=config.identity,
            coverage=config.purge_coverage,
            cov_mode=2,  # coverage of the seed, as the purge and the leakage report measure it
            sensitivity=config.purge_sensitivity,
            max_seqs=config.purge_max_seqs,
            threads=config.threads,
        )
        start = time.perf_counter()
        hits = search(seed_fasta, all_fasta, params, tmp_root=tmpdir)
        report["search_seconds"] = round(time.perf_counter() - start, 1)
        report["hits"] = 0
        for hit in hits:
            if float(hit["fident"]) >= config.identity:
                report["hits"] += 1
                families.union(members[str(hit["query"])], members[str(hit["target"])])
    grouped: dict[str, list[str]] = defaultdict(list)
    for rep in list(families.parent):
        grouped[families.find(rep)].append(rep)
    # Families in a seeded order of their root (the smallest representative): every family is equally likely
    # to come first, whatever its size (ordering by its earliest seed would favour families with many seeds).
    family_order = sorted(grouped, key=lambda root: (seeded_unit(config.seed, root), root))
    assignment = dict.fromkeys(members, "train")
    filled = {"test": 0, "validation": 0}
    placed: Counter = Counter()
    sizes = []
    evaluation_sizes: dict[str, list[int]] = {"test": [], "validation": []}
    for root in family_order:
        size = sum(len(by_rep[rep]) for rep in grouped[root])
        sizes.append(size)
        for name in ("test", "validation"):
            if filled[name] + size / 2 <= targets[name]:
                filled[name] += size
                placed[name] += 1
                evaluation_sizes[name].append(size)
                for rep in grouped[root]:
                    for member in by_rep[rep]:
                        assignment[member] = name
                break
        else:
            placed["train"] += 1
    seed_members = {m for rep in seeds for m in by_rep[rep]}
    report.update(
        families=len(family_order),
        families_per_split=dict(placed),
        largest_evaluation_families={
            name: sorted(v, reverse=True)[:5] for name, v in evaluation_sizes.items()
        },
        largest_family=max(sizes, default=0),
        proteins_in_families=sum(sizes),
        evaluation_proteins_from_outside_the_seeds=sum(
            1 for m, s in assignment.items() if s != "train" and m not in seed_members
        ),
        evaluation_targets={name: round(value) for name, value in targets.items()},
    )
    return assignment, report
