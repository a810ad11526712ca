"""GO tasks of an evaluation: ground truth, the model's term confidences from sampled answers, and the
per-namespace scores of any system (model or baseline) with their intervals.

- A protein is ``meta.accession`` (else the record id); its truth is the record's ``all_go_ids`` (else
  ``go_ids``) restricted to the record's namespace.
- The model's confidence in a term is the fraction of its k sampled answers that name the term or a
  descendant (`term_confidences`, propagated per sample); the greedy answer gives F1 at the answer
  (`f1_at_answer`). Answers are parsed by the GO reward (`rewards.go_terms`), so evaluation and GRPO read
  completions the same way.
- F-max, S-min, weighted F-max and the precision-recall curve are cafaeval's (`evaluate_go`); their
  intervals are a bootstrap over proteins (`go_intervals`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.go.ontology import ASPECTS, GeneOntology
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.evaluation.go_intervals import agrees, go_intervals
from protein_llm_nemo.evaluation.metrics.answers import (
    format_compliance,
    mean_answer_words,
    parse_failure_rate,
)
from protein_llm_nemo.evaluation.metrics.bootstrap import metric_from_values
from protein_llm_nemo.evaluation.metrics.go import evaluate_go, f1_at_answer, term_confidences
from protein_llm_nemo.evaluation.metrics.information_accretion import information_accretion
from protein_llm_nemo.evaluation.metrics.obo import OboTerm, read_obo, write_pruned_obo
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure
from protein_llm_nemo.evaluation.predictions import Prediction
from protein_llm_nemo.evaluation.results import metric_dict

log = logging.getLogger(__name__)

__all__ = ["GO_TASKS", "GoResources", "go_truth", "model_go_scores", "protein_key", "score_go_system"]

NAMESPACE_OF_TASK = {aspect.task: aspect.namespace for aspect in ASPECTS.values()}
TASK_OF_NAMESPACE = {namespace: task for task, namespace in NAMESPACE_OF_TASK.items()}
GO_TASKS = frozenset(NAMESPACE_OF_TASK)


def protein_key(record: ProteinRecord) -> str:
    return str(record.meta.get("accession") or record.id)


@dataclass
class GoResources:
    """The ontology three ways (cafaeval's file, `TermClosure` for propagation, the reward's parser) and
    the information accretion that weighs S-min."""

    obo: Path
    terms: dict[str, OboTerm]
    closure: TermClosure
    reward: Any  # rewards.go_terms.GoTermReward on this ontology
    information_accretion: dict[str, float] | None = None
    information_accretion_source: str | None = None

    @classmethod
    def load(cls, obo: str | Path) -> GoResources:
        """Read the ontology; an unreadable or empty file is an `OboFileError` naming it."""
        from protein_llm_nemo.rewards.go_terms import GoTermReward

        terms = read_obo(obo)  # raises OboFileError first: the clearest message
        reward = GoTermReward(ontology=GeneOntology.from_obo(obo))
        return cls(Path(obo), terms, TermClosure.from_obo_terms(terms), reward)

    def pruned_obo(self, term_sets: Iterable[Iterable[str]], folder: Path) -> Path:
        """The ontology cut to the given terms and their ancestors, for `evaluate_go` (which would otherwise
        parse the whole file once per system; it prunes the same way itself, so no metric changes)."""
        keep = {c for terms in term_sets for t in terms if (c := self.closure.canonical(t)) is not None}
        path = folder / "ontology.obo"
        write_pruned_obo(
            self.terms, keep, path, header=f"format-version: 1.2\nremark: subset of {self.obo}\n"
        )
        return path

    def add_information_accretion(self, annotations: Mapping[str, Iterable[str]], source: str) -> None:
        self.information_accretion = information_accretion(annotations, self.closure)
        self.information_accretion_source = source

    def truth_terms(self, record: ProteinRecord) -> set[str]:
        """The record's true terms in its namespace (current ids)."""
        namespace, ids = self.reward.read_truth(record)
        return {t for t in ids if self.closure.namespace_of(t) == namespace}

    def unscorable(self, record: ProteinRecord) -> str | None:
        """Why the record cannot be scored (no true term below its namespace's root), or None."""
        namespace = NAMESPACE_OF_TASK[record.task]
        propagated = self.closure.propagate(self.truth_terms(record), namespace)
        if not any(not self.closure.is_orphan(t) for t in propagated):
            return "go_truth_outside_ontology"
        return None

    def parsed_ids(self, record: ProteinRecord, completion: str) -> tuple[str, ...] | None:
        """The GO ids the reward reads from a completion (in the record's namespace); None: none read."""
        parsed = self.reward.score(record, completion).parsed_answer
        return None if parsed is None else tuple(parsed)


def go_truth(records: Sequence[ProteinRecord], resources: GoResources) -> dict[str, set[str]]:
    """protein -> true terms over all its GO records (each restricted to its record's namespace)."""
    truth: dict[str, set[str]] = {}
    for record in records:
        truth.setdefault(protein_key(record), set()).update(resources.truth_terms(record))
    return truth


