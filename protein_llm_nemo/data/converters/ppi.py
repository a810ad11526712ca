"""Protein-protein interaction pairs from STRING link files, plus a FASTA of the proteins (``fasta=``).

Input: STRING's whitespace-separated ``protein.links`` (``protein1 protein2 combined_score``) or
``protein.links.detailed`` (``protein1 protein2 neighborhood fusion cooccurence coexpression experimental
database textmining combined_score``) files; columns are found by the header line, never by position. A file
with a 0/1 ``label`` (or ``interaction`` / ``interacts``) column instead of ``combined_score`` is taken as
labelled. Lines starting with ``#`` before the header are comments.

- Each unordered pair is one record: STRING lists every link twice (A-B and B-A); the second orientation is
  counted ``ppi_duplicate_pair``. A record's proteins are in canonical order (the two STRING ids sorted), in
  its id and in ``sequences``, so both orientations give the same record: exact deduplication sees one
  example, and the homology split (which assigns proteins, then a record from the set of its proteins'
  splits) cannot treat the orientations apart.
- ``combined_score >= positive_threshold`` (0-1000 scale, default 700) is a positive; a score below
  ``negative_threshold`` (default 150) a negative; in between is counted ``ppi_ambiguous_score``.
- STRING files only hold links scoring 150 or more, so negatives are sampled: random pairs of proteins of the
  file (with a sequence) that the file does not list, ``negatives_per_positive`` (default 1.0) per positive,
  seeded (``seed``). They are records without an input line: counted in ``emitted`` and flagged
  ``ppi_sampled_negative``; a shortfall (too few absent pairs) is flagged ``ppi_negatives_short``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import read_fasta
from protein_llm_nemo.data.files import read_lines
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "ppi"
INSTRUCTION = "Do these two proteins physically or functionally interact? Answer yes or no."
SCORE_COLUMN = "combined_score"
LABEL_COLUMNS = ("label", "interaction", "interacts")
# Draws per wanted negative before giving up (a dense network can have few absent pairs).
_DRAWS_PER_NEGATIVE = 50

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkColumns:
    """Positions of the two protein columns and of the score (or 0/1 label) column of a link file."""

    protein_a: int
    protein_b: int
    value: int
    is_label: bool

    @property
    def width(self) -> int:
        return max(self.protein_a, self.protein_b, self.value) + 1

    @classmethod
    def from_header(cls, header: list[str], where: str) -> LinkColumns:
        names = [name.lower() for name in header]
        if SCORE_COLUMN in names:
            value, is_label = names.index(SCORE_COLUMN), False
        else:
            label = next((name for name in LABEL_COLUMNS if name in names), None)
            if label is None:
                raise ValueError(
                    f"{SOURCE}: {where}: header {header} names no {SCORE_COLUMN!r} column (STRING protein.links"
                    f" or protein.links.detailed) and no 0/1 label column {list(LABEL_COLUMNS)}"
                )
            value, is_label = names.index(label), True
        a = names.index("protein1") if "protein1" in names else 0
        b = names.index("protein2") if "protein2" in names else 1
        return cls(a, b, value, is_label)


@dataclass
class PairIndex:
    """Every unordered pair the file lists, as integer keys over interned protein ids (a human STRING file
    has ~20k proteins and ~7M pairs: ints keep that set small)."""

    ids: dict[str, int] = field(default_factory=dict)
    pairs: set[int] = field(default_factory=set)

    def key(self, a: str, b: str) -> int:
        i = self.ids.setdefault(a, len(self.ids))
        j = self.ids.setdefault(b, len(self.ids))
        i, j = min(i, j), max(i, j)
        return i * (1 << 32) + j

    def add(self, a: str, b: str) -> bool:
        """Record the pair; False when it (in either orientation) was already listed."""
        key = self.key(a, b)
        if key in self.pairs:
            return False
        self.pairs.add(key)
        return True

    def listed(self, a: str, b: str) -> bool:
        return a in self.ids and b in self.ids and self.key(a, b) in self.pairs


def _number(name: str, value: float | int | str) -> float:
    """Options may arrive as text from the command line."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{SOURCE}: option {name}={value!r} is not a number") from None


def _record(
    a: str, b: str, sequences: dict[str, str], label: bool, score: float | None, how: str
) -> ProteinRecord:
    a, b = sorted((a, b))
    return ProteinRecord(
        id=f"{SOURCE}:{a}:{b}",
        sequences=[sequences[a], sequences[b]],
        instruction=INSTRUCTION,
        response="Yes, they interact." if label else "No, they do not interact.",
        task="ppi",
        source=SOURCE,
        meta={"interacts": label, "protein_a": a, "protein_b": b, "score": score, "label_from": how},
    )


