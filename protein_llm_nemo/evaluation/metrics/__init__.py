"""Metrics: GO-term prediction through CAFA-evaluator, with the ontology and weighting helpers it needs."""

from protein_llm_nemo.evaluation.metrics.go import (
    CurvePoint,
    GOScores,
    evaluate_go,
    f1_at_answer,
    term_confidences,
)
from protein_llm_nemo.evaluation.metrics.information_accretion import information_accretion
from protein_llm_nemo.evaluation.metrics.obo import OboFileError, read_obo, write_metastudent_obo
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure

__all__ = [
    "CurvePoint",
    "GOScores",
    "OboFileError",
    "TermClosure",
    "evaluate_go",
    "f1_at_answer",
    "information_accretion",
    "read_obo",
    "term_confidences",
    "write_metastudent_obo",
]
