"""Propagating GO terms to their ancestors the way CAFA-evaluator does.

cafaeval follows is_a and part_of edges inside one namespace only (a part_of edge into another namespace
is dropped), ignores obsolete terms and maps alt_ids to the current id. `TermClosure` applies the same
rules to Python term sets, for everything computed beside cafaeval: the naive and homology baselines,
information accretion, sampled-answer confidences and the F1 of a single answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from protein_llm_nemo.data.go.ontology import GeneOntology, aspect_from
from protein_llm_nemo.evaluation.metrics.obo import OboTerm, canonical_ids, read_obo


class TermClosure:
    """Namespaces, same-namespace parents and alt_ids of an ontology; ``closure(t)`` = t and its ancestors."""

    def __init__(
        self,
        namespaces: Mapping[str, str],
        parents: Mapping[str, Iterable[str]],
        alt_ids: Mapping[str, str] | None = None,
    ):
        self.namespaces = dict(namespaces)
        self.parents = {
            term: tuple(p for p in parents.get(term, ()) if self.namespaces.get(p) == namespace)
            for term, namespace in self.namespaces.items()
        }
        self.alt_ids: dict[str, str] = dict(alt_ids or {})
        self._closures: dict[str, frozenset[str]] = {}

    @classmethod
    def from_obo_terms(cls, terms: Mapping[str, OboTerm]) -> TermClosure:
        current = {t.id: t for t in terms.values() if not t.obsolete}
        aliases = {alt: canonical for alt, canonical in canonical_ids(terms).items() if alt != canonical}
        return cls(
            {t.id: t.namespace for t in current.values()},
            {t.id: t.parents for t in current.values()},
            aliases,
        )

    @classmethod
    def from_obo(cls, path: str | Path) -> TermClosure:
        return cls.from_obo_terms(read_obo(path))

    @classmethod
    def from_gene_ontology(cls, ontology: GeneOntology) -> TermClosure:
        namespaces = {
            term: namespace
            for term in set(ontology.names) | set(ontology.parents)
            if term not in ontology.obsolete and (namespace := ontology.namespace_of(term)) is not None
        }
        return cls(namespaces, ontology.parents)

    @classmethod
    def of(cls, ontology: GeneOntology | TermClosure) -> TermClosure:
        return ontology if isinstance(ontology, TermClosure) else cls.from_gene_ontology(ontology)

    def canonical(self, term: str) -> str | None:
        """The current id of a term or alt_id; None when the ontology does not know it (or it is obsolete)."""
        if term in self.namespaces:
            return term
        return self.alt_ids.get(term)

    def namespace_of(self, term: str) -> str | None:
        current = self.canonical(term)
        return None if current is None else self.namespaces[current]

    def closure(self, term: str) -> frozenset[str]:
        """The term (current id) and all its ancestors in its namespace; empty for an unknown term."""
        current = self.canonical(term)
        if current is None:
            return frozenset()
        found = self._closures.get(current)
        if found is None:
            out = {current}
            for parent in self.parents[current]:
                out |= self.closure(parent)
            found = self._closures[current] = frozenset(out)
        return found

    def propagate(self, terms: Iterable[str], namespace: str | None = None) -> set[str]:
        """Union of the closures of `terms`, restricted to `namespace` (a namespace, MF/MFO/F) when given."""
        wanted = None if namespace is None else resolve_namespace(namespace)
        out: set[str] = set()
        for term in terms:
            found = self.closure(term)
            if found and (wanted is None or self.namespace_of(term) == wanted):
                out |= found
        return out

    def is_orphan(self, term: str) -> bool:
        """No parent in its namespace: the roots (what cafaeval's ``no_orphans`` leaves out)."""
        current = self.canonical(term)
        return current is not None and not self.parents[current]


def resolve_namespace(value: str) -> str:
    """A namespace name as cafaeval reports it, from a namespace, a CAFA code (MFO), a letter (F) or MF;
    any other name (a non-GO ontology's namespace) is taken as it is."""
    try:
        return aspect_from(value).namespace
    except ValueError:
        return value
