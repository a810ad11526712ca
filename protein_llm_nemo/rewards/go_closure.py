"""GO terms propagated to their ancestors within one namespace, memoised per ontology.

A term's closure is the term plus its is_a / part_of ancestors that share its namespace (part_of edges can
leave a namespace: a molecular function can be part_of a biological process), without the three namespace
roots: every annotated protein has them, so counting them would pay any answer (the CAFA evaluator leaves
them out too). Closures are computed on first use and kept: a GRPO step scores thousands of completions
over a few thousand distinct terms, so after warm-up scoring is set unions over cached frozensets.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from protein_llm_nemo.data.go.ontology import GeneOntology

ROOTS: frozenset[str] = frozenset({"GO:0003674", "GO:0008150", "GO:0005575"})


class NamespaceClosure:
    """Per-term (namespace, closure) of one ontology, memoised."""

    def __init__(self, ontology: GeneOntology):
        # Weak: the shared cache below must not keep an ontology alive (its rewards hold it).
        self._ontology = weakref.ref(ontology)
        self._namespaces: dict[str, str | None] = {}
        self._closures: dict[str, frozenset[str]] = {}

    @property
    def ontology(self) -> GeneOntology:
        ontology = self._ontology()
        if ontology is None:
            raise ReferenceError("the ontology of this NamespaceClosure no longer exists")
        return ontology

    def namespace(self, term: str) -> str | None:
        found = self._namespaces.get(term, "")
        if found == "":
            found = self._namespaces[term] = self.ontology.namespace_of(term)
        return found

    def closure(self, term: str) -> frozenset[str]:
        """`term` and its same-namespace ancestors, roots excluded."""
        found = self._closures.get(term)
        if found is None:
            namespace = self.namespace(term)
            ancestors = self.ontology.ancestors(term)
            members = {a for a in ancestors if self.namespace(a) == namespace}
            members.add(term)
            found = self._closures[term] = frozenset(members - ROOTS)
        return found

    def propagate(self, terms: Iterable[str]) -> set[str]:
        """The union of the terms' closures."""
        out: set[str] = set()
        for term in terms:
            out |= self.closure(term)
        return out


# id(ontology) -> (a weak reference to it, its closure); entries leave with their ontology.
_CACHE: dict[int, tuple[weakref.ref, NamespaceClosure]] = {}


def closure_for(ontology: GeneOntology) -> NamespaceClosure:
    """The shared `NamespaceClosure` of `ontology` (one per ontology object, whoever asks)."""
    key = id(ontology)
    entry = _CACHE.get(key)
    if entry is None or entry[0]() is not ontology:
        closure = NamespaceClosure(ontology)
        _CACHE[key] = (weakref.ref(ontology, lambda _, key=key: _CACHE.pop(key, None)), closure)
        return closure
    return entry[1]
