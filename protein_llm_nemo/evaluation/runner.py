"""One evaluation run: records -> completions (resumable, batched) -> results.json.

    results = run_evaluation(EvalConfig(out_dir="runs/eval/sft", checkpoint="runs/sft-mlp-tiny-cpu",
                                        data=EvalDataConfig(test_path="test.jsonl", go_obo="go.obo")))

1. Read the test records; keep those that can be scored (a known task, ground truth for it, valid
   sequences, a GO truth the ontology knows); everything left out is counted by reason.
2. Load the model (`generators`); open ``predictions.jsonl`` and skip the records it already holds. A run
   folder remembers its model and generation settings (``run.json``): resuming with others is an error.
3. Generate ``data.global_batch_size`` records at a time (greedy for all, k samples for GO records),
   append each batch to the predictions, call ``on_batch`` (tests kill a run there), advance the bar.
4. Rank 0 scores the model and the baselines (`scoring`) and writes ``results.json`` (`results`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.storage import read_records
from protein_llm_nemo.evaluation.config import EvalConfig
from protein_llm_nemo.evaluation.generators import EvalGenerator, build_generator
from protein_llm_nemo.evaluation.go_scoring import GO_TASKS, GoResources, protein_key
from protein_llm_nemo.evaluation.predictions import Prediction, PredictionStore
from protein_llm_nemo.evaluation.results import PREDICTIONS_FILE, write_results
from protein_llm_nemo.evaluation.task_scoring import task_kind, unscorable

log = logging.getLogger(__name__)

__all__ = ["OBO_ENV", "RUN_FILE", "BatchHook", "run_evaluation", "select_records"]

OBO_ENV = "PROTEIN_LLM_GO_OBO"
RUN_FILE = "run.json"
BatchHook = Callable[[int, list[Prediction]], None]


def _read(config: EvalConfig) -> tuple[list[ProteinRecord], ReasonCounter]:
    path = config.data.test_path
    if not path or not Path(path).exists():
        raise FileNotFoundError(f"test records {path!r}: no such file (data.test_path / --data)")
    read = ReasonCounter()
    records = list(read_records(path, read))
    read.check(f"test records {path}")
    if not records:
        raise ValueError(f"{path}: no readable record ({read.to_dict()})")
    return records, read


def _go_resources(config: EvalConfig, records: Sequence[ProteinRecord]) -> GoResources | None:
    if not any(r.task in GO_TASKS for r in records):
        return None
    obo = config.data.go_obo or os.environ.get(OBO_ENV)
    if not obo:
        raise ValueError(
            f"GO records need the ontology they were built with: --go-obo FILE (data.go_obo) or ${OBO_ENV}"
        )
    return GoResources.load(obo)


def select_records(
    records: Sequence[ProteinRecord],
    config: EvalConfig,
    resources: GoResources | None,
    validate: Callable[[list[str]], list[str]],
) -> tuple[list[ProteinRecord], Counter]:
    """The records to evaluate, in file order, and the count of each reason a record was left out."""
    wanted = config.data.task_set()
    skipped: Counter = Counter()
    seen_ids: set[str] = set()
    seen_proteins: set[tuple[str, str]] = set()
    kept: list[ProteinRecord] = []
    for record in records:
        if wanted is not None and record.task not in wanted:
            skipped["task_not_selected"] += 1
            continue
        reason = unscorable(record)
        if reason is None and task_kind(record.task) == "go":
            reason = resources.unscorable(record)  # type: ignore[union-attr]
            if reason is None and len(record.sequences) != 1:
                reason = "go_record_without_one_protein"
            if reason is None and (record.task, protein_key(record)) in seen_proteins:
                reason = "duplicate_protein_in_go_task"
        if reason is None and record.id in seen_ids:
            reason = "duplicate_record_id"
        if reason is None:
            try:
                record.sequences = validate(list(record.sequences))
            except ValueError as exc:
                log.warning("record %s: %s", record.id, exc)
                reason = "invalid_sequence"
        if reason is not None:
            skipped[reason] += 1
            continue
        if config.data.limit is not None and len(kept) >= config.data.limit:
            skipped["beyond_limit"] += 1
            continue
        seen_ids.add(record.id)
        if task_kind(record.task) == "go":
            seen_proteins.add((record.task, protein_key(record)))
        kept.append(record)
    if not kept:
        raise ValueError(f"no record of {config.data.test_path} can be evaluated (left out: {dict(skipped)})")
    return kept, skipped


def _check_run_folder(out_dir: Path, key: dict[str, Any], writes: bool) -> None:
    """Remember what generated this folder's predictions; refuse to resume with anything else."""
    path = out_dir / RUN_FILE
    if path.is_file():
        before = json.loads(path.read_text())["generation_key"]
        if before != key:
            changed = sorted(k for k in set(before) | set(key) if before.get(k) != key.get(k))
            raise ValueError(
                f"{out_dir} holds predictions of another model or generation settings ({', '.join(changed)}: "
                f"{ {k: before.get(k) for k in changed} } then, { {k: key.get(k) for k in changed} } now); "
                "give another out_dir or remove that one"
            )
    elif writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        path.write_text(json.dumps({"generation_key": key, "created": created}, indent=2) + "\n")


