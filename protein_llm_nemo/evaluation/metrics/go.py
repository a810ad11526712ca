"""GO-term prediction metrics through CAFA-evaluator (`cafaeval`, the field's reference implementation).

`evaluate_go` writes the CAFA-format files (ground truth ``protein<TAB>term``, predictions
``protein<TAB>term<TAB>score``, optional information accretion ``term<TAB>ia``) and a copy of the ontology
holding only the terms the evaluation touches (`obo.write_pruned_obo`), then calls
``cafaeval.evaluation.cafa_eval``: propagation (a term's score is the max over its descendants'), the
threshold sweep 0.01..0.99, precision averaged over proteins with a prediction at the threshold, recall over
all ground-truth proteins, F-max, weighted F-max and S-min are all cafaeval's. This module only prepares the
inputs, counts what cafaeval would silently ignore and reads its tables.

Generative models give term sets, not scores: `term_confidences` turns k sampled answers into per-term
frequencies for `evaluate_go`; `f1_at_answer` is the F1 of one (greedy) answer after propagation.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.go.ontology import GeneOntology
from protein_llm_nemo.evaluation.metrics.information_accretion import (
    read_information_accretion,
    write_information_accretion,
)
from protein_llm_nemo.evaluation.metrics.obo import OboFileError, read_obo, write_pruned_obo
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure, resolve_namespace

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.tsv"


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    precision: float
    recall: float
    f: float
    coverage: float  # ground-truth proteins with a prediction at this threshold / all ground-truth proteins


@dataclass
class GOScores:
    """One namespace's scores, as cafaeval computes them (CAFA normalisation, max propagation)."""

    namespace: str
    f_max: float
    threshold: float | None  # where F-max is reached (the lowest such threshold); None: nothing predicted
    precision: float  # at F-max
    recall: float  # at F-max
    coverage: float  # at F-max
    weighted_f_max: float | None  # information-accretion weighted; None without IA
    weighted_threshold: float | None
    s_min: float | None  # IA-weighted remaining uncertainty / misinformation (CAFA's S-min); None without IA
    s_min_threshold: float | None
    s_min_unweighted: float | None  # the same with every term weighing 1 (cafaeval's ``s`` column)
    ground_truth_proteins: int  # the recall denominator
    predicted_proteins: int  # ground-truth proteins with any prediction in this namespace
    unknown_proteins: int  # proteins with predictions in this namespace but no ground truth in it: not scored
    curve: list[CurvePoint] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # input accounting over all namespaces

    def to_dict(self, with_curve: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not with_curve:
            out.pop("curve")
        return out


def evaluate_go(
    predictions: Mapping[str, Mapping[str, float]],
    ground_truth: Mapping[str, Iterable[str]],
    ontology_obo: str | Path,
    *,
    information_accretion: Mapping[str, float] | str | Path | None = None,
    exclude_roots: bool = True,
    threshold_step: float = 0.01,
    threads: int = 1,
    files_dir: str | Path | None = None,
) -> dict[str, GOScores]:
    """Score `predictions` (protein -> GO term -> score in [0, 1]) against `ground_truth` (protein -> GO
    terms, propagated or not) with CAFA-evaluator, per namespace of the ground truth.

    ``exclude_roots`` passes cafaeval's ``no_orphans`` (DeepGOPlus's evaluation also removes the root: every
    annotated protein has it). ``information_accretion`` (term -> IA, or an IA file; see
    `information_accretion.information_accretion`) adds weighted F-max and S-min. ``files_dir`` keeps the
    CAFA-format files there (``cafaeval <obo> <files_dir>/predictions <files_dir>/ground_truth.tsv``
    reproduces the numbers), else they go to a temporary folder. Terms the ontology lacks, proteins without
    ground truth and scores below the lowest threshold (never counted at any threshold) are left out and
    counted in each namespace's ``counts``."""
    if not 0.0 < threshold_step < 1.0:
        raise ValueError(f"threshold_step must be in (0, 1), got {threshold_step}")
    terms = read_obo(ontology_obo)
    closure = TermClosure.from_obo_terms(terms)
    counts: Counter = Counter()
    truth = _ground_truth_by_namespace(ground_truth, closure, counts)
    scored = _predictions_by_namespace(predictions, closure, truth, threshold_step, counts)
    counts["predicted_proteins_without_ground_truth"] = sum(1 for p in predictions if p not in ground_truth)
    with tempfile.TemporaryDirectory(prefix="cafaeval_") as tmp:
        folder = Path(files_dir) if files_dir is not None else Path(tmp)
        (folder / "predictions").mkdir(parents=True, exist_ok=True)
        touched = {t for per_protein in truth.values() for ts in per_protein.values() for t in ts}
        touched |= {t for per_protein in scored.values() for ts in per_protein.values() for t in ts}
        obo = folder / "ontology.obo"
        write_pruned_obo(
            terms, touched, obo, header=f"format-version: 1.2\nremark: subset of {ontology_obo}\n"
        )
        truth_file = _write_ground_truth(truth, folder / "ground_truth.tsv")
        _write_predictions(scored, folder / "predictions" / PREDICTIONS_FILE)
        ia_file = None
        if information_accretion is not None:
            ia = information_accretion
            if not isinstance(ia, Mapping):
                ia = read_information_accretion(ia)
            ia_file = write_information_accretion(ia, folder / "information_accretion.tsv")
        table, best = _run_cafaeval(obo, folder / "predictions", truth_file, ia_file, exclude_roots, threshold_step,
                                    threads, ontology_obo)  # fmt: skip
    return {
        namespace: _scores(namespace, table, best, truth[namespace], scored.get(namespace, {}), counts)
        for namespace in sorted(truth)
    }


def _ground_truth_by_namespace(
    ground_truth: Mapping[str, Iterable[str]], closure: TermClosure, counts: Counter
) -> dict[str, dict[str, set[str]]]:
    truth: dict[str, dict[str, set[str]]] = {}
    for protein, protein_terms in ground_truth.items():
        known = 0
        for term in protein_terms:
            current = closure.canonical(term)
            if current is None:
                counts["ground_truth_terms_not_in_ontology"] += 1
                continue
            known += 1
            truth.setdefault(closure.namespaces[current], {}).setdefault(protein, set()).add(current)
        if not known:
            counts["ground_truth_proteins_without_terms"] += 1
    return truth


def _predictions_by_namespace(
    predictions: Mapping[str, Mapping[str, float]],
    closure: TermClosure,
    truth: Mapping[str, Mapping[str, set[str]]],
    threshold_step: float,
    counts: Counter,
) -> dict[str, dict[str, dict[str, float]]]:
    """namespace -> protein -> current term id -> max score, for proteins with ground truth there."""
    scored: dict[str, dict[str, dict[str, float]]] = {}
    unknown: dict[str, set[str]] = {}
    # Proteins may share one score mapping (the naive baseline gives every protein the same one): each
    # distinct mapping is checked and split by namespace once.
    prepared: dict[int, tuple[dict[str, dict[str, float]], Counter]] = {}
    for protein, term_scores in predictions.items():
        if id(term_scores) not in prepared:
            prepared[id(term_scores)] = _prepare_scores(protein, term_scores, closure, threshold_step)
        by_namespace, dropped = prepared[id(term_scores)]
        counts.update(dropped)
        for namespace, namespace_scores in by_namespace.items():
            if protein in truth.get(namespace, {}):
                scored.setdefault(namespace, {})[protein] = namespace_scores
            else:
                unknown.setdefault(namespace, set()).add(protein)
    for namespace, proteins in unknown.items():
        counts[f"unknown_proteins:{namespace}"] = len(proteins)
    return scored


def _prepare_scores(
    protein: str, term_scores: Mapping[str, float], closure: TermClosure, threshold_step: float
) -> tuple[dict[str, dict[str, float]], Counter]:
    by_namespace: dict[str, dict[str, float]] = {}
    dropped: Counter = Counter()
    for term, score in term_scores.items():
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"prediction score outside [0, 1]: protein {protein!r}, term {term!r}: {score}")
        current = closure.canonical(term)
        if current is None:
            dropped["predicted_terms_not_in_ontology"] += 1
        elif score < threshold_step:
            dropped["predictions_below_lowest_threshold"] += 1
        else:
            namespace_scores = by_namespace.setdefault(closure.namespaces[current], {})
            namespace_scores[current] = max(score, namespace_scores.get(current, 0.0))
    return by_namespace, dropped


