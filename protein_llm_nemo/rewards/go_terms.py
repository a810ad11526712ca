"""GO term prediction (tasks go_mf, go_bp, go_cc): set F1 over ontology-propagated terms, with a cap.

Parsing: GO ids matching ``GO:\\d{7}`` as a whole word (``GO:00036741`` and ``XGO:0003674`` are not ids),
deduplicated in order of first appearance. No id at all is a format failure (``no_answer``).

Scoring, in the record's namespace (``go_mf`` -> molecular_function ...):

- the first ``max_terms`` distinct ids are the prediction; each id beyond them is ignored for matching and
  counted as one false positive (``over_cap_ids``), so listing the ontology drives precision to ~0;
- ids unknown to the ontology (``unknown_ids``), obsolete (``obsolete_ids``) or of another namespace
  (``other_namespace_ids``) are dropped: they match nothing but still take a place under the cap;
- truth (``meta["all_go_ids"]``, else ``meta["go_ids"]``) and prediction are propagated to their
  same-namespace ancestors (is_a, part_of), roots excluded (`go_closure`);
- precision = TP / (|P| + over_cap_ids), recall = TP / |T|, f1 = 2PR / (P + R); both sets empty: f1 = 1.

The format bonus is paid when every listed id is a known, current term of the record's namespace and none
is over the cap. ``total = 0.9 * f1 + 0.1 * format``.

The cap is a fixed 30, not a multiple of the truth's size: a reference answer lists at most 12 terms (the GO
record builder's limit), so 30 leaves room for a more complete honest answer; a truth-sized cap would leak
the truth's size into the reward and punish a three-term answer for a one-term protein.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from protein_llm_nemo.data.go.ontology import ASPECTS, GeneOntology
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult
from protein_llm_nemo.rewards.go_closure import NamespaceClosure, closure_for
from protein_llm_nemo.rewards.registry import register_reward

GO_ID = re.compile(r"\bGO:\d{7}\b")
OBO_ENV = "PROTEIN_LLM_GO_OBO"
NAMESPACE_OF_TASK = {aspect.task: aspect.namespace for aspect in ASPECTS.values()}


@dataclass(frozen=True)
class GoRewardConfig(RewardConfig):
    """max_terms: predicted ids scored (see the module docstring); obo / ontology_dir: where the default
    ontology comes from when none is passed (else the ``PROTEIN_LLM_GO_OBO`` environment variable)."""

    max_terms: int = 30
    obo: str | None = None
    ontology_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_terms < 1:
            raise ValueError(f"max_terms must be at least 1, got {self.max_terms}")

    def load_ontology(self) -> GeneOntology:
        obo = self.obo or os.environ.get(OBO_ENV)
        if obo:
            return GeneOntology.from_obo(Path(obo))
        if self.ontology_dir:
            return GeneOntology.from_metastudent(Path(self.ontology_dir))
        raise ValueError(
            "GO rewards need the Gene Ontology: get_reward / configure_reward('go_mf', ontology=...), "
            f"GoRewardConfig(obo=... or ontology_dir=...), or {OBO_ENV}=<go.obo>"
        )


def parse_go_ids(answer: str) -> list[str]:
    """Distinct GO ids in order of first appearance."""
    return list(dict.fromkeys(GO_ID.findall(answer)))


def set_f1(
    predicted: set[str], truth: set[str], extra_false_positives: int = 0
) -> tuple[float, float, float]:
    """(precision, recall, f1); two empty sets agree perfectly."""
    if not predicted and not truth and not extra_false_positives:
        return 1.0, 1.0, 1.0
    hits = len(predicted & truth)
    precision = hits / (len(predicted) + extra_false_positives) if predicted or extra_false_positives else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return precision, recall, f1


@register_reward("go_mf", "go_bp", "go_cc")
class GoTermReward(Reward):
    def __init__(self, ontology: GeneOntology | None = None, config: GoRewardConfig | None = None):
        self.config: GoRewardConfig = config or GoRewardConfig()
        self.ontology = ontology if ontology is not None else self.config.load_ontology()
        self.closure: NamespaceClosure = closure_for(self.ontology)

    def _current(self, term: str) -> bool:
        return term in self.ontology.names and term not in self.ontology.obsolete

    @staticmethod
    def read_truth(record: ProteinRecord) -> tuple[str, list[str]]:
        """(the record's namespace, its true GO ids as listed)."""
        namespace = NAMESPACE_OF_TASK.get(record.task)
        if namespace is None:
            raise RewardInputError("task", f"record {record.id!r}: task {record.task!r} is not a GO task")
        ids = record.meta.get("all_go_ids") or record.meta.get("go_ids")
        if not ids or not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            raise RewardInputError(
                "meta.go_ids", f"record {record.id!r} ({record.task}) has no meta['all_go_ids'/'go_ids'] list"
            )
        return namespace, ids

    def _propagated_truth(self, ids: list[str], namespace: str) -> tuple[set[str], int]:
        """The propagated truth, and how many truth ids are not current terms of `namespace` here (another
        ontology release than the data's)."""
        kept = [t for t in ids if self._current(t) and self.closure.namespace(t) == namespace]
        return self.closure.propagate(kept), len(ids) - len(kept)

    def score_answer(self, record: ProteinRecord, answer: str) -> RewardResult:
        namespace, true_ids = self.read_truth(record)
        truth, truth_outside = self._propagated_truth(true_ids, namespace)
        ids = parse_go_ids(answer)
        if not ids:
            return RewardResult.failure("no_answer")
        listed, over_cap = ids[: self.config.max_terms], len(ids) - min(len(ids), self.config.max_terms)
        unknown = [t for t in listed if t not in self.ontology.names]
        obsolete = [t for t in listed if t in self.ontology.obsolete]
        valid = [t for t in listed if self._current(t)]
        in_namespace = [t for t in valid if self.closure.namespace(t) == namespace]
        predicted = self.closure.propagate(in_namespace)
        precision, recall, f1 = set_f1(predicted, truth, over_cap)
        clean = len(in_namespace) == len(listed) and not over_cap
        format_score = 1.0 if clean else 0.0
        components = {
            "format": format_score,
            "f1": f1,
            "precision": precision,
            "recall": recall,
            "listed_ids": float(len(ids)),
            "unknown_ids": float(len(unknown)),
            "obsolete_ids": float(len(obsolete)),
            "other_namespace_ids": float(len(valid) - len(in_namespace)),
            "over_cap_ids": float(over_cap),
            "predicted_terms": float(len(predicted)),
            "true_terms": float(len(truth)),
            "truth_ids_outside_ontology": float(truth_outside),
        }
        return RewardResult(self.config.total(f1, format_score), components, tuple(in_namespace), True)