def model_go_scores(
    records: Sequence[ProteinRecord],
    predictions: Mapping[str, Prediction],
    resources: GoResources,
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """(protein -> term -> confidence, task -> answer metrics of the greedy completions)."""
    confidences: dict[str, dict[str, float]] = {}
    by_task: dict[str, list[tuple[ProteinRecord, Prediction]]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append((record, predictions[record.id]))
    answers: dict[str, dict[str, Any]] = {}
    resampling = {"n_resamples": n_resamples, "seed": seed}
    for task, pairs in sorted(by_task.items()):
        namespace = NAMESPACE_OF_TASK[task]
        f1s, parsed, greedy_texts, sample_failures, samples_total = [], [], [], 0, 0
        for record, prediction in pairs:
            greedy_ids = resources.parsed_ids(record, prediction.greedy)
            parsed.append(greedy_ids)
            greedy_texts.append(prediction.greedy)
            truth = resources.truth_terms(record)
            f1s.append(f1_at_answer(greedy_ids or (), truth, resources.closure, namespace))
            # no samples (k = 0): the greedy answer is the only one, every term at confidence 1
            texts = prediction.samples or [prediction.greedy]
            sampled = [resources.parsed_ids(record, text) for text in texts]
            sample_failures += sum(ids is None for ids in sampled)
            samples_total += len(sampled)
            scores = term_confidences([ids or () for ids in sampled], resources.closure, namespace)
            confidences.setdefault(protein_key(record), {}).update(scores)
        answers[task] = {
            "f1_greedy": metric_dict(metric_from_values(f1s, **resampling)),
            "format_compliance": metric_dict(format_compliance(parsed, **resampling)),
            "parse_failure_rate": metric_dict(parse_failure_rate(parsed, **resampling)),
            "mean_answer_words": metric_dict(mean_answer_words(greedy_texts, **resampling)),
            "sample_parse_failure_rate": sample_failures / samples_total if samples_total else None,
            "samples_per_record": samples_total / len(pairs),
        }
    return confidences, answers


def score_go_system(
    term_scores: Mapping[str, Mapping[str, float]],
    truth: Mapping[str, set[str]],
    resources: GoResources,
    n_resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """task -> F-max, S-min (weighted with IA, and unweighted), weighted F-max, the PR curve and cafaeval's
    input counts, for one system's protein -> term -> score (every GO namespace of the truth)."""
    ia = resources.information_accretion
    with tempfile.TemporaryDirectory(prefix="eval_go_") as folder:
        obo = resources.pruned_obo([*truth.values(), *term_scores.values()], Path(folder))
        scores = evaluate_go(term_scores, truth, obo, information_accretion=ia)
    out: dict[str, dict[str, Any]] = {}
    for namespace, result in scores.items():
        task = TASK_OF_NAMESPACE.get(namespace)
        if task is None:
            continue
        intervals = go_intervals(term_scores, truth, resources.closure, namespace, ia, n_resamples, seed)
        n = intervals.proteins
        nothing = result.predicted_proteins == 0 or result.threshold is None
        entry: dict[str, Any] = {
            "f_max": _checked(intervals.f_max, None if nothing else result.f_max, n, "F-max"),
            "s_min_unweighted": _checked(intervals.s_min_unweighted, result.s_min_unweighted, n, "S-min"),
            "weighted_f_max": None,
            "s_min": None,
            "threshold": result.threshold,
            "precision": result.precision,
            "recall": result.recall,
            "coverage": result.coverage,
            "proteins": result.ground_truth_proteins,
            "predicted_proteins": result.predicted_proteins,
            "curve": [
                {
                    "threshold": p.threshold,
                    "precision": p.precision,
                    "recall": p.recall,
                    "f": p.f,
                    "coverage": p.coverage,
                }
                for p in result.curve
            ],
            "counts": {
                k: v
                for k, v in result.counts.items()
                if not k.startswith("unknown_proteins:") or namespace in k
            },
        }
        if intervals.weighted_f_max is not None:
            weighted = None if nothing else result.weighted_f_max
            entry["weighted_f_max"] = _checked(intervals.weighted_f_max, weighted, n, "weighted F-max")
            entry["s_min"] = _checked(intervals.s_min, result.s_min, n, "S-min (IA-weighted)")
        out[task] = entry
    return out


def _checked(recomputed: tuple[float, float, float], reference: float | None, n: int, what: str) -> dict:
    """cafaeval's value with the bootstrap interval; a disagreement with the recomputation is noted.
    Without any prediction cafaeval reports nothing: F is then 0 by convention, S undefined, both noted."""
    value, low, high = recomputed
    if reference is None:
        if what.endswith("F-max"):
            return metric_dict(
                (0.0, low, high), n, "no protein has a prediction at any threshold: 0 by convention"
            )
        return metric_dict(
            (float("nan"), low, high), n, "undefined: no protein has a prediction at any threshold"
        )
    note = ""
    if not agrees(value, reference):
        note = f"bootstrap recomputation gives {value:.6f}, cafaeval {reference:.6f}: interval approximate"
        log.warning("%s: %s", what, note)
    return metric_dict((float(reference), low, high), n, note)


def ia_annotations(records: Iterable[ProteinRecord], resources: GoResources) -> dict[str, set[str]]:
    """protein -> GO terms of the records (for information accretion)."""
    out: dict[str, set[str]] = {}
    for record in records:
        if record.task in GO_TASKS and resources.reward.ground_truth_problem(record) is None:
            out.setdefault(protein_key(record), set()).update(resources.truth_terms(record))
    return out
