"""The per-record predictions of an evaluation run: a JSONL file appended one batch at a time.

One line per record: ``{"id", "task", "greedy": completion, "samples": [k completions]}`` (samples only
for GO records). A batch is written with one ``write`` of all its lines and fsynced before the next batch
starts, so a killed run leaves whole batches; a torn last line (the machine died mid-write) is cut off
when the file is reopened, and counted. A run that starts again reads the file and generates only the
records it does not hold, so no record is ever generated twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Prediction", "PredictionStore"]


@dataclass
class Prediction:
    id: str
    task: str
    greedy: str
    samples: list[str] = field(default_factory=list)

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"


class PredictionStore:
    """Reads what a run already predicted (`load`) and appends batches (`append`). Only the writing rank
    `repair`s a torn last line; the others read around it."""

    def __init__(self, path: str | Path, repair: bool = True):
        self.path = Path(path)
        self.repair = repair
        self.predictions: dict[str, Prediction] = {}
        self.counts: Counter = Counter()  # torn_lines, duplicate_lines, bad_lines

    def load(self) -> dict[str, Prediction]:
        """The predictions on disk by record id (the first line of an id wins); cuts a torn last line."""
        self.predictions.clear()
        if not self.path.exists():
            return self.predictions
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # an unterminated last line: a write that did not finish
            self.counts["torn_lines"] += 1
            if self.repair:
                with open(self.path, "r+b") as handle:
                    handle.truncate(end)
        for number, raw in enumerate(data[:end].splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                prediction = Prediction(
                    id=str(row["id"]),
                    task=str(row["task"]),
                    greedy=str(row["greedy"]),
                    samples=[str(s) for s in row.get("samples", [])],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{self.path}:{number}: not a prediction line ({exc}); move the file away"
                ) from exc
            if prediction.id in self.predictions:
                self.counts["duplicate_lines"] += 1
                continue
            self.predictions[prediction.id] = prediction
        return self.predictions

    def append(self, batch: Iterable[Prediction]) -> int:
        """Append one batch with a single write, then fsync; returns the records written."""
        batch = list(batch)
        if not batch:
            return 0
        payload = "".join(p.to_line() for p in batch).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(descriptor, payload)
            while written < len(payload):  # a short write (a signal on some file systems): finish it
                written += os.write(descriptor, payload[written:])
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        for prediction in batch:
            self.predictions.setdefault(prediction.id, prediction)
        return len(batch)