def _protein_sequences(fasta: str | Path, counter: ReasonCounter) -> dict[str, str]:
    """STRING ``protein.sequences`` FASTA (``>9606.ENSP...``) by id; its unreadable entries are flagged (they
    are not link lines: the links that needed them are dropped ``ppi_missing_sequence``)."""
    fasta_counter = ReasonCounter()
    sequences = {header.split()[0]: seq for header, seq in read_fasta(fasta, fasta_counter)}
    for reason, n in fasta_counter.dropped.items():
        counter.flag(f"sequence_file_{reason}", n)
    return sequences


def _sample_negatives(
    pool: list[str], index: PairIndex, wanted: int, seed: int
) -> tuple[list[tuple[str, str]], int]:
    """Up to `wanted` distinct pairs of `pool` proteins that the file does not list, and the draws used."""
    rng = random.Random(seed)
    chosen: set[tuple[str, str]] = set()
    draws = 0
    if len(pool) < 2:
        return [], draws
    while len(chosen) < wanted and draws < wanted * _DRAWS_PER_NEGATIVE:
        draws += 1
        a, b = sorted(rng.sample(pool, 2))
        if (a, b) not in chosen and not index.listed(a, b):
            chosen.add((a, b))
    return sorted(chosen), draws


@register_converter(
    SOURCE,
    "STRING protein.links(.detailed) pairs + FASTA; sampled negatives",
    options=("fasta", "positive_threshold", "negative_threshold", "negatives_per_positive", "seed"),
)
def convert(
    path: Path,
    counter: ReasonCounter,
    fasta: str | Path | None = None,
    positive_threshold: float | str = 700,
    negative_threshold: float | str = 150,
    negatives_per_positive: float | str = 1.0,
    seed: int | str = 0,
) -> Iterator[ProteinRecord]:
    if fasta is None:
        raise ValueError("ppi: pass fasta=<protein.sequences.fa> (link files carry identifiers only)")
    positive_at = _number("positive_threshold", positive_threshold)
    negative_below = _number("negative_threshold", negative_threshold)
    ratio = _number("negatives_per_positive", negatives_per_positive)
    if ratio < 0:
        raise ValueError(f"{SOURCE}: negatives_per_positive must be >= 0, got {ratio}")
    sequences = _protein_sequences(fasta, counter)
    index = PairIndex()
    columns: LinkColumns | None = None
    positives = explicit_negatives = 0
    for number, line in read_lines(path, counter):
        fields = line.split()
        if columns is None:
            if fields[0].startswith("#"):
                continue  # comment before the header
            columns = LinkColumns.from_header(fields, f"{path}, line {number}")
            continue
        counter.seen += 1
        if len(fields) < columns.width:
            counter.drop("ppi_short_line")
            continue
        a, b = fields[columns.protein_a], fields[columns.protein_b]
        try:
            value = float(fields[columns.value])
        except ValueError:
            counter.drop("ppi_bad_score")
            continue
        if a == b:
            counter.drop("ppi_self_pair")
            continue
        if not index.add(a, b):
            counter.drop("ppi_duplicate_pair")
            continue
        if columns.is_label:
            label = value >= 0.5
        elif value >= positive_at:
            label = True
        elif value < negative_below:
            label = False
        else:
            counter.drop("ppi_ambiguous_score")
            continue
        if a not in sequences or b not in sequences:
            counter.drop("ppi_missing_sequence")
            continue
        counter.keep()
        positives += label
        explicit_negatives += not label
        yield _record(a, b, sequences, label, value, "label" if columns.is_label else "string_score")
    if columns is None:
        raise ValueError(f"{SOURCE}: {path} has no header line (expected 'protein1 protein2 {SCORE_COLUMN}')")
    wanted = max(0, round(ratio * positives) - explicit_negatives)
    pool = sorted(p for p in index.ids if p in sequences)
    negatives, draws = _sample_negatives(pool, index, wanted, int(_number("seed", seed)))
    for a, b in negatives:
        yield _record(a, b, sequences, False, None, "sampled_absent_pair")
    counter.emitted += len(negatives)
    if negatives:
        counter.flag("ppi_sampled_negative", len(negatives))
    if len(negatives) < wanted:
        counter.flag("ppi_negatives_short", wanted - len(negatives))
        logger.warning(
            "%s: wanted %d sampled negatives, found %d absent pairs in %d draws",
            path, wanted, len(negatives), draws,
        )  # fmt: skip
