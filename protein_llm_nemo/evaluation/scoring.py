"""Per-task results of a run: the model's predictions and each baseline's, side by side.

``tasks[task] = {"kind", "records", "systems": {"model": {...}, "<baseline>": {...}}}``; the metric names
of each kind are those of its metric module (`task_scoring`, `go_scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.evaluation.baseline_systems import BaselineOutput
from protein_llm_nemo.evaluation.go_scoring import GoResources, go_truth, model_go_scores, score_go_system
from protein_llm_nemo.evaluation.predictions import Prediction
from protein_llm_nemo.evaluation.task_scoring import answer_metrics, task_kind

__all__ = ["score_tasks"]


def score_tasks(
    records: Sequence[ProteinRecord],
    predictions: Mapping[str, Prediction],
    resources: GoResources | None,
    baselines: Mapping[str, BaselineOutput],
    n_resamples: int,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    by_task: dict[str, list[ProteinRecord]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    tasks: dict[str, dict[str, Any]] = {
        task: {"kind": task_kind(task), "records": len(task_records), "systems": {}}
        for task, task_records in sorted(by_task.items())
    }
    go_records = [r for r in records if task_kind(r.task) == "go"]
    if go_records:
        if resources is None:
            raise ValueError("GO records need the ontology (GoResources)")
        truth = go_truth(go_records, resources)
        confidences, answers = model_go_scores(go_records, predictions, resources, n_resamples, seed)
        for task, scores in score_go_system(confidences, truth, resources, n_resamples, seed).items():
            tasks[task]["systems"]["model"] = {**scores, **answers[task]}
        for name, baseline in baselines.items():
            if baseline.go_scores is None:
                continue
            for task, scores in score_go_system(
                baseline.go_scores, truth, resources, n_resamples, seed
            ).items():
                tasks[task]["systems"][name] = scores
    for task, task_records in by_task.items():
        kind = task_kind(task)
        if kind == "go":
            continue
        greedy = [predictions[r.id].greedy for r in task_records]
        tasks[task]["systems"]["model"] = answer_metrics(kind, task_records, greedy, n_resamples, seed)
        for name, baseline in baselines.items():
            if baseline.answers is None:
                continue
            answers = [baseline.answers.get(r.id) for r in task_records]
            scores = answer_metrics(kind, task_records, [a or "" for a in answers], n_resamples, seed)
            scores["answered"] = sum(a is not None for a in answers) / len(answers)
            tasks[task]["systems"][name] = scores
    return tasks
