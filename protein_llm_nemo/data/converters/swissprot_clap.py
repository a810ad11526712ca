"""SwissProtCLAP (ProteinDT): ``protein_sequence.txt`` and ``text_sequence.txt`` in one folder.

Both files alternate lines: a UniProt accession, then the sequence (resp. the text description). Pairs
are joined on the accession; a protein without text (or text without protein) is counted and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import choose
from protein_llm_nemo.data.files import read_text
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "swissprot_clap"
INSTRUCTIONS = (
    "Describe this protein.",
    "Write a paragraph describing the function and properties of this protein.",
    "What is known about this protein?",
)


def _pairs(path: Path, counter: ReasonCounter) -> dict[str, str]:
    """Accession -> value of one file. A last accession without its value (odd line count) and a repeated
    accession are counted, seen and dropped, here; the joined accessions are the caller's to count."""
    out: dict[str, str] = {}
    # Pairs are told apart by position, so one unreadable line would shift all that follow: an error.
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    if len(lines) % 2:
        counter.seen += 1
        counter.drop(f"odd_line_count:{path.name}")
        lines = lines[:-1]
    for key, value in zip(lines[0::2], lines[1::2], strict=True):
        key = key.strip()
        if key in out:
            counter.seen += 1
            counter.drop(f"repeated_accession:{path.name}")
            continue
        out[key] = value.strip()
    return out


@register_converter(SOURCE, "SwissProtCLAP folder (protein_sequence.txt + text_sequence.txt)")
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    """One item per accession of either file: kept when both files have it."""
    if not path.is_dir():
        raise NotADirectoryError(f"{SOURCE}: expected the folder holding protein_sequence.txt, got {path}")
    proteins = _pairs(path / "protein_sequence.txt", counter)
    texts = _pairs(path / "text_sequence.txt", counter)
    for acc, seq in proteins.items():
        counter.seen += 1
        text = texts.get(acc)
        if text is None:
            counter.drop("no_text_for_protein")
            continue
        counter.keep()
        yield ProteinRecord(
            id=f"{SOURCE}:{acc}",
            sequences=[seq],
            instruction=choose(INSTRUCTIONS, acc),
            response=text,
            task="description",
            source=SOURCE,
            meta={"accession": acc},
        )
    orphan_texts = len(set(texts) - set(proteins))
    counter.seen += orphan_texts
    if orphan_texts:
        counter.drop("no_protein_for_text", orphan_texts)
