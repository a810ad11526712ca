"""OBO files for CAFA-evaluator: read the terms it reads, copy a subset of them, write an OBO from metastudent-data.

`read_obo` keeps what ``cafaeval``'s parser uses (id, namespace, alt_id, is_a, part_of, is_obsolete) and each
[Term] stanza's text, so `write_pruned_obo` can hand cafaeval a copy with only the terms an evaluation
touches. cafaeval builds a dense terms x terms matrix per namespace (~26,000 biological-process terms:
0.7 GB, and a column scan per term when propagating); terms that are neither annotated nor predicted, nor an
ancestor of such a term, add nothing to any count, so leaving them out changes no metric (tested against
cafaeval on the full file).

`write_metastudent_obo` turns Debian metastudent-data's 2014 GO tables (``goGraph.txt``: parent TAB child TAB
distance TAB relation; ``nameMapping.txt``) into an OBO, so annotations from that release are evaluated on
the ontology they were made with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from protein_llm_nemo.data.files import DataFileError, open_text, read_text

ROOTS = {
    "GO:0003674": "molecular_function",
    "GO:0008150": "biological_process",
    "GO:0005575": "cellular_component",
}


class OboFileError(ValueError):
    """An ontology file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class OboTerm:
    id: str
    namespace: str
    parents: tuple[str, ...]  # is_a and part_of targets, as cafaeval follows them
    alt_ids: tuple[str, ...] = ()
    obsolete: bool = False
    stanza: str = ""


def read_obo(path: str | Path) -> dict[str, OboTerm]:
    """The [Term] stanzas of an OBO file that have an id and a namespace (obsolete ones included, flagged)."""
    path = Path(path)
    try:
        text = read_text(path)
    except DataFileError as exc:
        raise OboFileError(f"{path}: cannot be read as an OBO ontology ({exc})") from exc
    terms: dict[str, OboTerm] = {}
    for block in ("\n" + text).split("\n["):
        if not block.startswith("Term]"):
            continue
        term = _parse_stanza("[" + block.rstrip("\n") + "\n")
        if term is not None:
            terms[term.id] = term
    if not any(not term.obsolete for term in terms.values()):
        raise OboFileError(f"{path}: not an OBO ontology (no [Term] stanza with an id and a namespace)")
    return terms


def _parse_stanza(stanza: str) -> OboTerm | None:
    fields: dict[str, list[str]] = {}
    for line in stanza.splitlines()[1:]:
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields.setdefault(key, []).append(value)
    parents = [value.split("!")[0].strip() for value in fields.get("is_a", [])]
    parents += [value.split()[1] for value in fields.get("relationship", []) if value.startswith("part_of ")]
    namespace = next((v for v in fields.get("namespace", []) if v != "external"), None)
    if "id" not in fields or namespace is None:
        return None
    return OboTerm(
        id=fields["id"][0],
        namespace=namespace,
        parents=tuple(parents),
        alt_ids=tuple(fields.get("alt_id", [])),
        obsolete="is_obsolete" in fields,
        stanza=stanza,
    )


def canonical_ids(terms: Mapping[str, OboTerm]) -> dict[str, str]:
    """Every usable id (and alt_id) -> its current term id, as cafaeval maps them; obsolete terms excluded."""
    out: dict[str, str] = {}
    for term in terms.values():
        if term.obsolete:
            continue
        out[term.id] = term.id
        for alt in term.alt_ids:
            out.setdefault(alt, term.id)
    return out


def write_pruned_obo(
    terms: Mapping[str, OboTerm], keep: Iterable[str], path: str | Path, header: str = "format-version: 1.2\n"
) -> int:
    """Write the stanzas of `keep` (current ids) and of all their ancestors; returns how many were written."""
    wanted: set[str] = set()
    stack = [t for t in keep if t in terms]
    while stack:
        term_id = stack.pop()
        if term_id in wanted:
            continue
        wanted.add(term_id)
        stack.extend(p for p in terms[term_id].parents if p in terms and p not in wanted)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(header + "\n")
        for term_id in sorted(wanted):
            handle.write(terms[term_id].stanza + "\n")
    return len(wanted)


@dataclass
class MetastudentOboSummary:
    terms: int
    per_namespace: dict[str, int]
    is_a_edges: int
    part_of_edges: int
    skipped_without_namespace: (
        int  # obsolete terms hang under pseudo-roots such as obsolete_molecular_function
    )


def write_metastudent_obo(dataset_dir: str | Path, path: str | Path) -> MetastudentOboSummary:
    """Write ``dataset_dir``'s GO graph (is_a and part_of edges, names) as an OBO file.

    A term's namespace is that of the root its is_a ancestors reach (is_a never crosses namespaces);
    terms reaching no root are the obsolete ones and are left out."""
    dataset_dir = Path(dataset_dir)
    names: dict[str, str] = {}
    with open_text(dataset_dir / "nameMapping.txt") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 2 and fields[0].startswith("GO:"):
                names[fields[0]] = fields[1]
    is_a: dict[str, set[str]] = {}
    part_of: dict[str, set[str]] = {}
    with open_text(dataset_dir / "goGraph.txt") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4 or not (fields[0].startswith("GO:") and fields[1].startswith("GO:")):
                continue
            parent, child, relation = fields[0], fields[1], fields[3]
            if relation == "is_a":
                is_a.setdefault(child, set()).add(parent)
            elif relation == "part_of":
                part_of.setdefault(child, set()).add(parent)
    namespaces: dict[str, str] = dict(ROOTS)

    def namespace_of(term: str, seen: frozenset[str] = frozenset()) -> str | None:
        if term in namespaces:
            return namespaces[term]
        found = next(
            (ns for parent in sorted(is_a.get(term, ())) if parent not in seen
             if (ns := namespace_of(parent, seen | {term})) is not None),
            None,
        )  # fmt: skip
        if found is not None:
            namespaces[term] = found
        return found

    all_terms = set(names) | set(is_a) | set(part_of)
    resolved = {t: ns for t in sorted(all_terms) if (ns := namespace_of(t)) is not None}
    per_namespace: dict[str, int] = {}
    edges = {"is_a": 0, "part_of": 0}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            f"format-version: 1.2\ndata-version: metastudent-data {dataset_dir.name} goGraph.txt\n\n"
        )
        for term, namespace in resolved.items():
            per_namespace[namespace] = per_namespace.get(namespace, 0) + 1
            handle.write(f"[Term]\nid: {term}\nname: {names.get(term, term)}\nnamespace: {namespace}\n")
            for parent in sorted(p for p in is_a.get(term, ()) if resolved.get(p) == namespace):
                handle.write(f"is_a: {parent}\n")
                edges["is_a"] += 1
            for parent in sorted(p for p in part_of.get(term, ()) if p in resolved):
                handle.write(f"relationship: part_of {parent}\n")
                edges["part_of"] += 1
            handle.write("\n")
    return MetastudentOboSummary(
        terms=len(resolved),
        per_namespace=dict(sorted(per_namespace.items())),
        is_a_edges=edges["is_a"],
        part_of_edges=edges["part_of"],
        skipped_without_namespace=len(all_terms) - len(resolved),
    )
