"""Information accretion (IA) of GO terms from a set of annotations, the weights of weighted F-max and S-min.

CAFA-evaluator takes IA as an input file and does not compute it; its authors point to the method of Clark
and Radivojac (Bioinformatics 2013) as implemented for CAFA 5 (claradepaolis/InformationAccretion):
annotations propagated over is_a / part_of, then

    ia(t) = -log2( n(t and all parents of t) / n(all parents of t) )

counted over proteins, with one artificial protein annotated with every term added to all counts (so an
unannotated term gets log2(n(parents) + 1) instead of infinity), and exactly 0 where the counts are equal
(the roots, and terms every protein with the parents has). Computed per namespace, on training annotations.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from protein_llm_nemo.data.go.ontology import GeneOntology
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure


def information_accretion(
    annotations: Mapping[str, Iterable[str]], ontology: GeneOntology | TermClosure
) -> dict[str, float]:
    """IA of every term of the ontology from `annotations` (protein -> GO terms, any namespaces, propagated
    or not); terms of a namespace no protein is annotated in get 0."""
    closure = TermClosure.of(ontology)
    by_namespace: dict[str, list[str]] = {}
    for term, namespace in closure.namespaces.items():
        by_namespace.setdefault(namespace, []).append(term)
    ia: dict[str, float] = {}
    for namespace, terms in sorted(by_namespace.items()):
        ia.update(_namespace_ia(annotations, closure, namespace, sorted(terms)))
    return ia


def _namespace_ia(
    annotations: Mapping[str, Iterable[str]], closure: TermClosure, namespace: str, terms: list[str]
) -> dict[str, float]:
    index = {term: i for i, term in enumerate(terms)}
    term_column, protein_row = array("i"), array("i")
    n_proteins = 0
    for protein_terms in annotations.values():
        propagated = closure.propagate(protein_terms, namespace)
        if not propagated:
            continue
        term_column.extend(index[t] for t in propagated)
        protein_row.extend([n_proteins] * len(propagated))
        n_proteins += 1
    columns = np.frombuffer(term_column, dtype=np.int32)
    rows = np.frombuffer(protein_row, dtype=np.int32)
    order = np.argsort(columns, kind="stable")
    rows_by_term = np.split(rows[order], np.cumsum(np.bincount(columns, minlength=len(terms)))[:-1])
    mask = np.zeros(n_proteins, dtype=bool)

    def with_all(parent_terms: tuple[str, ...]) -> int:
        """Proteins annotated with every one of `parent_terms` (all proteins when there are none)."""
        if not parent_terms:
            return n_proteins
        members = sorted((rows_by_term[index[p]] for p in parent_terms), key=len)
        base = members[0]
        for other in members[1:]:
            mask[other] = True
            base = base[mask[base]]
            mask[other] = False
        return len(base)

    out: dict[str, float] = {}
    for term in terms:
        with_term = len(rows_by_term[index[term]]) + 1  # + the artificial protein
        with_parents = with_all(closure.parents[term]) + 1
        out[term] = 0.0 if with_term == with_parents else -math.log2(with_term / with_parents)
    return out


def write_information_accretion(ia: Mapping[str, float], path: str | Path) -> Path:
    """CAFA-evaluator's IA file: ``term<TAB>ia`` per line."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for term, value in sorted(ia.items()):
            handle.write(f"{term}\t{value!r}\n")
    return path


def read_information_accretion(path: str | Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'term<TAB>information accretion', got {line!r}")
            out[fields[0]] = float(fields[1])
    return out
