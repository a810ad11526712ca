"""Mol-Instructions, protein-oriented part (zjunlp/Mol-Instructions ``Protein-oriented_Instructions/*.json``).

Each file is a JSON array of ``{"instruction", "input", "output", "metadata": {"protein_accession", "split",
...}}``; the protein sits in ``input`` between triple backticks. Files: catalytic_activity, domain_motif,
general_function, protein_function (sequence -> text) and protein_design (text -> sequence in ``output``).

Since October 2023 every row carries the upstream ``metadata.split`` (``train`` / ``test``). The ``split``
option keeps ``train`` rows by default, so the upstream test rows, which other papers report results on,
never reach training unless asked for (``split=test`` or ``split=all``); rows filtered out are counted as
``upstream_split_<value>``. Rows of the older release without a split label count as training rows (that
release had no test split) and are flagged ``no_upstream_split``. The label is kept in ``meta``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import find_sequence, load_json_items
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "mol_instructions"
SPLITS: tuple[str, ...] = ("train", "test", "all")


def _files(path: Path) -> list[Path]:
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def _wanted(upstream_split: str | None, split: str) -> bool:
    if split == "all":
        return True
    return (upstream_split or "train") == split


@register_converter(
    SOURCE,
    "Mol-Instructions protein JSON (file or Protein-oriented_Instructions/ folder); split=train|test|all",
    options=("split",),
)
def convert(path: Path, counter: ReasonCounter, split: str = "train") -> Iterator[ProteinRecord]:
    if split not in SPLITS:
        raise ValueError(f"{SOURCE}: option split={split!r} is not one of {list(SPLITS)}")
    for file in _files(path):
        for index, item in enumerate(load_json_items(file, counter)):
            counter.seen += 1
            record = _record(file.stem, index, item, split, counter)
            if record is not None:
                counter.keep(1)
                yield record


def _record(task: str, index: int, item: Any, split: str, counter: ReasonCounter) -> ProteinRecord | None:
    """One row as a record, or None after counting why it was dropped."""
    if not isinstance(item, dict) or not {"instruction", "input", "output"} <= item.keys():
        counter.drop("missing_field")
        return None
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    upstream_split = meta.get("split")
    upstream_split = str(upstream_split) if upstream_split is not None else None
    if not _wanted(upstream_split, split):
        counter.drop(f"upstream_split_{upstream_split or 'missing'}")
        return None
    design = task == "protein_design"
    # Text -> sequence: the designed protein is the response and the record has no input protein.
    field = "output" if design else "input"
    found = find_sequence(str(item[field]))
    if found.sequence is None:
        counter.drop(f"{found.problem}_in_{field}")
        return None
    if upstream_split is None:
        counter.flag("no_upstream_split")
    record_meta = {"accession": str(meta.get("protein_accession", "")), "upstream_split": upstream_split}
    if design:
        record_meta["target_sequence"] = found.sequence
        instruction = f"{item['instruction']}\n{item['input']}".strip()
        return ProteinRecord(
            id=f"{SOURCE}:{task}:{index}",
            sequences=[],
            instruction=instruction,
            response=found.sequence,
            task=task,
            source=SOURCE,
            meta=record_meta,
        )
    return ProteinRecord(
        id=f"{SOURCE}:{task}:{index}",
        sequences=[found.sequence],
        instruction=str(item["instruction"]).strip(),
        response=str(item["output"]).strip(),
        task=task,
        source=SOURCE,
        meta=record_meta,
    )
