"""The content of results.json for one run (layout in `results`): the run's identity, what happened to every
record, the baselines, and the per-task metrics (`scoring`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.evaluation.baseline_systems import BaselineOutput, homology_baseline, naive_baseline
from protein_llm_nemo.evaluation.config import EvalConfig
from protein_llm_nemo.evaluation.go_scoring import GO_TASKS, GoResources, go_truth, ia_annotations
from protein_llm_nemo.evaluation.predictions import PredictionStore
from protein_llm_nemo.evaluation.scoring import score_tasks

__all__ = ["summarise"]


def _label(config: EvalConfig, model: dict[str, Any]) -> str:
    if config.name:
        return config.name
    step = model.get("step")
    return model["run"] if step is None else f"{model['run']}@{step}"


def _baselines(
    config: EvalConfig, records: Sequence[ProteinRecord], resources: GoResources | None
) -> dict[str, BaselineOutput]:
    names = config.baseline_names()
    if not names:
        return {}
    from protein_llm_nemo.evaluation.baselines import read_go_annotations

    go_records = [r for r in records if r.task in GO_TASKS]
    other = [r for r in records if r.task not in GO_TASKS]
    training = read_go_annotations(str(config.data.train_path))
    out: dict[str, BaselineOutput] = {}
    if "naive" in names and go_records and resources is not None:
        out["naive"] = naive_baseline(go_records, training, resources)
    if "homology" in names:
        out["homology"] = homology_baseline(
            go_records, other, training, str(config.data.train_path), resources
        )
    return out


def _information_accretion(
    config: EvalConfig, records: Sequence[ProteinRecord], resources: GoResources
) -> None:
    """IA from the training annotations when given (the usual choice), else from the test truth."""
    if config.data.train_path:
        from protein_llm_nemo.data.storage import read_records

        read = ReasonCounter()
        annotations = ia_annotations(read_records(config.data.train_path, read), resources)
        read.check(f"training records {config.data.train_path}")
        if annotations:
            resources.add_information_accretion(annotations, "train")
            return
    resources.add_information_accretion(
        go_truth([r for r in records if r.task in GO_TASKS], resources), "test"
    )


def summarise(
    config: EvalConfig,
    model: dict[str, Any],
    records: Sequence[ProteinRecord],
    read: ReasonCounter,
    skipped: Counter,
    store: PredictionStore,
    prediction_counts: dict[str, int],
    generated: int,
    resources: GoResources | None,
) -> dict[str, Any]:
    predictions = {r.id: store.predictions[r.id] for r in records}
    if resources is not None:
        _information_accretion(config, records, resources)
    baselines = _baselines(config, records, resources)
    empty_greedy = sum(not p.greedy.strip() for p in predictions.values())
    empty_samples = sum(not s.strip() for p in predictions.values() for s in p.samples)
    tasks = score_tasks(records, predictions, resources, baselines, config.bootstrap_resamples)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "name": _label(config, model),
        "model": model,
        "data": asdict(config.data),
        "generation": asdict(config.generation),
        "records": {
            "read": read.to_dict(),
            "evaluated": len(records),
            "per_task": dict(Counter(r.task for r in records)),
            "skipped": dict(sorted(skipped.items())),
            "generated_this_run": generated,
            "predictions": prediction_counts,
            "empty_completions": {"greedy": empty_greedy, "samples": empty_samples},
        },
        "go": None
        if resources is None
        else {
            "obo": str(resources.obo),
            "information_accretion": resources.information_accretion_source,
        },
        "bootstrap_resamples": config.bootstrap_resamples,
        "tasks": tasks,
        "baselines": {name: {"counts": dict(sorted(b.counts.items()))} for name, b in baselines.items()},
    }
