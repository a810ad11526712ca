"""GO annotations in three upstream layouts, all turned into GO-term instruction records:

- ``gaf``: GO Annotation File 2.x (17 tab-separated columns; ``!`` comments) + a FASTA of the proteins;
  ``NOT`` annotations are skipped and counted.
- ``cafa_tsv``: CAFA ground truth + a FASTA: CAFA-evaluator's two columns ``target<TAB>term`` (no aspect) or
  CAFA5's ``EntryID<TAB>term<TAB>aspect`` (header optional, ``#`` comment lines skipped). A term's aspect comes
  from the ontology's namespace; a term the ontology lacks is counted (``cafa_term_not_in_ontology``), and a
  third column that disagrees with the ontology is flagged (the ontology wins).
- ``goasp``: Debian ``metastudent-data`` (``dataset_201401/{MFO,BPO,CCO}/goasp_annot.dat`` + the
  ``goasp.fasta`` BLAST databases, read with ``blastdbcmd``), names from ``nameMapping.txt``.
GO names come from an OBO file (``obo=``) or a metastudent folder (``ontology_dir=``).

Counting: for ``gaf`` and ``cafa_tsv`` an item is an annotation line. A line is dropped by its own reason
(``gaf_*``, ``cafa_*``) or with its (protein, aspect) group (``no_sequence_for_accession``,
``no_named_go_term``); the lines of a group that becomes a record are kept, and the group's one record is
emitted. For ``goasp`` an item is a FASTA entry. Problems of a side input (the proteins' FASTA, the goasp
annotation table) are flagged, not dropped: they are not items.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import GO_ID_RE, read_fasta, uniprot_accession
from protein_llm_nemo.data.files import read_lines
from protein_llm_nemo.data.go.ontology import ASPECTS, Aspect, GeneOntology, aspect_from
from protein_llm_nemo.data.go.records import go_record
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter


def load_ontology(obo: str | Path | None = None, ontology_dir: str | Path | None = None) -> GeneOntology:
    if obo:
        return GeneOntology.from_obo(obo)
    if ontology_dir:
        return GeneOntology.from_metastudent(ontology_dir)
    raise ValueError(
        "GO converters need term names: pass obo=<go.obo> or ontology_dir=<metastudent dataset dir>"
    )


@dataclass
class AnnotationGroup:
    """The terms of one (protein, aspect) and how many annotation lines gave them."""

    terms: set[str] = field(default_factory=set)
    lines: int = 0

    def add(self, term: str) -> None:
        self.terms.add(term)
        self.lines += 1


def _emit(
    groups: dict[tuple[str, str], AnnotationGroup],
    sequences: dict[str, str],
    ontology: GeneOntology,
    source: str,
    counter: ReasonCounter,
) -> Iterator[ProteinRecord]:
    for (acc, aspect_code), group in sorted(groups.items()):
        seq = sequences.get(acc)
        if seq is None:
            counter.drop("no_sequence_for_accession", group.lines)
            continue
        record = go_record(acc, seq, ASPECTS[aspect_code], group.terms, ontology, source)
        if record is None:
            counter.drop("no_named_go_term", group.lines)
            continue
        counter.keep(1)
        for _ in range(group.lines - 1):
            counter.keep(0)  # the group's other lines are in the same record
        yield record


def _fasta_by_accession(fasta: str | Path, counter: ReasonCounter) -> dict[str, str]:
    """Proteins by accession; the FASTA's unreadable entries are flagged (the annotation lines that needed
    them are dropped ``no_sequence_for_accession``)."""
    fasta_counter = ReasonCounter()
    sequences = {uniprot_accession(header): seq for header, seq in read_fasta(fasta, fasta_counter)}
    for reason, n in fasta_counter.dropped.items():
        counter.flag(f"sequence_file_{reason}", n)
    return sequences


@register_converter(
    "gaf", "GO Annotation File 2.x + FASTA of the proteins", options=("fasta", "obo", "ontology_dir")
)
def convert_gaf(
    path: Path, counter: ReasonCounter, fasta: str | Path | None = None, obo=None, ontology_dir=None
) -> Iterator[ProteinRecord]:
    if fasta is None:
        raise ValueError("gaf: pass fasta=<sequences.fasta> (GAF files carry no sequences)")
    ontology = load_ontology(obo, ontology_dir)
    groups: dict[tuple[str, str], AnnotationGroup] = defaultdict(AnnotationGroup)
    for _, line in read_lines(path, counter):
        if line.startswith("!"):
            continue
        counter.seen += 1
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 15:
            counter.drop("gaf_short_line")
            continue
        if "NOT" in fields[3].split("|"):
            counter.drop("gaf_negated_annotation")
            continue
        try:
            aspect = aspect_from(fields[8])
        except ValueError:
            counter.drop("gaf_unknown_aspect")
            continue
        if not GO_ID_RE.fullmatch(fields[4]):
            counter.drop("gaf_bad_go_id")
            continue
        if ontology.name(fields[4]) is None:
            counter.flag("gaf_term_not_in_ontology")  # kept: the record lists it as unnamed
        groups[(fields[1], aspect.code)].add(fields[4])
    yield from _emit(groups, _fasta_by_accession(fasta, counter), ontology, "gaf", counter)


def _cafa_aspect(
    term: str, fields: list[str], ontology: GeneOntology, counter: ReasonCounter
) -> Aspect | None:
    """The term's aspect from the ontology's namespace (a third column only fills in where the ontology has
    no namespace); None after counting the line's drop."""
    if ontology.name(term) is None:
        counter.drop("cafa_term_not_in_ontology")
        return None
    given: Aspect | None = None
    if len(fields) > 2:
        try:
            given = aspect_from(fields[2])
        except ValueError:
            given = None  # CAFA-evaluator discards extra columns
    namespace = ontology.namespace_of(term)
    if namespace is None:
        if given is None:
            counter.drop("cafa_no_namespace")
        return given
    try:
        aspect = aspect_from(namespace)
    except ValueError:
        counter.drop("cafa_namespace_not_go")
        return None
    if given is not None and given != aspect:
        counter.flag("cafa_aspect_differs_from_ontology")
    return aspect


