"""ProteinLMBench (tsynbio, 944 multiple-choice questions): JSON items with ``question``, ``options``
(a list such as ``["option 1: ...", ...]`` or a dict ``{"A": ...}``) and ``answer`` (``"option 2"``, ``"2"``,
``"B"`` ...). Sequences quoted inside a question become the record's protein; questions without one are
text-only (task ``multiple_choice``). ``meta["answer_index"]`` (1-based) is the reward's ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.converters._common import extract_sequence, load_json_items
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "proteinlmbench"
_OPTION_PREFIX_RE = re.compile(r"^\s*(option\s*\d+|[A-Ha-h]|\d+)\s*[:.)]\s*", re.I)


def _options(raw) -> list[str] | None:
    if isinstance(raw, list):
        return [_OPTION_PREFIX_RE.sub("", str(o)).strip() for o in raw]
    if isinstance(raw, dict):
        return [str(raw[k]).strip() for k in sorted(raw)]
    return None


def _answer_index(answer, n: int) -> int | None:
    text = str(answer).strip()
    match = re.fullmatch(r"(?:option\s*)?(\d+)", text, re.I)
    if match:
        index = int(match.group(1))
    elif len(text) == 1 and text.isalpha():
        index = ord(text.upper()) - ord("A") + 1
    else:
        return None
    return index if 1 <= index <= n else None


@register_converter(SOURCE, "ProteinLMBench multiple-choice JSON")
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    for index, item in enumerate(load_json_items(path, counter)):
        counter.seen += 1
        if not isinstance(item, dict) or "question" not in item:
            counter.drop("missing_question")
            continue
        options = _options(item.get("options"))
        if not options:
            counter.drop("missing_options")
            continue
        answer = _answer_index(item.get("answer"), len(options))
        if answer is None:
            counter.drop("unresolvable_answer")
            continue
        question = str(item["question"]).strip()
        sequence = extract_sequence(question)
        if sequence and len(sequence) >= 30:
            question = question.replace(sequence, "[the protein below]")
        else:
            sequence = None
        listed = "\n".join(f"{i}. {text}" for i, text in enumerate(options, start=1))
        counter.keep()
        yield ProteinRecord(
            id=f"{SOURCE}:{item.get('id', index)}",
            sequences=[sequence] if sequence else [],
            instruction=f"{question}\n\nOptions:\n{listed}\n\nAnswer with the number of the correct option.",
            response=f"Option {answer}: {options[answer - 1]}",
            task="multiple_choice",
            source=SOURCE,
            meta={"answer_index": answer, "n_options": len(options)},
        )
