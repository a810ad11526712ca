"""ProtDescribe (ProtST): ``uniprot_sprot_filtered.tsv``, one Swiss-Prot protein a row.

ProtST's file has the columns ``EntryName, ProteinName, Function, SubcellularLocation, Similarity, Sequence``
(the names ``protst/dataset.py`` reads), each text value led by its topic label (``PROTEIN NAME: ``,
``FUNCTION: ``, ``SUBCELLULAR LOCATION: ``, ``SIMILARITY: ``). A UniProt TSV export with ``Entry``,
``Protein names``, ``Function [CC]``, ``Subcellular location [CC]``, ``Sequence similarities`` and
``Sequence`` is read too. Each row gives up to four records (naming, function, location, similarity);
empty fields give none, a row with none at all is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import clean_uniprot_text
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import open_text

SOURCE = "protdescribe"
# Accepted header names, ProtST's first, then the UniProt export's.
ID_COLUMNS: tuple[str, ...] = ("EntryName", "Entry")
SEQUENCE_COLUMNS: tuple[str, ...] = ("Sequence",)


@dataclass(frozen=True)
class TextField:
    task: str
    columns: tuple[str, ...]
    label: str  # the topic label leading every value, removed from the answer
    question: str


FIELDS: tuple[TextField, ...] = (
    TextField(
        "protein_name", ("ProteinName", "Protein names"), "PROTEIN NAME:", "What is the name of this protein?"
    ),
    TextField(
        "function", ("Function", "Function [CC]"), "FUNCTION:", "What is the function of this protein?"
    ),
    TextField(
        "subcellular_location",
        ("SubcellularLocation", "Subcellular location [CC]"),
        "SUBCELLULAR LOCATION:",
        "Where is this protein located in the cell?",
    ),
    TextField(
        "similarity",
        ("Similarity", "Sequence similarities"),
        "SIMILARITY:",
        "Which protein family does this protein belong to?",
    ),
)


def _column(header: list[str], accepted: tuple[str, ...]) -> str | None:
    return next((name for name in accepted if name in header), None)


def _answer(value: str, label: str) -> str:
    value = value.strip()
    if value.upper().startswith(label):
        value = value[len(label) :]
    return clean_uniprot_text(value, strip_topic=False)


@register_converter(
    SOURCE, "ProtDescribe TSV (ProtST EntryName/ProteinName/Function/..., or a UniProt export with Entry/...)"
)
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    csv.field_size_limit(1 << 26)
    with open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        header = list(reader.fieldnames or ())
        id_column, sequence_column = _column(header, ID_COLUMNS), _column(header, SEQUENCE_COLUMNS)
        if id_column is None or sequence_column is None:
            required = ((ID_COLUMNS, id_column), (SEQUENCE_COLUMNS, sequence_column))
            missing = [" or ".join(names) for names, found in required if found is None]
            raise ValueError(f"{SOURCE}: {path} lacks column(s) {missing}; has {header}")
        # ProtST's EntryName is a UniProt entry name (NDOA_PSEU8), an export's Entry an accession (P0A186).
        id_key = "accession" if id_column == "Entry" else "entry_name"
        text_columns = [(field, _column(header, field.columns)) for field in FIELDS]
        for row in reader:
            counter.seen += 1
            entry = (row.get(id_column) or "").strip()
            sequence = (row.get(sequence_column) or "").strip()
            if not entry or not sequence:
                counter.drop("missing_entry_or_sequence")
                continue
            records = []
            for field, column in text_columns:
                value = (row.get(column) or "") if column else ""
                response = _answer(value, field.label) if value.strip() else ""
                if not response:
                    continue
                records.append(
                    ProteinRecord(
                        id=f"{SOURCE}:{entry}:{field.task}",
                        sequences=[sequence],
                        instruction=field.question,
                        response=response,
                        task=field.task,
                        source=SOURCE,
                        meta={id_key: entry},
                    )
                )
            if not records:
                counter.drop("no_annotation_fields")
                continue
            counter.keep(len(records))
            yield from records
