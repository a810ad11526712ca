"""The baselines an evaluation puts beside the model, on the run's own records (`evaluation.baselines`):

- ``naive``: GO tasks only; every protein gets the training term frequencies of its namespace;
- ``homology``: GO tasks: homology transfer from the training proteins' annotations (mmseqs2 bitscores);
  every other task: the answer of the training record, of the same task, whose protein is the nearest
  mmseqs2 hit (a protein without such a hit has no answer, scored as a parse failure and counted).

A baseline gives GO term scores (protein -> term -> score) and / or one answer per non-GO record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import read_records
from protein_llm_nemo.evaluation.baselines import (
    GoAnnotations,
    homology_transfer_predictions,
    naive_predictions,
    nearest_training_answers,
    search_hits,
)
from protein_llm_nemo.evaluation.go_scoring import NAMESPACE_OF_TASK, GoResources, protein_key

__all__ = ["BaselineOutput", "homology_baseline", "naive_baseline"]


@dataclass
class BaselineOutput:
    go_scores: dict[str, dict[str, float]] | None = None  # protein -> term -> score (GO tasks)
    answers: dict[str, str | None] | None = None  # record id -> answer (other tasks)
    counts: Counter = field(default_factory=Counter)


def _proteins_by_namespace(records: Sequence[ProteinRecord]) -> dict[str, dict[str, str]]:
    """namespace -> protein -> sequence, for the GO records."""
    out: dict[str, dict[str, str]] = {}
    for record in records:
        out.setdefault(NAMESPACE_OF_TASK[record.task], {})[protein_key(record)] = record.sequences[0]
    return out


def _merge(into: dict[str, dict[str, float]], scores: dict[str, dict[str, float]]) -> None:
    for protein, term_scores in scores.items():
        if protein in into:
            into[protein] = {**into[protein], **term_scores}
        else:
            into[protein] = term_scores  # shared across proteins when the baseline shares it (naive)


def naive_baseline(
    go_records: Sequence[ProteinRecord], training: GoAnnotations, resources: GoResources
) -> BaselineOutput:
    out = BaselineOutput(go_scores={})
    for namespace, proteins in sorted(_proteins_by_namespace(go_records).items()):
        train = training.proteins(namespace)
        out.counts[f"training_proteins:{namespace}"] = len(train)
        _merge(out.go_scores, naive_predictions(train, proteins, resources.closure, namespace))
    return out


def homology_baseline(
    go_records: Sequence[ProteinRecord],
    other_records: Sequence[ProteinRecord],
    training: GoAnnotations,
    train_path: str | Path,
    resources: GoResources | None,
) -> BaselineOutput:
    out = BaselineOutput()
    if go_records and resources is not None:
        out.go_scores = {}
        by_namespace = _proteins_by_namespace(go_records)
        queries = {p: s for proteins in by_namespace.values() for p, s in proteins.items()}
        hits = search_hits(queries, training.sequences)
        for namespace, proteins in sorted(by_namespace.items()):
            found = {p: hits[p] for p in proteins if p in hits}
            scores = homology_transfer_predictions(
                found, training.proteins(namespace), resources.closure, namespace
            )
            out.counts[f"go_proteins_with_transfer:{namespace}"] = len(scores)
            out.counts[f"go_proteins_without_transfer:{namespace}"] = len(proteins) - len(scores)
            _merge(out.go_scores, scores)
    if other_records:
        read = ReasonCounter()
        nearest = nearest_training_answers(
            read_records(train_path, read), other_records, tasks={r.task for r in other_records}
        )
        read.check(f"training records {train_path}")
        out.answers = nearest.answers
        out.counts.update({f"nearest:{reason}": n for reason, n in nearest.counts.items()})
    return out
