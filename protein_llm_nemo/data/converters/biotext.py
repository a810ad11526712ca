"""Biology text for continued pre-training (SSL): GO term definitions from an OBO file, plain ``.txt``
(one document per blank-line-separated paragraph) or JSONL with a ``text`` field.

Records have no protein, an empty instruction and the text as ``response`` (task ``ssl_text``);
`protein_llm_nemo.data.indexed` writes them to megatron-core's ``.bin/.idx`` format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from protein_llm_nemo.data.converters import register_converter
from protein_llm_nemo.data.files import read_lines, read_text
from protein_llm_nemo.data.go.ontology import GeneOntology
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

SOURCE = "biotext"


def _text_record(ident: str, text: str, origin: str) -> ProteinRecord:
    return ProteinRecord(
        id=f"{SOURCE}:{ident}", sequences=[], instruction="", response=text, task="ssl_text", source=SOURCE,
        meta={"origin": origin},
    )  # fmt: skip


@register_converter(SOURCE, "SSL text: GO OBO definitions, .txt paragraphs or JSONL {text}")
def convert(path: Path, counter: ReasonCounter) -> Iterator[ProteinRecord]:
    name = path.name.removesuffix(".gz")
    if name.endswith(".obo"):
        onto = GeneOntology.from_obo(path)
        for go_id, definition in sorted(onto.definitions.items()):
            counter.seen += 1
            if go_id in onto.obsolete:
                counter.drop("obsolete_term")
                continue
            namespace = onto.namespaces.get(go_id, "").replace("_", " ")
            counter.keep()
            yield _text_record(go_id, f"{onto.names[go_id]} ({go_id}, {namespace}): {definition}", "go_obo")
    elif name.endswith(".jsonl"):
        for line_number, line in read_lines(path, counter):
            counter.seen += 1
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                counter.drop("invalid_json")
                continue
            if not isinstance(text, str) or not text.strip():
                counter.drop("empty_text")
                continue
            counter.keep()
            # Ids number lines from 0, as they always have.
            yield _text_record(f"{path.stem}:{line_number - 1}", text.strip(), "jsonl")
    else:
        paragraphs = [p.strip() for p in read_text(path).split("\n\n")]
        for number, paragraph in enumerate(p for p in paragraphs if p):
            counter.seen += 1
            counter.keep()
            yield _text_record(f"{path.stem}:{number}", " ".join(paragraph.split()), "txt")
