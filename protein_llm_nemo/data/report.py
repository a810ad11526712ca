"""Counting what happens to records: every drop, change and flag has a named reason.

`ReasonCounter` is the one object converters, readers and quality gates share, so a run's JSON report
accounts for every input item in one unit: `seen == kept + dropped_total` (items: lines, rows, entries),
while `emitted` counts the records written (one item may give several, e.g. one ProtDescribe row asks
four questions). Count a kept item with `keep(records)`, a dropped one with `drop(reason)`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.files import atomic_path


@dataclass
class ReasonCounter:
    """Counts of seen / kept / dropped input items, the records emitted, and changes and flags by reason
    (e.g. ``"invalid_json"``)."""

    seen: int = 0
    kept: int = 0
    emitted: int = 0
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    flagged: Counter = field(default_factory=Counter)

    def keep(self, records: int = 1) -> None:
        """One input item kept, giving `records` records."""
        self.kept += 1
        self.emitted += records

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def change(self, reason: str, n: int = 1) -> None:
        self.changed[reason] += n

    def flag(self, reason: str, n: int = 1) -> None:
        self.flagged[reason] += n

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def consistent(self) -> bool:
        """Every item seen is either kept or dropped with a reason."""
        return self.seen == self.kept + self.total_dropped

    def check(self, what: str = "records") -> None:
        """Raise if an item was seen but neither kept nor dropped (a counting bug would hide a loss)."""
        if not self.consistent:
            raise AssertionError(
                f"{what}: {self.seen} seen but {self.kept} kept + {self.total_dropped} dropped ({self.to_dict()})"
            )

    def merge(self, other: ReasonCounter, prefix: str = "") -> None:
        self.seen += other.seen
        self.kept += other.kept
        self.emitted += other.emitted
        for target, source in (
            (self.dropped, other.dropped),
            (self.changed, other.changed),
            (self.flagged, other.flagged),
        ):
            for reason, n in source.items():
                target[prefix + reason] += n

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "emitted": self.emitted,
            "dropped_total": self.total_dropped,
            "dropped": dict(sorted(self.dropped.items())),
            "changed": dict(sorted(self.changed.items())),
            "flagged": dict(sorted(self.flagged.items())),
        }


def write_json_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write a report dict as indented JSON, atomically (parent folders created). Inside an
    `AtomicOutputs` block, pass ``outputs.stage(path)`` to commit it with the outputs it describes."""
    path = Path(path)
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"  # before staging: a bad value writes nothing
    with atomic_path(path) as staged:
        staged.write_text(text, encoding="utf-8")
    return path
