"""Nearest-neighbour baseline for text tasks: answer with the response of the training record, of the same
task, whose protein is the best-bitscore mmseqs2 hit of the evaluation protein.

It is the text analogue of homology transfer (what a model that only memorised its training answers and
recognised homologs would say). Records without exactly one protein, and proteins with no hit carrying a
training record of their task, get no answer and are counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import read_records
from protein_llm_nemo.evaluation.baselines.hits import HomologySearch, search_hits


@dataclass(frozen=True)
class Neighbour:
    training_record: str
    bits: float
    identity: float


@dataclass
class NearestAnswers:
    answers: dict[str, str | None] = field(
        default_factory=dict
    )  # evaluation record id -> answer (None: none)
    neighbours: dict[str, Neighbour] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)  # answered, no_hit_with_same_task, not_one_protein


def nearest_training_answers(
    training: Iterable[ProteinRecord],
    evaluation: Iterable[ProteinRecord],
    params: HomologySearch | None = None,
    tasks: set[str] | None = None,
    tmp_root: str | Path | None = None,
) -> NearestAnswers:
    """Answers for every evaluation record (of `tasks`, when given) from its nearest training protein."""
    out = NearestAnswers()
    queries: dict[str, str] = {}
    wanted: list[ProteinRecord] = []
    for record in evaluation:
        if tasks is not None and record.task not in tasks:
            continue
        out.answers[record.id] = None
        if len(record.sequences) != 1:
            out.counts["not_one_protein"] += 1
            continue
        wanted.append(record)
        queries[record.id] = record.sequences[0]
    needed_tasks = {record.task for record in wanted}
    # training protein -> task -> (record id, response) of the first record in id order
    by_sequence: dict[str, dict[str, tuple[str, str]]] = {}
    for record in training:
        if record.task not in needed_tasks or len(record.sequences) != 1:
            continue
        per_task = by_sequence.setdefault(record.sequences[0], {})
        if record.task not in per_task or record.id < per_task[record.task][0]:
            per_task[record.task] = (record.id, record.response)
    targets = {f"t{i}": sequence for i, sequence in enumerate(sorted(by_sequence))}
    hits = search_hits(queries, targets, params, tmp_root)
    for record in wanted:
        found = next(
            ((hit, by_sequence[targets[hit.target]][record.task]) for hit in hits.get(record.id, ())
             if record.task in by_sequence[targets[hit.target]]),
            None,
        )  # fmt: skip
        if found is None:
            out.counts["no_hit_with_same_task"] += 1
            continue
        hit, (training_id, response) = found
        out.answers[record.id] = response
        out.neighbours[record.id] = Neighbour(training_id, hit.bits, hit.identity)
        out.counts["answered"] += 1
    return out


def nearest_answers_from_files(
    training_path: str | Path,
    evaluation_path: str | Path,
    params: HomologySearch | None = None,
    tasks: set[str] | None = None,
) -> tuple[NearestAnswers, dict[str, ReasonCounter]]:
    """`nearest_training_answers` on two record files; also returns each file's read counts (checked)."""
    read = {"training": ReasonCounter(), "evaluation": ReasonCounter()}
    evaluation = list(read_records(evaluation_path, read["evaluation"]))
    result = nearest_training_answers(
        read_records(training_path, read["training"]), evaluation, params, tasks
    )
    for name, counter in read.items():
        counter.check(f"{name} records")
    return result, read
