"""Gene Ontology names, namespaces and is_a/part_of parents, from an OBO file or metastudent-data tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protein_llm_nemo.data.storage import open_text


@dataclass(frozen=True)
class Aspect:
    code: str  # CAFA code
    letter: str  # GAF column 9
    namespace: str  # OBO namespace
    task: str  # record task
    phrase: str  # words used in instructions


ASPECTS: dict[str, Aspect] = {
    "MFO": Aspect("MFO", "F", "molecular_function", "go_mf", "molecular function"),
    "BPO": Aspect("BPO", "P", "biological_process", "go_bp", "biological process"),
    "CCO": Aspect("CCO", "C", "cellular_component", "go_cc", "cellular component"),
}
ASPECT_BY_LETTER = {a.letter: a for a in ASPECTS.values()}
ASPECT_BY_NAMESPACE = {a.namespace: a for a in ASPECTS.values()}


def aspect_from(value: str) -> Aspect:
    """Accept CAFA codes (MFO), GAF letters (F), namespaces (molecular_function) or short forms (MF)."""
    key = value.strip()
    if key.upper() in ASPECTS:
        return ASPECTS[key.upper()]
    if key.upper() in ASPECT_BY_LETTER:
        return ASPECT_BY_LETTER[key.upper()]
    if key in ASPECT_BY_NAMESPACE:
        return ASPECT_BY_NAMESPACE[key]
    if key.upper() + "O" in ASPECTS:
        return ASPECTS[key.upper() + "O"]
    raise ValueError(f"unknown GO aspect {value!r} (expected MFO/BPO/CCO, F/P/C or a namespace)")


@dataclass
class GeneOntology:
    names: dict[str, str] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    obsolete: set[str] = field(default_factory=set)
    definitions: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def name(self, go_id: str) -> str | None:
        return self.names.get(go_id)

    def namespace_of(self, term: str) -> str | None:
        """The term's namespace; where the source gives none for it (metastudent tables name only the
        roots' namespaces), that of an is_a / part_of ancestor."""
        found = self.namespaces.get(term)
        if found is None:
            found = next(
                (self.namespaces[a] for a in sorted(self.ancestors(term)) if a in self.namespaces), None
            )
        return found

    def ancestors(self, term: str) -> frozenset[str]:
        """All is_a / part_of ancestors of a term (memoised: the DAG is walked once per term)."""
        cache = self.__dict__.setdefault("_ancestor_cache", {})
        found = cache.get(term)
        if found is None:
            out: set[str] = set()
            for parent in self.parents.get(term, ()):
                out.add(parent)
                out |= self.ancestors(parent)
            found = cache[term] = frozenset(out)
        return found

    def leaves(self, terms: set[str] | list[str]) -> list[str]:
        """The most specific terms of a set: drop every term that is an ancestor of another in the set."""
        terms = set(terms)
        ancestor_sets = [self.ancestors(term) for term in terms]
        return sorted(t for t in terms if not any(t in ancestors for ancestors in ancestor_sets))

    @classmethod
    def from_obo(cls, path: str | Path) -> GeneOntology:
        onto = cls()
        term: dict[str, object] | None = None

        def flush(t: dict[str, object] | None) -> None:
            if not t or "id" not in t:
                return
            go_id = str(t["id"])
            onto.names[go_id] = str(t.get("name", ""))
            if "namespace" in t:
                onto.namespaces[go_id] = str(t["namespace"])
            if t.get("def"):
                onto.definitions[go_id] = str(t["def"])
            if t.get("obsolete"):
                onto.obsolete.add(go_id)
            parents = t.get("parents")
            if parents:
                onto.parents[go_id] = set(parents)  # type: ignore[arg-type]

        with open_text(path) as handle:
            for raw in handle:
                line = raw.strip()
                if line.startswith("["):
                    flush(term)
                    term = {} if line == "[Term]" else None
                    continue
                if term is None or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                value = value.strip()
                if key == "id":
                    term["id"] = value
                elif key == "name":
                    term["name"] = value
                elif key == "namespace":
                    term["namespace"] = value
                elif key == "def":
                    term["def"] = value.split('"')[1] if value.count('"') >= 2 else value
                elif key == "is_obsolete" and value == "true":
                    term["obsolete"] = True
                elif key == "is_a":
                    term.setdefault("parents", []).append(value.split()[0])  # type: ignore[union-attr]
                elif key == "relationship" and value.startswith("part_of "):
                    term.setdefault("parents", []).append(value.split()[1])  # type: ignore[union-attr]
        flush(term)
        return onto

    @classmethod
    def from_metastudent(cls, dataset_dir: str | Path) -> GeneOntology:
        """``nameMapping.txt`` (id TAB name) and ``goGraph.txt`` (child TAB parent TAB n TAB relation)."""
        dataset_dir = Path(dataset_dir)
        onto = cls()
        with open_text(dataset_dir / "nameMapping.txt") as handle:
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 2 and fields[0].startswith("GO:"):
                    onto.names[fields[0]] = fields[1]
        graph = dataset_dir / "goGraph.txt"
        if graph.exists():
            with open_text(graph) as handle:
                for line in handle:
                    fields = line.rstrip("\n").split("\t")
                    if len(fields) >= 4 and fields[3] in {"is_a", "part_of"}:
                        onto.parents.setdefault(fields[0], set()).add(fields[1])
        for aspect in ASPECTS.values():
            # Namespaces are implied by the folder an annotation comes from; roots are known.
            onto.namespaces.setdefault(
                {"MFO": "GO:0003674", "BPO": "GO:0008150", "CCO": "GO:0005575"}[aspect.code], aspect.namespace
            )
        return onto
