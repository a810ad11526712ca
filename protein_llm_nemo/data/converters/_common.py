"""Small parsing helpers shared by converters (FASTA, sequence extraction, UniProt text clean-up).

The readers (`read_fasta`, `load_json_items`) take the converter's counter: what they cannot parse they count
themselves (seen and dropped, by reason); each item they yield is the converter's to count.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.files import DataFileError, TextReader, read_lines, read_text, undecodable
from protein_llm_nemo.data.report import ReasonCounter

GO_ID_RE = re.compile(r"GO:\d{7}")
_EVIDENCE_RE = re.compile(r"\s*\{(?:ECO|PubMed):[^}]*\}")
_CC_PREFIX_RE = re.compile(r"^[A-Z ]+:\s*")


def read_fasta(path: str | Path, counter: ReasonCounter) -> Iterator[tuple[str, str]]:
    """(header without '>', sequence) of each entry.

    What cannot be an entry is counted here, seen and dropped: a header without residues
    (``empty_fasta_entry``), each line before the first header (``fasta_text_before_header``), an entry with a
    line that is not UTF-8 (``invalid_utf8``: dropping only the line would cut the sequence). Every entry
    yielded is the caller's to count (seen, then kept or dropped).
    """
    header: str | None = None
    parts: list[str] = []
    bad_bytes = False

    def finish() -> Iterator[tuple[str, str]]:
        if header is None:
            return
        if bad_bytes or not parts:
            counter.seen += 1
            counter.drop("invalid_utf8" if bad_bytes else "empty_fasta_entry")
            return
        yield header, "".join(parts)

    with TextReader(path, strict=False) as reader:
        for raw in reader:
            line = raw.strip()
            if not line:
                continue
            if line.startswith(">"):
                yield from finish()
                header, parts, bad_bytes = line[1:].strip(), [], undecodable(line)
            elif header is not None:
                parts.append(line)
                bad_bytes = bad_bytes or undecodable(line)
            else:
                counter.seen += 1
                counter.drop("fasta_text_before_header")
    yield from finish()


def uniprot_accession(header: str) -> str:
    """``sp|P12345|NAME_HUMAN ...`` -> ``P12345``; otherwise the first word (up to a '|')."""
    first = header.split()[0] if header.split() else header
    fields = first.split("|")
    if len(fields) >= 3 and fields[0] in {"sp", "tr"}:
        return fields[1]
    return fields[0]


# A sequence slot: a ``` fence (Mol-Instructions) or a <seq>/<protein> tag pair (ProteinLMDataset, OPI-style
# exports); inside one, residues may be separated by whitespace ("<seq> M K T </seq>").
_SEQUENCE_BLOCK_RE = re.compile(
    r"```(?P<fenced>.*?)```|<(?P<tag>seq|protein)>(?P<tagged>.*?)</(?P=tag)>", re.S | re.I
)
_BLOCK_RESIDUES_RE = re.compile(r"[A-Z*]+")
_RESIDUE_RUN_RE = re.compile(r"[A-Z]{20,}")
# What may sit right next to a residue run in free text. A digit, a letter of another alphabet or any other
# non-ASCII character there means the sequence itself is damaged, and the run is only a fragment of it.
_RUN_DELIMITERS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

NO_SEQUENCE = "no_sequence"
NON_RESIDUE_CHARACTERS = "non_residue_characters"


@dataclass(frozen=True)
class SequenceMatch:
    """What `find_sequence` found: the residues and the ``span`` of their slot in the text (fences or tags
    included), or ``problem`` (`NO_SEQUENCE`, `NON_RESIDUE_CHARACTERS`) saying why there is none."""

    sequence: str | None = None
    span: tuple[int, int] | None = None
    problem: str | None = None

    def remove_from(self, text: str) -> str:
        """``text`` without the sequence slot (unchanged when nothing was found)."""
        if self.sequence is None or self.span is None:
            return text
        return text[: self.span[0]] + text[self.span[1] :]


def _delimited(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return all(char.isspace() or char in _RUN_DELIMITERS for char in (before, after))


def find_sequence(text: str) -> SequenceMatch:
    """The protein in a free-text field, never a fragment of it.

    A fenced or tagged slot wins: its content, whitespace removed, must be upper-case residue letters (``*``
    for a stop allowed), else the slot is damaged (`NON_RESIDUE_CHARACTERS`, no fallback to a run inside it).
    Without a slot, the longest run of 20+ upper-case letters is the protein, provided every run is set off
    by whitespace or ASCII punctuation: a run glued to a digit or a non-ASCII character is a piece of a
    damaged sequence, and the whole text is rejected rather than the piece kept.
    """
    for block in _SEQUENCE_BLOCK_RE.finditer(text):
        content = block.group("fenced") if block.group("fenced") is not None else block.group("tagged")
        residues = "".join(content.split())
        if not residues:
            continue
        if _BLOCK_RESIDUES_RE.fullmatch(residues):
            return SequenceMatch(sequence=residues, span=block.span())
        return SequenceMatch(span=block.span(), problem=NON_RESIDUE_CHARACTERS)
    runs = list(_RESIDUE_RUN_RE.finditer(text))
    if any(not _delimited(text, run.start(), run.end()) for run in runs):
        return SequenceMatch(problem=NON_RESIDUE_CHARACTERS)
    if not runs:
        return SequenceMatch(problem=NO_SEQUENCE)
    longest = max(runs, key=lambda run: len(run.group()))
    return SequenceMatch(sequence=longest.group(), span=longest.span())


def extract_sequence(text: str) -> str | None:
    """The protein in a free-text field (see `find_sequence`), or None when there is none or it is damaged."""
    return find_sequence(text).sequence


def clean_uniprot_text(text: str, strip_topic: bool = True) -> str:
    """Drop ``{ECO:...}`` evidence tags and a leading ``FUNCTION:``-style topic from UniProt comments."""
    text = _EVIDENCE_RE.sub("", text).strip()
    if strip_topic:
        text = _CC_PREFIX_RE.sub("", text, count=1) if _CC_PREFIX_RE.match(text) else text
    text = " ".join(text.split()).rstrip(" .;")
    return text + "." if text else text


def choose(options: tuple[str, ...] | list[str], key: str) -> str:
    """Deterministic choice of a template by a stable hash of ``key`` (no global RNG)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest()
    return options[int.from_bytes(digest, "little") % len(options)]


def load_json_items(path: Path, counter: ReasonCounter) -> Iterator[Any]:
    """Items of a JSON array file, or of a JSONL file (one JSON value per line).

    JSONL lines that are not JSON or not UTF-8 are counted here, seen and dropped (``invalid_json``,
    ``invalid_utf8``); every item yielded is the caller's to count. A JSON array file that does not parse is
    a `DataFileError` naming the file, line and column (never read as an empty file).
    """
    if _starts_with_bracket(path):
        text = read_text(path)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(
                f"{path}: not a valid JSON array: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from exc
        yield from items
        return
    for _, line in read_lines(path, counter):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            counter.seen += 1
            counter.drop("invalid_json")
            continue
        yield item


def _starts_with_bracket(path: Path) -> bool:
    """Whether the first non-blank character of the file is ``[`` (a JSON array rather than JSONL)."""
    with TextReader(path, strict=False) as reader:
        while chunk := reader.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0] == "["
    return False
