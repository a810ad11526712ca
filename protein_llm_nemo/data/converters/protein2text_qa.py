"""Protein2Text-QA (alaaj27/Protein2Text, NAACL 2025): LLaVA-style conversation JSON.

Items (``data/sample_input.json`` upstream): ``{"long_format_id": "Q9H9D4_3", "id": "Q9H9D4", "protein":
"Zinc finger protein 408", "pmc_id": [...], "amino_seq": "MEE...", "conversations": [{"from": "human",
"value": "<protein_sequence>\\nQ"}, {"from": "gpt", "value": "A"}, ...]}``. The residues are ``amino_seq``
(``sequence`` is read as an alias); ``protein`` is the protein's *name* and never a sequence. Every
human/gpt pair becomes one record, the ``<protein_sequence>`` placeholder removed from the question.
``id`` is the UniProt accession and repeats across a protein's questions; ``long_format_id`` is unique
and names the records.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import load_json_items
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "protein2text_qa"
SEQUENCE_KEYS: tuple[str, ...] = ("amino_seq", "sequence")
_PLACEHOLDER_RE = re.compile(r"<\s*(protein_sequence|protein|sequence|image)\s*>", re.I)
_RESIDUES_RE = re.compile(r"[A-Z*]+")


def _sequence(item: dict[str, Any]) -> str | None:
    value = next((item[key] for key in SEQUENCE_KEYS if key in item), None)
    return value.strip() if isinstance(value, str) else None


@register_converter(
    SOURCE, "Protein2Text-QA LLaVA-style conversations JSON/JSONL (amino_seq + conversations)"
)
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    for index, item in enumerate(load_json_items(path, counter)):
        counter.seen += 1
        records = _records(item, index, counter)
        if records:
            counter.keep(len(records))
            yield from records


def _records(item: Any, index: int, counter: ReasonCounter) -> list[ProteinRecord]:
    """The item's question/answer pairs as records; an empty list after counting why the item was dropped.
    Turns skipped inside a kept item are counted as changes."""
    if not isinstance(item, dict):
        counter.drop("not_an_object")
        return []
    sequence = _sequence(item)
    if not sequence:
        counter.drop("no_sequence")
        return []
    if not _RESIDUES_RE.fullmatch(sequence):
        counter.drop("sequence_not_residues")
        return []
    turns = item.get("conversations")
    if not isinstance(turns, list):
        counter.drop("no_conversations")
        return []
    accession = str(item.get("id", ""))
    item_id = str(item.get("long_format_id") or f"{accession or 'item'}_{index}")
    meta = {"item_id": item_id, "accession": accession, "protein_name": str(item.get("protein", ""))}
    records: list[ProteinRecord] = []
    skipped: list[str] = []
    for turn_index in range(0, len(turns) - 1, 2):
        human, gpt = turns[turn_index], turns[turn_index + 1]
        if not (isinstance(human, dict) and isinstance(gpt, dict)):
            skipped.append("malformed_turn_skipped")
            continue
        if human.get("from") != "human" or gpt.get("from") not in {"gpt", "assistant"}:
            skipped.append("unexpected_speaker_order_skipped")
            continue
        records.append(
            ProteinRecord(
                id=f"{SOURCE}:{item_id}:{turn_index // 2}",
                sequences=[sequence],
                instruction=_PLACEHOLDER_RE.sub("", str(human.get("value", ""))).strip(),
                response=str(gpt.get("value", "")).strip(),
                task="protein_qa",
                source=SOURCE,
                meta=dict(meta),
            )
        )
    if len(turns) % 2:
        skipped.append("unanswered_last_turn_skipped")
    if not records:
        counter.drop("no_qa_pair")
    for reason in skipped if records else ():
        counter.change(reason)
    return records
