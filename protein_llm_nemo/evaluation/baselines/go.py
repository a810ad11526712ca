"""GO baselines from canonical GO records: CAFA's naive predictor and homology transfer (DeepGOPlus's formula).

- naive: every protein gets the same scores, a term's frequency among the training proteins annotated in
  the namespace (annotations propagated, so the root scores 1).
- homology transfer: the evaluation protein's mmseqs2 hits among the training proteins annotated in the
  namespace, score(t) = sum of the bitscores of hits whose (propagated) annotations hold t / sum of the
  bitscores of all its hits; a protein without a hit gets no prediction (it still counts in recall).

Inputs are the records `protein-llm data build-go` writes (tasks go_mf / go_bp / go_cc, ``meta.accession``,
``meta.all_go_ids``: every named term the source gave, before the answer keeps the most specific ones).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protein_llm_nemo.data.go.ontology import ASPECTS
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import read_records
from protein_llm_nemo.evaluation.baselines.hits import Hit
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure, resolve_namespace

NAMESPACE_BY_TASK = {aspect.task: aspect.namespace for aspect in ASPECTS.values()}


@dataclass
class GoAnnotations:
    """What a GO record file says: namespace -> protein -> GO terms, and protein -> sequence."""

    terms: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    sequences: dict[str, str] = field(default_factory=dict)
    read: ReasonCounter = field(default_factory=ReasonCounter)  # lines seen / kept / dropped by the reader
    skipped: Counter = field(default_factory=Counter)  # readable records that carry no GO annotation

    def proteins(self, namespace: str) -> dict[str, set[str]]:
        return self.terms.get(resolve_namespace(namespace), {})


def read_go_annotations(path: str | Path) -> GoAnnotations:
    """Collect the GO annotations of a record file (JSONL or Arrow); other tasks are counted and skipped."""
    out = GoAnnotations()
    for record in read_records(path, out.read):
        namespace = NAMESPACE_BY_TASK.get(record.task)
        if namespace is None:
            out.skipped["not_a_go_task"] += 1
            continue
        terms = record.meta.get("all_go_ids") or record.meta.get("go_ids") or []
        if not terms:
            out.skipped["no_go_ids"] += 1
            continue
        if len(record.sequences) != 1:
            out.skipped["not_one_protein"] += 1
            continue
        protein = str(record.meta.get("accession") or record.id)
        out.terms.setdefault(namespace, {}).setdefault(protein, set()).update(terms)
        out.sequences[protein] = record.sequences[0]
    out.read.check(str(path))
    return out


def naive_scores(
    training: Mapping[str, Iterable[str]], ontology: TermClosure, namespace: str
) -> dict[str, float]:
    """term -> share of the training proteins annotated in `namespace` whose propagated terms include it."""
    namespace = resolve_namespace(namespace)
    counts: Counter = Counter()
    proteins = 0
    for terms in training.values():
        propagated = ontology.propagate(terms, namespace)
        if propagated:
            counts.update(propagated)
            proteins += 1
    return {term: n / proteins for term, n in sorted(counts.items())} if proteins else {}


def naive_predictions(
    training: Mapping[str, Iterable[str]], targets: Iterable[str], ontology: TermClosure, namespace: str
) -> dict[str, dict[str, float]]:
    """The naive scores for every target protein (one shared, read-only dict)."""
    scores = naive_scores(training, ontology, namespace)
    return {protein: scores for protein in targets}


def homology_transfer_predictions(
    hits: Mapping[str, Sequence[Hit]],
    training: Mapping[str, Iterable[str]],
    ontology: TermClosure,
    namespace: str,
) -> dict[str, dict[str, float]]:
    """query -> term -> bitscore-weighted share of its hits (among training proteins annotated in
    `namespace`) that carry the term after propagation."""
    namespace = resolve_namespace(namespace)
    propagated: dict[str, frozenset[str]] = {}

    def annotations(protein: str) -> frozenset[str]:
        found = propagated.get(protein)
        if found is None:
            found = propagated[protein] = frozenset(ontology.propagate(training.get(protein, ()), namespace))
        return found

    predictions: dict[str, dict[str, float]] = {}
    for query, query_hits in hits.items():
        usable = [hit for hit in query_hits if annotations(hit.target)]
        total = sum(hit.bits for hit in usable)
        if total <= 0:
            continue
        weights: Counter = Counter()
        for hit in usable:
            for term in annotations(hit.target):
                weights[term] += hit.bits
        predictions[query] = {term: min(1.0, weight / total) for term, weight in sorted(weights.items())}
    return predictions
