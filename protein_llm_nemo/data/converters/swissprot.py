"""Swiss-Prot: the UniProtKB flat file (``uniprot_sprot.dat``) and the UniProt FASTA (``uniprot_sprot.fasta``).

Flat file: one record per available topic: function (CC FUNCTION), subcellular location, protein name
(DE RecName), organism, and GO cross-references (DR GO) as ground truth.

- Entries are cut at ``ID`` / ``//`` lines and each is parsed alone (Biopython's ``Bio.SwissProt``), so a
  corrupt entry is one counted skip (``unparsable_flat_entry``, ``truncated_flat_entry``, with a warning
  naming its first line) and reading goes on at the next entry. Lines starting ``**`` between entries are
  comments; any other text between entries is counted ``text_between_flat_entries``.
- UniProt wraps comment lines after a hyphen (``SARS-`` / ``CoV-2``, ``C-`` / ``terminal``): a CC line ending
  in a hyphen right after a word character is joined to its continuation without a space (counted
  ``joined_hyphen_line_wrap``), unless the continuation starts with ``and`` / ``or`` / ``nor`` / ``to``
  (``N- and C-terminal``). A free-standing dash (`` - ``) is never joined.
- Several comments of one topic (HLA-A has a FUNCTION comment per allele) are merged, in file order, into
  one record per (accession, topic): separate records would ask the same question of the same protein with
  different answers, and would share an id. Counted ``merged_repeated_comment_topic``.

FASTA (``>sp|ACC|ENTRY Name OS=... OX=... GN=... PE=.. SV=..``): name, organism and gene-name questions.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import choose, clean_uniprot_text, read_fasta, uniprot_accession
from protein_llm_nemo.data.files import TextReader, undecodable
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "swissprot"
_HEADER_RE = re.compile(r"^\S+\s+(?P<name>.*?)\s+OS=(?P<os>.*?)\s+OX=\d+(?:\s+GN=(?P<gn>\S+))?")
_RECNAME_RE = re.compile(r"RecName:\s*Full=([^;{]+)")
_COMMENT_TASKS = {"FUNCTION": "function", "SUBCELLULAR LOCATION": "subcellular_location"}
# A wrap after the hyphen of "N- and C-terminal" is a real word end: keep the space.
_WORDS_AFTER_SUFFIX_HYPHEN = frozenset({"and", "or", "nor", "to"})

logger = logging.getLogger(__name__)

QUESTIONS = {
    "function": (
        "What is the function of this protein?",
        "Describe the biological function of this protein.",
    ),
    "subcellular_location": ("Where in the cell is this protein located?",),
    "protein_name": ("What is the name of this protein?", "Identify this protein by its recommended name."),
    "organism": ("Which organism does this protein come from?",),
    "gene_name": ("What is the gene name of this protein?",),
}


def _record(acc: str, task: str, seq: str, response: str, meta: dict | None = None) -> ProteinRecord:
    return ProteinRecord(
        id=f"{SOURCE}:{acc}:{task}",
        sequences=[seq],
        instruction=choose(QUESTIONS[task], acc),
        response=response,
        task=task,
        source=SOURCE,
        meta={"accession": acc, **(meta or {})},
    )


def _is_comment_text(line: str) -> bool:
    return line.startswith("CC   ") and line[5:8] in ("-!-", "   ")


def _ends_in_word_hyphen(line: str) -> bool:
    text = line.rstrip()
    return len(text) > 9 and text.endswith("-") and text[-2] not in " -"


def join_hyphen_wraps(lines: list[str]) -> tuple[list[str], int]:
    """The entry's lines with hyphen-wrapped CC lines joined to their continuation, and how many joins."""
    out: list[str] = []
    joins = 0
    for line in lines:
        if out and line.startswith("CC   ") and line[5:8] == "   " and _is_comment_text(out[-1]):
            continuation = line[9:].strip()
            first_word = continuation.split(" ", 1)[0]
            if (
                _ends_in_word_hyphen(out[-1])
                and continuation
                and first_word not in _WORDS_AFTER_SUFFIX_HYPHEN
            ):
                out[-1] = out[-1].rstrip() + continuation + "\n"
                joins += 1
                continue
        out.append(line)
    return out, joins


