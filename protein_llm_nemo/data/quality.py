"""Quality gates: residue alphabet, length bounds, empty / one-word responses, exact duplicates.

Every record that is dropped, changed or flagged is counted by reason; `QualityGate.report()` is the
JSON report of a run, in totals and per source (each with ``seen == kept + dropped``). Gates stream: memory
is one 16-byte digest per kept record (for deduplication).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
# IUPAC ambiguity / rare residues: B (D|N), Z (E|Q), J (I|L), X (any), U (selenocysteine), O (pyrrolysine).
NONSTANDARD_RESIDUES = "BZJXUO"
# Tasks whose records legitimately carry no input protein (text-only questions, SSL text, design from text).
PROTEIN_FREE_TASKS: frozenset[str] = frozenset({"multiple_choice", "ssl_text", "protein_design"})


@dataclass
class QualityConfig:
    min_length: int = 50
    max_length: int = 1000
    # Residues accepted besides the 20 standard ones; records with other characters are dropped.
    allowed_nonstandard: str = "X"
    # Uppercase sequences and strip whitespace / a trailing stop '*' (counted as a change, not a drop).
    normalise_sequences: bool = True
    drop_empty_response: bool = True
    flag_one_word_response: bool = True
    drop_one_word_response: bool = False
    drop_exact_duplicates: bool = True
    # Tasks allowed to have no sequence at all.
    protein_free_tasks: frozenset[str] = field(default_factory=lambda: PROTEIN_FREE_TASKS)
    # Tasks whose answer is legitimately one word (a designed sequence).
    one_word_tasks: frozenset[str] = field(default_factory=lambda: frozenset({"protein_design"}))

    def __post_init__(self) -> None:
        if self.min_length < 1 or self.max_length < self.min_length:
            raise ValueError(
                f"length bounds must satisfy 1 <= min <= max, got {self.min_length}..{self.max_length}"
            )
        unknown = set(self.allowed_nonstandard) - set(NONSTANDARD_RESIDUES)
        if unknown:
            raise ValueError(f"allowed_nonstandard has non-IUPAC letters {sorted(unknown)}")


def _record_digest(record: ProteinRecord) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (*record.sequences, "\x00", record.instruction, "\x00", record.response):
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.digest()


class QualityGate:
    """Apply the gates to a stream: ``kept = list(gate(records))`` then ``gate.report()``."""

    def __init__(self, config: QualityConfig | None = None):
        self.config = config or QualityConfig()
        self.counter = ReasonCounter()
        self.per_source: dict[str, ReasonCounter] = defaultdict(ReasonCounter)
        self._alphabet = frozenset(STANDARD_RESIDUES + self.config.allowed_nonstandard)
        self._seen_digests: set[bytes] = set()
        self.length_histogram: Counter = Counter()

    def __call__(self, records: Iterable[ProteinRecord]) -> Iterator[ProteinRecord]:
        for record in records:
            result = self.check(record)
            if result is not None:
                yield result

    def _drop(self, record: ProteinRecord, reason: str) -> None:
        self.counter.drop(reason)
        self.per_source[record.source].drop(reason)

    def _change(self, record: ProteinRecord, reason: str) -> None:
        self.counter.change(reason)
        self.per_source[record.source].change(reason)

    def _flag(self, record: ProteinRecord, reason: str) -> None:
        self.counter.flag(reason)
        self.per_source[record.source].flag(reason)

    def check(self, record: ProteinRecord) -> ProteinRecord | None:
        """The record (possibly normalised / flagged), or None when dropped (reason counted)."""
        cfg = self.config
        self.counter.seen += 1
        self.per_source[record.source].seen += 1
        if not record.sequences and record.task not in cfg.protein_free_tasks:
            self._drop(record, "no_sequence")
            return None
        sequences = record.sequences
        if cfg.normalise_sequences:
            normalised = ["".join(s.split()).upper().rstrip("*") for s in sequences]
            if normalised != sequences:
                self._change(record, "normalised_sequence")
                record.sequences = sequences = normalised
        for seq in sequences:
            if not seq:
                self._drop(record, "empty_sequence")
                return None
            if not self._alphabet.issuperset(seq):
                self._drop(record, "invalid_residue")
                return None
            if len(seq) < cfg.min_length:
                self._drop(record, "too_short")
                return None
            if len(seq) > cfg.max_length:
                self._drop(record, "too_long")
                return None
        response = record.response.strip()
        if not response:
            if cfg.drop_empty_response:
                self._drop(record, "empty_response")
                return None
            self._flag(record, "empty_response")
        elif (
            len(response.split()) == 1
            and cfg.flag_one_word_response
            and record.task not in cfg.one_word_tasks
        ):
            if cfg.drop_one_word_response:
                self._drop(record, "one_word_response")
                return None
            self._flag(record, "one_word_response")
            flags = record.meta.setdefault("quality_flags", [])
            if "one_word_response" not in flags:
                flags.append("one_word_response")
        if cfg.drop_exact_duplicates:
            digest = _record_digest(record)
            if digest in self._seen_digests:
                self._drop(record, "exact_duplicate")
                return None
            self._seen_digests.add(digest)
        self.counter.keep()
        self.per_source[record.source].keep()
        for seq in sequences:
            self.length_histogram[min(len(seq) // 100 * 100, 10_000)] += 1
        return record

    def check_counts(self) -> None:
        """Raise if a record was seen but neither kept nor dropped, in total or for any source."""
        self.counter.check("quality gate totals")
        for name, counter in self.per_source.items():
            counter.check(f"quality gate, source {name!r}")

    def report(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["protein_free_tasks"] = sorted(cfg["protein_free_tasks"])
        cfg["one_word_tasks"] = sorted(cfg["one_word_tasks"])
        return {
            "config": cfg,
            "totals": self.counter.to_dict(),
            "per_source": {name: c.to_dict() for name, c in sorted(self.per_source.items())},
            "length_histogram_bin100": {str(k): v for k, v in sorted(self.length_histogram.items())},
        }


def check_conversion_counts(conversion: ReasonCounter, gate: QualityGate | None, written: int) -> None:
    """Raise unless every converted item is kept or dropped, every record emitted reaches the gates (or the
    output, without gates) and every record the gates kept is written: a mismatch is a counting bug."""
    conversion.check("conversion")
    if gate is None:
        if conversion.emitted != written:
            raise AssertionError(f"conversion emitted {conversion.emitted} records, {written} written")
        return
    gate.check_counts()
    if conversion.emitted != gate.counter.seen:
        raise AssertionError(
            f"conversion emitted {conversion.emitted} records, the quality gates saw {gate.counter.seen}"
        )
    if gate.counter.kept != written:
        raise AssertionError(f"the quality gates kept {gate.counter.kept} records, {written} written")
