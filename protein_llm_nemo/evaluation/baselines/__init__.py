"""Baselines a model is compared with: CAFA's naive and homology-transfer GO predictors, and the nearest
training protein's answer for text tasks."""

from protein_llm_nemo.evaluation.baselines.go import (
    GoAnnotations,
    homology_transfer_predictions,
    naive_predictions,
    naive_scores,
    read_go_annotations,
)
from protein_llm_nemo.evaluation.baselines.hits import Hit, HomologySearch, search_hits
from protein_llm_nemo.evaluation.baselines.nearest import (
    NearestAnswers,
    nearest_answers_from_files,
    nearest_training_answers,
)

__all__ = [
    "GoAnnotations",
    "Hit",
    "HomologySearch",
    "NearestAnswers",
    "homology_transfer_predictions",
    "naive_predictions",
    "naive_scores",
    "nearest_answers_from_files",
    "nearest_training_answers",
    "read_go_annotations",
    "search_hits",
]