def _flat_entries(path: Path, counter: ReasonCounter) -> Iterator[tuple[int, list[str]]]:
    """(line number of its ID line, lines) of each complete entry; incomplete ones are counted here."""
    lines: list[str] = []
    start = 0

    def truncated() -> None:
        counter.seen += 1
        counter.drop("truncated_flat_entry")
        logger.warning("%s, line %d: entry without its closing // line skipped", path, start)

    with TextReader(path, strict=False) as reader:
        for line in reader:
            if line.startswith("ID   "):
                if lines:
                    truncated()
                lines, start = [line], reader.line
            elif lines:
                lines.append(line)
                if line.startswith("//"):
                    yield start, lines
                    lines = []
            elif line.strip() and not line.startswith("**"):
                counter.seen += 1
                counter.drop("text_between_flat_entries")
    if lines:
        truncated()


def _flat_records(entry, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    acc = entry.accessions[0] if entry.accessions else entry.entry_name
    seq = entry.sequence
    go_ids = sorted({x[1] for x in entry.cross_references if x and x[0] == "GO" and len(x) > 1})
    meta = {"go_ids": go_ids, "organism": entry.organism.rstrip(".")}
    texts: dict[str, list[str]] = {task: [] for task in _COMMENT_TASKS.values()}
    for comment in entry.comments:
        task = _COMMENT_TASKS.get(comment.split(":", 1)[0].strip())
        cleaned = clean_uniprot_text(comment) if task else ""
        if task and cleaned:
            texts[task].append(cleaned)
    for task, parts in texts.items():
        if parts:
            if len(parts) > 1:
                counter.change("merged_repeated_comment_topic", len(parts) - 1)
            yield _record(acc, task, seq, " ".join(parts), meta)
    match = _RECNAME_RE.search(entry.description)
    if match:
        yield _record(acc, "protein_name", seq, match.group(1).strip() + ".", meta)
    if entry.organism:
        yield _record(acc, "organism", seq, f"This protein comes from {entry.organism.rstrip('.')}.", meta)


@register_converter("swissprot_flat", "UniProtKB/Swiss-Prot flat file (.dat / .txt, optionally .gz)")
def convert_flat(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    from Bio import SwissProt

    for start, lines in _flat_entries(path, counter):
        counter.seen += 1
        if any(undecodable(line) for line in lines):
            counter.drop("invalid_utf8")
            logger.warning("%s, line %d: entry with bytes that are not UTF-8 skipped", path, start)
            continue
        joined, joins = join_hyphen_wraps(lines)
        try:
            entry = SwissProt.read(io.StringIO("".join(joined)))
        except (ValueError, AssertionError) as exc:  # SwissProtParserError is a ValueError
            counter.drop("unparsable_flat_entry")
            logger.warning("%s, line %d: unparsable entry skipped: %s", path, start, exc)
            continue
        if joins:
            counter.change("joined_hyphen_line_wrap", joins)
        records = list(_flat_records(entry, counter))
        if not records:
            counter.drop("no_usable_annotation")
            continue
        counter.keep(len(records))
        yield from records


@register_converter("swissprot_fasta", "UniProt FASTA with sp|ACC|ENTRY headers (name / organism / gene)")
def convert_fasta(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    for header, seq in read_fasta(path, counter):
        counter.seen += 1
        match = _HEADER_RE.match(header)
        if not match:
            counter.drop("non_uniprot_header")
            continue
        acc = uniprot_accession(header)
        organism = match.group("os")
        meta = {"organism": organism, "protein_name": match.group("name")}
        records = [
            _record(acc, "protein_name", seq, match.group("name") + ".", meta),
            _record(acc, "organism", seq, f"This protein comes from {organism}.", meta),
        ]
        if match.group("gn"):
            records.append(_record(acc, "gene_name", seq, f"The gene name is {match.group('gn')}.", meta))
        counter.keep(len(records))
        yield from records
