"""Which kind of metric each record task gets, whether a record can be scored, and the metrics of the
non-GO tasks from one answer per record (the model's greedy completion or a baseline's answer).

- property tasks (a reward exists: ppi, binary_property, stability, structure_quality, multiple_choice):
  the reward parses the answer (`rewards.score(...).parsed_answer`), the metric module scores it, parse
  failures counted, and the mean reward is reported beside;
- text tasks (no reward: function descriptions, names, QA): ROUGE-L and BLEU against the record's
  response, on the answer region (thinking removed, text after the last ``Answer:`` marker);
- GO tasks: `go_scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.evaluation.go_scoring import GO_TASKS
from protein_llm_nemo.evaluation.metrics.answers import (
    format_compliance,
    mean_answer_words,
    parse_failure_rate,
)
from protein_llm_nemo.evaluation.metrics.bootstrap import metric_from_values
from protein_llm_nemo.rewards import get_reward, has_reward, missing_ground_truth
from protein_llm_nemo.rewards.answer_text import answer_region

__all__ = ["NOT_EVALUATED", "answer_metrics", "task_kind", "unscorable"]

NOT_EVALUATED = frozenset({"ssl_text"})  # plain text for continued pre-training: no question to answer
BOOLEAN_TASKS = frozenset({"ppi", "binary_property"})  # yes / no answers: accuracy and binary MCC


def task_kind(task: str) -> str | None:
    """The kind of metrics of a task: "go", "text", the reward task (ppi, stability ...), None: not evaluated."""
    if task in NOT_EVALUATED:
        return None
    if task in GO_TASKS:
        return "go"
    return task if has_reward(task) else "text"


def unscorable(record: ProteinRecord) -> str | None:
    """Why a record cannot be scored (no ground truth for its task), or None; GO records also need a truth
    their ontology knows (`GoResources.unscorable`)."""
    kind = task_kind(record.task)
    if kind is None:
        return f"not_an_evaluation_task:{record.task}"
    if kind == "text":
        return None if record.response.strip() else "no_reference_response"
    problem = missing_ground_truth(record)  # GO: the ontology check is go_scoring's
    return None if problem is None else f"no_ground_truth:{problem}"


def answer_metrics(
    kind: str,
    records: Sequence[ProteinRecord],
    answers: Sequence[str],
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The task's metrics (Metric dicts, see results.py) of one answer per record."""
    from protein_llm_nemo.evaluation.results import jsonable

    resampling = {"n_resamples": n_resamples, "seed": seed}
    if kind == "text":
        from protein_llm_nemo.evaluation.metrics.text import text_metrics

        regions = [answer_region(text) for text in answers]
        return jsonable(text_metrics(regions, [r.response for r in records], **resampling).to_dict())
    reward = get_reward(kind)
    scored = [reward.score(record, text) for record, text in zip(records, answers, strict=True)]
    parsed = [result.parsed_answer for result in scored]
    truths = [reward.read_truth(record) for record in records]
    completions = list(answers)
    if kind in BOOLEAN_TASKS:
        from protein_llm_nemo.evaluation.metrics.classification import ppi_metrics

        metrics = ppi_metrics(parsed, truths, completions, **resampling).to_dict()
    elif kind == "multiple_choice":
        from protein_llm_nemo.evaluation.metrics.classification import multiple_choice_metrics

        metrics = multiple_choice_metrics(parsed, [t[0] for t in truths], completions, **resampling).to_dict()
    elif kind == "stability":
        from protein_llm_nemo.evaluation.metrics.regression import regression_metrics

        metrics = regression_metrics(parsed, truths, completions, **resampling).to_dict()
    elif kind == "structure_quality":
        from protein_llm_nemo.evaluation.metrics.structure import structure_metrics

        metrics = structure_metrics(
            [None if p is None else p.plddt for p in parsed],
            [t[0] for t in truths],
            completions,
            predicted_category=[None if p is None else p.category for p in parsed],
            **resampling,
        ).to_dict()
    else:  # a reward without a metric module of its own: its answers' shape only (and the reward below)
        metrics = {
            "format_compliance": format_compliance(parsed, **resampling),
            "parse_failure_rate": parse_failure_rate(parsed, **resampling),
            "mean_answer_words": mean_answer_words(completions, **resampling),
        }
    # what GRPO optimises, next to the task's own metrics
    metrics["mean_reward"] = metric_from_values([result.total for result in scored], **resampling)
    return jsonable(metrics)
