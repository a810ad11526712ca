"""Text metrics: ROUGE-L and BLEU computed as Mol-Instructions and sacrebleu compute them, answer length."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from nltk.translate.bleu_score import sentence_bleu
from rouge_score import rouge_scorer

from protein_llm_nemo.evaluation.metrics.text import (
    corpus_bleu,
    rouge_l_scores,
    sentence_bleu_scores,
    text_metrics,
)

REFERENCE = "The cat sat on the mat"


def test_rouge_l_of_known_strings() -> None:
    # LCS "the cat on mat" = 4 tokens: precision 4/4, recall 4/6, F = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    scores = rouge_l_scores(["the cat on mat", "dogs bark"], [REFERENCE, REFERENCE])
    assert scores.tolist() == pytest.approx([0.8, 0.0])
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(REFERENCE, "the cat on mat")
    assert scores[0] == direct["rougeL"].fmeasure


def test_rouge_l_ignores_case_and_punctuation_but_does_not_stem() -> None:
    assert rouge_l_scores(["THE CAT, sat: on the mat!"], [REFERENCE]).tolist() == [1.0]
    # a stemming scorer would match "binds" with "binding"
    assert rouge_l_scores(["binds"], ["binding"]).tolist() == [0.0]


def test_sentence_bleu_of_known_strings() -> None:
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    scores = sentence_bleu_scores(["The CAT sat on a mat"], [REFERENCE])
    assert scores[0] == pytest.approx(expected)
    lowered = sentence_bleu([REFERENCE.lower().split()], ["the", "cat", "sat", "on", "a", "mat"])
    assert scores[0] == pytest.approx(lowered)


def test_sentence_bleu_without_smoothing_scores_short_answers_near_zero() -> None:
    # Mol-Instructions' convention: no 4-gram in a 2-word answer, so BLEU-4 is ~0 even for an exact match
    scores = sentence_bleu_scores(["the cat", ""], ["the cat", "a b c d"])
    assert scores[0] < 1e-100
    assert scores[1] == 0.0


def test_corpus_bleu_matches_sacrebleu_and_reports_its_signature() -> None:
    predictions = ["the cat sat on a mat", "a protein kinase that binds ATP", "membrane"]
    references = [
        REFERENCE,
        "A serine protein kinase that binds ATP and magnesium",
        "integral membrane protein",
    ]
    metric, signature = corpus_bleu(predictions, references)
    assert metric.value == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert metric.low <= metric.value <= metric.high and metric.n == 3
    assert "tok:13a" in signature and f"version:{sacrebleu.__version__}" in signature


def test_corpus_bleu_interval_recomputes_bleu_from_summed_statistics() -> None:
    # every resample of identical records is the same corpus, so the interval collapses onto the score
    metric, _ = corpus_bleu(["the cat sat on a mat"] * 4, [REFERENCE] * 4)
    assert metric.low == pytest.approx(metric.value) and metric.high == pytest.approx(metric.value)
    assert 0.0 < metric.value < 100.0
    perfect, _ = corpus_bleu([REFERENCE] * 3, [REFERENCE] * 3)
    assert perfect.value == pytest.approx(100.0)


def test_text_metrics_average_over_records_and_count_empty_answers() -> None:
    predictions = ["the cat on mat", None, "   ", "dogs bark loudly"]
    references = [REFERENCE] * 4
    metrics = text_metrics(predictions, references, n_resamples=200)
    assert metrics.rouge_l.value == pytest.approx(0.8 / 4)
    assert metrics.empty_answer_rate.value == 0.5
    assert metrics.format_compliance.value == 0.5
    assert metrics.mean_answer_words.value == pytest.approx((4 + 0 + 0 + 3) / 4)
    assert metrics.sentence_bleu.n == 4 and metrics.corpus_bleu.n == 4
    for metric in (metrics.rouge_l, metrics.sentence_bleu, metrics.corpus_bleu, metrics.mean_answer_words):
        assert metric.low <= metric.value <= metric.high
    # a JSON report needs plain values
    assert json.loads(json.dumps(metrics.to_dict()))["rouge_l"]["n"] == 4


def test_text_metrics_are_deterministic_for_a_seed() -> None:
    predictions = ["the cat on mat", "dogs bark", "a cat sat on a mat", "mat"]
    references = [REFERENCE] * 4
    assert text_metrics(predictions, references, seed=3) == text_metrics(predictions, references, seed=3)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a"], ["a", "b"], "one entry per record"),
        ([], [], "no records"),
        (["a"], ["  "], "reference 0 is empty"),
        (["a"], [None], "reference 0 is empty or not a string"),
    ],
)
def test_bad_input_is_refused(predictions: list, references: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        text_metrics(predictions, references)