def _generate(
    generator: EvalGenerator,
    pending: list[ProteinRecord],
    config: EvalConfig,
    store: PredictionStore,
    done: int,
    on_batch: BatchHook | None,
) -> int:
    """Generate and append the pending records batch by batch; returns the records generated."""
    from tqdm import tqdm

    settings = config.generation
    size = config.data.global_batch_size
    generated = 0
    bar = tqdm(
        total=done + len(pending), initial=done, desc="eval", unit="record", file=sys.stderr,
        disable=not (config.progress and generator.writes),
    )  # fmt: skip
    with bar:
        for index, start in enumerate(range(0, len(pending), size)):
            batch = pending[start : start + size]
            greedy = generator.complete(batch, 1, settings, greedy=True)
            go = [i for i, r in enumerate(batch) if r.task in GO_TASKS]
            sampled: dict[int, list[str]] = {}
            if go and settings.samples:
                texts = generator.complete([batch[i] for i in go], settings.samples, settings, greedy=False)
                sampled = dict(zip(go, texts, strict=True))
            rows = [
                Prediction(record.id, record.task, greedy[i][0], sampled.get(i, []))
                for i, record in enumerate(batch)
            ]
            if generator.writes:
                store.append(rows)
            generated += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(index, rows)
    return generated


def _prediction_counts(store: PredictionStore, records: Sequence[ProteinRecord]) -> dict[str, int]:
    wanted = {r.id: r.task for r in records}
    mismatched = [i for i, p in store.predictions.items() if i in wanted and wanted[i] != p.task]
    if mismatched:
        raise ValueError(
            f"{store.path}: record {mismatched[0]!r} was predicted as task {store.predictions[mismatched[0]].task!r}"
            f" but the test file has it as {wanted[mismatched[0]]!r}: another test file? use another out_dir"
        )
    unknown = sum(1 for i in store.predictions if i not in wanted)
    return {"unknown_records": unknown, **store.counts}


def run_evaluation(
    config: EvalConfig,
    generator: EvalGenerator | None = None,
    on_batch: BatchHook | None = None,
) -> dict[str, Any] | None:
    """Evaluate; returns the results (rank 0; None on other ranks). `generator` replaces the model the
    config names (tests); `on_batch(index, predictions)` runs after each batch is appended."""
    out_dir = Path(config.out_dir)
    records, read = _read(config)
    wanted = config.data.task_set()
    resources = _go_resources(config, [r for r in records if wanted is None or r.task in wanted])
    generator = generator or build_generator(config)
    selected, skipped = select_records(records, config, resources, generator.validate)
    model = generator.describe()
    # resolved: the same checkpoint named from another working directory is the same model
    key = {
        "model": str(Path(model["path"]).resolve()),
        "kind": model["kind"],
        "generation": asdict(config.generation),
    }
    _check_run_folder(out_dir, key, generator.writes)
    store = PredictionStore(out_dir / PREDICTIONS_FILE, repair=generator.writes)
    store.load()
    prediction_counts = _prediction_counts(store, selected)
    pending = [r for r in selected if r.id not in store.predictions]
    log.info("eval: %d records, %d already predicted, %d to generate", len(selected),
             len(selected) - len(pending), len(pending))  # fmt: skip
    generated = _generate(generator, pending, config, store, len(selected) - len(pending), on_batch)
    if not generator.writes:
        return None
    from protein_llm_nemo.evaluation.summary import summarise

    results = summarise(
        config, model, selected, read, skipped, store, prediction_counts, generated, resources
    )
    path = write_results(results, out_dir)
    log.info("eval: wrote %s", path)
    return results