def _write_ground_truth(truth: Mapping[str, Mapping[str, set[str]]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for namespace in sorted(truth):
            for protein, protein_terms in sorted(truth[namespace].items()):
                for term in sorted(protein_terms):
                    handle.write(f"{protein}\t{term}\n")
    return path


def _write_predictions(scored: Mapping[str, Mapping[str, Mapping[str, float]]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for namespace in sorted(scored):
            for protein, term_scores in sorted(scored[namespace].items()):
                for term, score in sorted(term_scores.items()):
                    handle.write(f"{protein}\t{term}\t{score!r}\n")
    return path


def _run_cafaeval(
    obo: Path,
    predictions_dir: Path,
    truth_file: Path,
    ia_file: Path | None,
    exclude_roots: bool,
    threshold_step: float,
    threads: int,
    source_obo: str | Path,
) -> tuple[Any, dict[str, Any]]:
    from cafaeval.evaluation import cafa_eval  # optional dependency (the [train] extra)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas chained-assignment warnings inside cafaeval
        try:
            table, best = cafa_eval(
                str(obo),
                str(predictions_dir),
                str(truth_file),
                ia=None if ia_file is None else str(ia_file),
                no_orphans=exclude_roots,
                norm="cafa",
                prop="max",
                th_step=threshold_step,
                n_cpu=threads,
            )
        except Exception as exc:
            if "acyclic" in str(exc):
                raise OboFileError(f"{source_obo}: the is_a / part_of graph has a cycle ({exc})") from exc
            raise
    return table, best


def _scores(
    namespace: str,
    table: Any,
    best: Mapping[str, Any],
    truth: Mapping[str, set[str]],
    scored: Mapping[str, Mapping[str, float]],
    counts: Counter,
) -> GOScores:
    rows = None
    if table is not None and namespace in set(table.index.get_level_values("ns")):
        rows = table.xs(namespace, level="ns").reset_index().sort_values("tau")
    scores = GOScores(
        namespace=namespace,
        f_max=0.0,
        threshold=None,
        precision=0.0,
        recall=0.0,
        coverage=0.0,
        weighted_f_max=None,
        weighted_threshold=None,
        s_min=None,
        s_min_threshold=None,
        s_min_unweighted=None,
        ground_truth_proteins=len(truth),
        predicted_proteins=len(scored),
        unknown_proteins=counts.get(f"unknown_proteins:{namespace}", 0),
        counts=dict(sorted(counts.items())),
    )
    if rows is None or rows.empty:
        return scores
    at_f = _best_row(best["f"], namespace)
    scores.f_max, scores.threshold = float(at_f["f"]), _threshold(at_f["tau"])
    scores.precision, scores.recall, scores.coverage = (
        float(at_f["pr"]),
        float(at_f["rc"]),
        float(at_f["cov"]),
    )
    scores.s_min_unweighted = float(rows["s"].min())
    if "f_w" in best:
        at_fw = _best_row(best["f_w"], namespace)
        scores.weighted_f_max, scores.weighted_threshold = float(at_fw["f_w"]), _threshold(at_fw["tau"])
        at_s = rows.loc[rows["s_w"].idxmin()]
        scores.s_min, scores.s_min_threshold = float(at_s["s_w"]), _threshold(at_s["tau"])
    scores.curve = [
        CurvePoint(_threshold(r.tau), float(r.pr), float(r.rc), float(r.f), float(r.cov))
        for r in rows.itertuples()
    ]
    return scores


def _best_row(frame: Any, namespace: str) -> Any:
    return frame.xs(namespace, level="ns").reset_index().iloc[0]


def _threshold(tau: float) -> float:
    return round(float(tau), 6)  # np.arange steps carry float noise (0.30000000000000004)


def term_confidences(
    sampled_term_sets: Sequence[Iterable[str]],
    ontology: GeneOntology | TermClosure | None = None,
    namespace: str | None = None,
) -> dict[str, float]:
    """Per-term confidence from k sampled answers: the fraction of samples that contain the term.

    With an ontology each sample is propagated first, so a parent is as confident as the share of samples
    naming any of its descendants (max propagation of the raw frequencies would under-count it)."""
    if not sampled_term_sets:
        return {}
    closure = None if ontology is None else TermClosure.of(ontology)
    found: Counter = Counter()
    for sample in sampled_term_sets:
        terms = set(sample) if closure is None else closure.propagate(sample, namespace)
        found.update(terms)
    return {term: n / len(sampled_term_sets) for term, n in sorted(found.items())}


def f1_at_answer(
    predicted_terms: Iterable[str],
    true_terms: Iterable[str],
    ontology: GeneOntology | TermClosure,
    namespace: str,
    exclude_roots: bool = True,
) -> float:
    """F1 of one answer's term set against the truth, both propagated within `namespace` (roots left out
    by default, as in `evaluate_go`). An empty answer scores 0; a truth with no term in the namespace is an
    error (CAFA scores a protein only in namespaces where it has annotations)."""
    closure = TermClosure.of(ontology)
    namespace = resolve_namespace(namespace)

    def scored_terms(terms: Iterable[str]) -> set[str]:
        found = closure.propagate(terms, namespace)
        return {t for t in found if not closure.is_orphan(t)} if exclude_roots else found

    truth = scored_terms(true_terms)
    if not truth:
        raise ValueError(
            f"no ground-truth term in {namespace} (after leaving out the roots: {exclude_roots})"
        )
    predicted = scored_terms(predicted_terms)
    hits = len(predicted & truth)
    if not hits:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(truth)
    return 2 * precision * recall / (precision + recall)
