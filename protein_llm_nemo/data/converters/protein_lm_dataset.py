"""ProteinLMDataset (tsynbio/ProteinLMDataset), supervised part: Alpaca-style JSON arrays (or JSONL).

Items are ``{"instruction", "input", "output"}``. Upstream writes the protein into ``input`` between
``<seq>`` tags with its residues space-separated (``"... a protein: <seq> M K T L ... </seq>"``; the ECoT
subset without the inner spaces); a fenced block or a bare sequence is read too. The residues are joined and
the tagged span leaves the text, whose rest joins the instruction.

Files are named after their subset (``sft_uniprot_Function.json``, ``sft_uniprot_Subunit structure.json``,
``enzyme_CoT.json``; the Hugging Face configs say ``UniProt_Function``); the subset without its
``sft_uniprot_`` / ``UniProt_`` prefix becomes the task (``function``, ``subunit_structure``, ``enzyme_cot``).
The upstream script leaves UniProt's ``FUNCTION:`` topic label inside the Function answers; it is removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import NO_SEQUENCE, find_sequence, load_json_items
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "protein_lm_dataset"
_SUBSET_PREFIX_RE = re.compile(r"^(sft_uniprot_|uniprot_)", re.I)
_LABEL_ONLY_RE = re.compile(r"^(Sequence|Protein sequence)\s*:?\s*$", re.I)
# UniProt's topic label, at the start or right after the template's lead-in ("... include(s): FUNCTION: ...").
_FUNCTION_LABEL_RE = re.compile(r"(^|:\s)FUNCTION:\s*")


def _task(stem: str) -> str:
    name = _SUBSET_PREFIX_RE.sub("", stem)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "protein_qa"


def _response(output: str) -> str:
    text = _FUNCTION_LABEL_RE.sub(r"\1", output.strip(), count=1)
    # The upstream templates leave doubled spaces where they replaced a topic label.
    return re.sub(r"[ \t]{2,}", " ", text).strip()


@register_converter(SOURCE, "ProteinLMDataset SFT JSON/JSONL (file or folder of subsets)")
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    files = sorted([*path.glob("*.json"), *path.glob("*.jsonl")]) if path.is_dir() else [path]
    for file in files:
        for index, item in enumerate(load_json_items(file, counter)):
            counter.seen += 1
            record = _record(item, file.stem, index, counter)
            if record is not None:
                counter.keep(1)
                yield record


def _record(item: Any, subset: str, index: int, counter: ReasonCounter) -> ProteinRecord | None:
    """One item as a record, or None after counting why it was dropped."""
    if not isinstance(item, dict) or "output" not in item or "instruction" not in item:
        counter.drop("missing_field")
        return None
    text_input, instruction = str(item.get("input") or ""), str(item["instruction"])
    found = find_sequence(text_input)
    rest = found.remove_from(text_input)
    if found.problem == NO_SEQUENCE:
        in_instruction = find_sequence(instruction)
        if in_instruction.problem != NO_SEQUENCE:
            found, instruction = in_instruction, in_instruction.remove_from(instruction)
    if found.sequence is None:
        counter.drop(found.problem or NO_SEQUENCE)
        return None
    rest = rest.strip()
    rest = "" if _LABEL_ONLY_RE.match(rest) else rest
    instruction = instruction.strip()
    if rest:
        instruction = f"{instruction}\n{rest}"
    return ProteinRecord(
        id=f"{SOURCE}:{'_'.join(subset.split())}:{index}",
        sequences=[found.sequence],
        instruction=instruction,
        response=_response(str(item["output"])),
        task=_task(subset),
        source=SOURCE,
        meta={"subset": subset},
    )
