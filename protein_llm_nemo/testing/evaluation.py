"""Evaluation test fixtures: a small test / train record set over the six-term test ontology (with every
kind of bad record the runner must count), and a scripted generator whose completions are fixed per record,
so metric values can be checked by hand. Imported by tests/evaluation and their rank bodies."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord

AMINO = "ACDEFGHIKLMNPQRSTVWY"
ROOT = "GO:0003674"
B, C, D, E, F, G = (f"GO:000000{i}" for i in range(2, 8))  # the six-term ontology's terms (G: F's alt_id)

# What the runner must leave out of the test file, one record each.
EXPECTED_SKIPPED = {
    "go_truth_outside_ontology": 1,
    "no_ground_truth:meta.go_ids": 1,
    "duplicate_protein_in_go_task": 1,
    "invalid_sequence": 1,
    "not_an_evaluation_task:ssl_text": 1,
    "duplicate_record_id": 1,
}


def _sequence(rng: random.Random, length: int = 40) -> str:
    return "".join(rng.choice(AMINO) for _ in range(length))


def _record(id_: str, task: str, sequences: list[str], response: str, **meta: Any) -> dict[str, Any]:
    instruction = {
        "go_mf": "List the GO molecular function annotations of this protein.",
        "function": "What is the function of this protein?",
        "ppi": "Do these two proteins interact?",
        "stability": "What is the ddG of this mutation?",
        "ssl_text": "",
    }[task]
    return {
        "id": id_, "sequences": sequences, "instruction": instruction, "response": response, "task": task,
        "source": "test", "meta": meta,
    }  # fmt: skip


@dataclass
class EvalData:
    test: Path
    train: Path
    obo: Path
    sequences: dict[str, str]  # protein / record name -> its sequence


def write_eval_data(folder: str | Path, obo_source: str | Path, seed: int = 0) -> EvalData:
    """test.jsonl (12 usable records: 3 GO, 2 text, 2 PPI, 2 stability, plus `EXPECTED_SKIPPED`),
    train.jsonl (GO annotations T1 {D}, T2 {E}, T3 {B}; a text record sharing the test text record t1's
    protein, a GO protein sharing P1's) and a copy of the ontology."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    seq = {
        name: _sequence(rng) for name in ("P1", "P2", "P3", "P4", "P5", "t1", "t2", "q1", "q2", "q3", "s1")
    }
    test = [
        _record("go:P1", "go_mf", [seq["P1"]], f"{D}", accession="P1", all_go_ids=[D]),
        _record("go:P2", "go_mf", [seq["P2"]], f"{E}", accession="P2", all_go_ids=[E]),
        _record("go:P3", "go_mf", [seq["P3"]], f"{F}", accession="P3", all_go_ids=[F]),
        _record("go:P4", "go_mf", [seq["P4"]], ROOT, accession="P4", all_go_ids=[ROOT]),  # root only
        _record("go:P5", "go_mf", [seq["P5"]], "none", accession="P5"),  # no ground truth
        _record("go:P1-again", "go_mf", [seq["P1"]], f"{D}", accession="P1", all_go_ids=[D]),  # same protein
        _record("text:t1", "function", [seq["t1"]], "It is a kinase that phosphorylates serine."),
        _record("text:t2", "function", [seq["t2"]], "A membrane transporter of sugars."),
        _record("text:bad", "function", ["MKT1Z"], "Unreadable."),  # invalid sequence
        _record("text:t1", "function", [seq["t1"]], "A second record with the same id."),
        _record("ssl:1", "ssl_text", [], "Kinases phosphorylate proteins."),
        _record("ppi:1", "ppi", [seq["q1"], seq["q2"]], "Yes.", interacts=True),
        _record("ppi:2", "ppi", [seq["q1"], seq["q3"]], "No.", interacts=False),
        _record("stab:1", "stability", [seq["s1"]], "1.2 kcal/mol", ddg=1.2),
        _record("stab:2", "stability", [seq["s1"]], "-0.5 kcal/mol", ddg=-0.5),
    ]
    train = [
        _record("tr:T1", "go_mf", [seq["P1"]], D, accession="T1", all_go_ids=[D]),  # P1's own sequence
        _record("tr:T2", "go_mf", [_sequence(rng)], E, accession="T2", all_go_ids=[E]),
        _record("tr:T3", "go_mf", [_sequence(rng)], B, accession="T3", all_go_ids=[B]),
        _record("tr:t1", "function", [seq["t1"]], "It is a kinase."),
    ]
    for path, rows in ((folder / "test.jsonl", test), (folder / "train.jsonl", train)):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    obo = folder / "ontology.obo"
    shutil.copyfile(obo_source, obo)
    return EvalData(folder / "test.jsonl", folder / "train.jsonl", obo, seq)


# Completions per record id: (greedy, samples). See tests/evaluation/test_runner.py for the values they give.
SCRIPT: dict[str, tuple[str, list[str]]] = {
    "go:P1": (f"Answer: {D}", [D, f"{D}, {F}", "nothing", B]),
    "go:P2": (f"It is {B}.", [E, E, C, ""]),
    "go:P3": ("", [G, F, F, C]),
    "text:t1": ("It is a kinase.", []),
    "text:t2": ("<think>hmm</think>Answer: a membrane protein", []),
    "ppi:1": ("Yes, they interact.", []),
    "ppi:2": ("maybe", []),
    "stab:1": ("1.0 kcal/mol", []),
    "stab:2": ("-0.7 kcal/mol", []),
}


@dataclass
class ScriptedGenerator:
    """An `EvalGenerator` answering from `SCRIPT`; counts every record it generates for."""

    run: str = "scripted"
    step: int | None = 10
    path: str = "scripted-model"
    writes: bool = True
    generated: Counter = field(default_factory=Counter)  # record id -> greedy generations
    sampled: Counter = field(default_factory=Counter)  # record id -> sampled generations

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "path": self.path, "run": self.run, "step": self.step}

    def validate(self, sequences: list[str]) -> list[str]:
        from protein_llm_nemo.encoders.sequences import normalize_sequences

        return normalize_sequences(sequences, alphabet=AMINO, max_length=1000) if sequences else []

    def complete(
        self, records: Sequence[ProteinRecord], n: int, settings: Any, greedy: bool
    ) -> list[list[str]]:
        out = []
        for record in records:
            greedy_text, samples = SCRIPT.get(record.id, ("", []))
            (self.generated if greedy else self.sampled)[record.id] += 1
            out.append([greedy_text] if greedy else (samples * n)[:n])
        return out
