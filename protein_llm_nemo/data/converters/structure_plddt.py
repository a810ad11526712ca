"""Structure quality (pLDDT): a CSV/TSV ``id,sequence,plddt`` table (e.g. ESMFold or AF2 batch output) or
predicted structures whose B-factor column holds per-residue pLDDT: a folder of (or one) ``.pdb``, ``.cif``,
``.pdb.gz`` or ``.cif.gz`` files (AlphaFold DB, ColabFold, ESMFold).

Records ask how confidently the protein folds; ``meta["plddt"]`` (mean over residues, 0-100) is the reward's
ground truth. Per structure file (one item each):

- a residue's pLDDT is its CA atom's B-factor (first model only; the first of alternate locations);
- the scale is detected per file: AlphaFold writes 0-100, ESMFold often 0-1. A file whose values are all
  within 0-1 is read as fractions and multiplied by 100 (counted ``plddt_rescaled_from_fraction``); a real
  0-100 file cannot be all <= 1, its lowest pLDDTs sit near 20;
- a value outside 0-100 after that (an experimental B-factor file, a corrupt column) drops the file
  (``plddt_out_of_range``), as the table path does for a row.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.files import DataFileError, TextReader, read_lines
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "structure_plddt"
INSTRUCTION = (
    "How confidently would a structure predictor fold this protein? Give the expected mean pLDDT (0-100) "
    "and a category (high > 80, medium 50-80, low < 50)."
)
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G", "HIS": "H",
    "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S", "THR": "T", "TRP": "W",
    "TYR": "Y", "VAL": "V", "SEC": "U", "PYL": "O",
}  # fmt: skip
STRUCTURE_SUFFIXES = (".pdb", ".pdb.gz", ".cif", ".cif.gz")
# mmCIF values: a quoted string or a bare word.
_CIF_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")

logger = logging.getLogger(__name__)


class StructureParseError(ValueError):
    """A structure file line that cannot be read; the message names the line."""


@dataclass(frozen=True)
class ResidueConfidence:
    """Per-residue one-letter code and pLDDT (as written in the file, before any rescaling)."""

    sequence: str
    values: list[float]


def category(plddt: float) -> str:
    return "high" if plddt > 80 else "medium" if plddt >= 50 else "low"


def _record(ident: str, seq: str, plddt: float) -> ProteinRecord:
    return ProteinRecord(
        id=f"{SOURCE}:{ident}",
        sequences=[seq],
        instruction=INSTRUCTION,
        response=f"Mean pLDDT {plddt:.1f}: {category(plddt)} confidence.",
        task="structure_quality",
        source=SOURCE,
        meta={"plddt": round(plddt, 3), "category": category(plddt)},
    )


def _residues(found: dict[tuple[str, str], tuple[str, float]]) -> ResidueConfidence:
    return ResidueConfidence("".join(aa for aa, _ in found.values()), [value for _, value in found.values()])


def _pdb_confidence(lines: Iterable[str]) -> ResidueConfidence:
    found: dict[tuple[str, str], tuple[str, float]] = {}
    for number, line in enumerate(lines, 1):
        if line.startswith("ENDMDL"):
            break  # first model only
        if line.startswith("ATOM") and line[12:16].strip() == "CA":
            try:
                value = float(line[60:66])
            except ValueError:
                raise StructureParseError(
                    f"line {number}: B-factor {line[60:66]!r} is not a number"
                ) from None
            found.setdefault((line[21], line[22:27]), (THREE_TO_ONE.get(line[17:20].strip(), "X"), value))
    return _residues(found)


def _cif_confidence(lines: Iterable[str]) -> ResidueConfidence:
    """CA atoms of the ``_atom_site`` loop (mmCIF / ModelCIF as AlphaFold DB and ColabFold write it)."""
    found: dict[tuple[str, str], tuple[str, float]] = {}
    columns: list[str] = []
    state = "outside"  # -> "header" after loop_, then "atoms" (the _atom_site loop) or "other"
    first_model: str | None = None
    rows = 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if state == "header":
            if line.startswith("_"):
                columns.append(line.split()[0])
                continue
            state = "atoms" if columns and columns[0].startswith("_atom_site.") else "other"
        if line == "loop_":
            if state == "atoms":
                break
            state, columns = "header", []
            continue
        if state != "atoms" or not line or (line.startswith("#") and not rows):
            continue
        if line.startswith(("#", "_", "data_")):
            break  # end of the _atom_site loop
        rows += 1
        values = [v[1:-1] if v[:1] in "'\"" else v for v in _CIF_TOKEN.findall(line)]
        if len(values) != len(columns):
            raise StructureParseError(
                f"line {number}: _atom_site row has {len(values)} values for {len(columns)} columns"
            )
        row = dict(zip((c.split(".", 1)[1] for c in columns), values, strict=True))
        model = row.get("pdbx_PDB_model_num", "1")
        first_model = model if first_model is None else first_model
        if model != first_model:
            break
        if row.get("group_PDB") != "ATOM" or row.get("label_atom_id") != "CA":
            continue
        try:
            value = float(row["B_iso_or_equiv"])
        except (KeyError, ValueError):
            raise StructureParseError(f"line {number}: no numeric B_iso_or_equiv") from None
        chain = row.get("auth_asym_id") or row.get("label_asym_id", "")
        position = row.get("label_seq_id", ".") + row.get("pdbx_PDB_ins_code", "")
        found.setdefault((chain, position), (THREE_TO_ONE.get(row.get("label_comp_id", ""), "X"), value))
    return _residues(found)


def is_structure_file(path: Path) -> bool:
    return path.name.lower().endswith(STRUCTURE_SUFFIXES)


def _structure_id(path: Path) -> str:
    name = path.name
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _structure_record(path: Path, counter: ReasonCounter) -> ProteinRecord | None:
    """One structure file (one item): its record, or None after counting why not."""
    counter.seen += 1
    parse = _cif_confidence if path.name.lower().endswith((".cif", ".cif.gz")) else _pdb_confidence
    try:
        with TextReader(path) as reader:
            found = parse(reader)
    except (DataFileError, StructureParseError) as exc:
        logger.warning("%s: %s", path, exc)
        counter.drop(
            "unreadable_structure_file" if isinstance(exc, DataFileError) else "unparsable_structure"
        )
        return None
    if not found.values:
        counter.drop("structure_without_ca_atoms")
        return None
    values = found.values
    if all(0 <= v <= 1 for v in values):
        values = [v * 100 for v in values]
        counter.change("plddt_rescaled_from_fraction")
    if not all(0 <= v <= 100 for v in values):
        counter.drop("plddt_out_of_range")
        return None
    counter.keep(1)
    return _record(_structure_id(path), found.sequence, sum(values) / len(values))


def _table_records(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    dialect = "excel-tab" if path.name.endswith((".tsv", ".tsv.gz")) else "excel"
    reader = csv.DictReader((line for _, line in read_lines(path, counter)), dialect=dialect)
    if not {"sequence", "plddt"} <= set(reader.fieldnames or ()):
        raise ValueError(f"{SOURCE}: {path} needs columns id, sequence, plddt; has {reader.fieldnames}")
    for index, row in enumerate(reader):
        counter.seen += 1
        try:
            plddt = float(row["plddt"])
        except (TypeError, ValueError):
            counter.drop("bad_plddt")
            continue
        if not 0 <= plddt <= 100:
            counter.drop("plddt_out_of_range")
            continue
        counter.keep(1)
        yield _record(row.get("id") or str(index), (row.get("sequence") or "").strip(), plddt)


@register_converter(
    SOURCE, "pLDDT table (id, sequence, plddt) or predicted structures (.pdb/.cif, optionally .gz)"
)
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    if path.is_dir() or is_structure_file(path):
        files = sorted(p for p in path.iterdir() if is_structure_file(p)) if path.is_dir() else [path]
        for structure in files:
            record = _structure_record(structure, counter)
            if record is not None:
                yield record
        return
    yield from _table_records(path, counter)
