"""Record storage: JSONL (streaming, human-readable) and Arrow through `datasets` (memory-mapped).

Reading always counts: every reader takes the `ReasonCounter` that accounts for its input, one item per
JSONL line or Arrow row (``seen == kept + dropped``). A malformed line is skipped and counted by reason
(``invalid_json``, ``invalid_utf8``, ``missing_field:x`` ...); a truncated gzip stream is a `DataFileError`
naming the file and line. Writers are atomic: the output appears whole or not at all.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from protein_llm_nemo.data.files import DataFileError, atomic_path, open_text, read_lines
from protein_llm_nemo.data.record import ProteinRecord, RecordError
from protein_llm_nemo.data.report import ReasonCounter

__all__ = [
    "ArrowRecords",
    "DataFileError",
    "open_text",
    "read_jsonl",
    "read_records",
    "write_arrow",
    "write_jsonl",
    "write_records",
]


def write_jsonl(records: Iterable[ProteinRecord], path: str | Path) -> int:
    """Write records one JSON object per line (atomically); returns how many were written."""
    n = 0
    with atomic_path(path) as staged, open_text(staged, "wt") as handle:
        for record in records:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False))
            handle.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    """Stream records; malformed lines are counted in `counter` (``invalid_json``, ``missing_field:x`` ...)
    and skipped."""
    for _, line in read_lines(path, counter):
        counter.seen += 1
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            counter.drop("invalid_json")
            continue
        try:
            record = ProteinRecord.from_dict(data)
        except RecordError as exc:
            counter.drop(exc.reason)
            continue
        counter.keep()
        yield record


def _arrow_features():
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "sequences": datasets.Sequence(datasets.Value("string")),
            "instruction": datasets.Value("string"),
            "response": datasets.Value("string"),
            "task": datasets.Value("string"),
            "source": datasets.Value("string"),
            "meta": datasets.Value("string"),
        }
    )


def write_arrow(records: Iterable[ProteinRecord], path: str | Path, num_shards: int = 1) -> int:
    """Save records as a `datasets` Arrow dataset folder (``load_from_disk`` memory-maps it), atomically."""
    import datasets

    def rows():
        for record in records:
            yield record.to_row()

    with tempfile.TemporaryDirectory(prefix="protein_llm_arrow_") as cache_dir, atomic_path(path) as staged:
        # A fingerprint of our own: `datasets` would otherwise hash `rows`, which cannot pickle a generator.
        dataset = datasets.Dataset.from_generator(
            rows, features=_arrow_features(), cache_dir=cache_dir, fingerprint=secrets.token_hex(16)
        )
        dataset.save_to_disk(str(staged), num_shards=num_shards)
        return len(dataset)


class ArrowRecords:
    """Random access to records saved by `write_arrow`; Arrow files stay memory-mapped."""

    def __init__(self, path: str | Path):
        import datasets

        self.path = Path(path)
        if not (self.path / "dataset_info.json").exists():
            raise FileNotFoundError(f"{self.path} is not a saved `datasets` folder (no dataset_info.json)")
        self.dataset = datasets.load_from_disk(str(self.path))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> ProteinRecord:
        return ProteinRecord.from_dict(self.dataset[int(index)])

    def rows(self) -> Iterator[dict]:
        """The stored rows as dicts, in order (not yet validated as records)."""
        for batch in self.dataset.iter(batch_size=1024):
            for i in range(len(batch["id"])):
                yield {name: batch[name][i] for name in batch}

    def __iter__(self) -> Iterator[ProteinRecord]:
        for row in self.rows():
            yield ProteinRecord.from_dict(row)


def read_records(path: str | Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    """Read records from a JSONL(.gz) file or a saved Arrow folder, counting each line / row in `counter`
    (a row that is not a valid record is dropped by reason, like a JSONL line)."""
    path = Path(path)
    if not path.is_dir():
        yield from read_jsonl(path, counter)
        return
    for row in ArrowRecords(path).rows():
        counter.seen += 1
        try:
            record = ProteinRecord.from_dict(row)
        except RecordError as exc:
            counter.drop(exc.reason)
            continue
        counter.keep()
        yield record


def write_records(records: Iterable[ProteinRecord], path: str | Path) -> int:
    """Write JSONL when the path ends in ``.jsonl``/``.jsonl.gz``, else an Arrow folder."""
    path = Path(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return write_jsonl(records, path)
    return write_arrow(records, path)