@register_converter(
    "cafa_tsv",
    "CAFA ground truth (target/term, optional aspect; CAFA-evaluator or CAFA5) + FASTA",
    options=("fasta", "obo", "ontology_dir"),
)
def convert_cafa(
    path: Path, counter: ReasonCounter, fasta: str | Path | None = None, obo=None, ontology_dir=None
) -> Iterator[ProteinRecord]:
    if fasta is None:
        raise ValueError("cafa_tsv: pass fasta=<target sequences FASTA>")
    ontology = load_ontology(obo, ontology_dir)
    groups: dict[tuple[str, str], AnnotationGroup] = defaultdict(AnnotationGroup)
    first = True
    for _, line in read_lines(path, counter):
        if line.startswith("#"):
            continue
        fields = line.split()
        if first and len(fields) > 1 and ":" not in fields[1]:
            first = False
            continue  # header (EntryID term aspect): term ids are PREFIX:digits
        first = False
        counter.seen += 1
        if len(fields) < 2:
            counter.drop("cafa_malformed_line")
            continue
        aspect = _cafa_aspect(fields[1], fields, ontology, counter)
        if aspect is not None:
            groups[(fields[0], aspect.code)].add(fields[1])
    yield from _emit(groups, _fasta_by_accession(fasta, counter), ontology, "cafa", counter)


def blastdb_fasta(db: str | Path) -> Iterator[tuple[str, str]]:
    """Stream (header, sequence) from a BLAST protein database with ``blastdbcmd -entry all``."""
    exe = shutil.which("blastdbcmd")
    if exe is None:
        raise FileNotFoundError(
            "blastdbcmd not found: install the Debian package ncbi-blast+ (make setup does)"
        )
    proc = subprocess.Popen(
        [exe, "-db", str(db), "-entry", "all", "-line_length", "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1 << 20,
    )
    assert proc.stdout is not None
    header: str | None = None
    parts: list[str] = []
    for line in proc.stdout:
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                yield header, "".join(parts)
            header, parts = line[1:], []
        elif line:
            parts.append(line)
    if header is not None:
        yield header, "".join(parts)
    if proc.wait() != 0:
        raise RuntimeError(f"blastdbcmd failed on {db}: {proc.stderr.read().strip() if proc.stderr else ''}")


def _goasp_annotations(path: Path, counter: ReasonCounter) -> dict[str, set[str]]:
    """``goasp_annot.dat`` (accession then GO ids); its bad lines are flagged (a side table, not items)."""
    table_counter = ReasonCounter()
    out: dict[str, set[str]] = {}
    for _, line in read_lines(path, table_counter):
        fields = line.split()
        if len(fields) < 2:
            counter.flag("goasp_annotation_without_terms")
            continue
        terms = {f for f in fields[1:] if len(f) == 10 and f.startswith("GO:")}
        out.setdefault(fields[0], set()).update(terms)
    for reason, n in table_counter.dropped.items():
        counter.flag(f"goasp_annotation_{reason}", n)
    return out


@register_converter(
    "goasp",
    "Debian metastudent-data GOASP layout (dataset_201401/{MFO,BPO,CCO}); sequences via blastdbcmd",
    options=("aspects", "limit", "progress"),
)
def convert_goasp(
    path: Path,
    counter: ReasonCounter,
    aspects: tuple[str, ...] | str = ("MFO", "BPO", "CCO"),
    limit: int | None = None,
    progress: bool = True,
) -> Iterator[ProteinRecord]:
    """``path`` is ``/usr/share/metastudent-data/dataset_201401``; each aspect folder holds ``goasp_annot.dat``
    and either the ``goasp.fasta.{phr,pin,psq}`` BLAST database or a plain ``goasp.fasta``."""
    if isinstance(aspects, str):
        aspects = tuple(a.strip() for a in aspects.split(",") if a.strip())
    ontology = GeneOntology.from_metastudent(path)
    for code in aspects:
        aspect: Aspect = aspect_from(code)
        folder = path / aspect.code
        if not folder.is_dir():
            raise FileNotFoundError(f"goasp: {folder} missing (is metastudent-data installed?)")
        annotations = _goasp_annotations(folder / "goasp_annot.dat", counter)
        plain = folder / "goasp.fasta"
        entries = read_fasta(plain, counter) if plain.is_file() else blastdb_fasta(plain)
        bar = tqdm(
            entries, desc=f"goasp {aspect.code}", unit="prot", disable=not progress, total=len(annotations)
        )
        for emitted, (header, seq) in enumerate(bar):
            if limit is not None and emitted >= limit:
                break
            counter.seen += 1
            acc = header.split("|", 1)[0].split()[0]
            terms = annotations.get(acc) or set(GO_ID_RE.findall(header))
            if not terms:
                counter.drop("goasp_no_annotation")
                continue
            record = go_record(acc, seq, aspect, terms, ontology, "goasp")
            if record is None:
                counter.drop("no_named_go_term")
                continue
            counter.keep(1)
            yield record
        bar.close()
