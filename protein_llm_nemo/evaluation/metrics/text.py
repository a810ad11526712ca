"""Free-text answers (function descriptions, Mol-Instructions protein tasks): ROUGE-L, BLEU, answer length.

Conventions, chosen to reproduce the numbers the field reports:

- ROUGE-L: mean over records of `rouge_score`'s ROUGE-L F-measure with its default tokenizer (lower-cases,
  keeps [a-z0-9] runs) and no stemming. Mol-Instructions' protein evaluation
  (zjunlp/Mol-Instructions, evaluation/protein/eval.py) calls `evaluate.load("rouge")`, whose defaults are
  exactly these; it reports the median of 1000 bootstrap means (`BootstrapAggregator().mid`), which equals
  the plain mean reported here up to resampling noise. `evaluate.load` downloads a script, so the scorer is
  called directly.
- Sentence BLEU: mean over records of NLTK's `sentence_bleu` (BLEU-4, uniform weights, no smoothing) on
  lower-cased whitespace tokens, as zjunlp/Mol-Instructions, evaluation/biotext/open_question_bleu.py does.
  Without smoothing an answer sharing no 4-gram with its reference scores ~0 (NLTK returns ~1e-155 rather
  than 0), so short answers score ~0 whatever their words; 0-1 scale.
- Corpus BLEU: `sacrebleu` with its defaults (13a tokenizer, case-sensitive, exp smoothing), 0-100 scale,
  with its signature string so the number can be reproduced.

An answer that is None (nothing extracted from the completion) is scored as the empty string.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protein_llm_nemo.evaluation.metrics.answers import check_paired, mean_answer_words
from protein_llm_nemo.evaluation.metrics.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    Metric,
    bootstrap_ci,
    metric_from_values,
)
from protein_llm_nemo.optional import optional_import

__all__ = [
    "TextMetrics",
    "corpus_bleu",
    "rouge_l_scores",
    "sentence_bleu_scores",
    "text_metrics",
]

_PURPOSE = "text metrics (ROUGE-L, BLEU)"


@dataclass(frozen=True)
class TextMetrics:
    rouge_l: Metric  # mean ROUGE-L F-measure, 0-1
    sentence_bleu: Metric  # mean NLTK sentence BLEU-4 (Mol-Instructions' convention), 0-1
    corpus_bleu: Metric  # sacrebleu corpus BLEU, 0-100
    corpus_bleu_signature: str
    mean_answer_words: Metric
    empty_answer_rate: Metric
    format_compliance: Metric  # fraction of non-empty answers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _answers(predictions: Sequence[str | None], references: Sequence[str]) -> list[str]:
    """Predictions as strings (None -> ""); every reference must hold text."""
    check_paired("text metrics", predictions=predictions, references=references)
    for index, reference in enumerate(references):
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError(f"text metrics: reference {index} is empty or not a string: {reference!r}")
    return ["" if prediction is None else prediction for prediction in predictions]


@cache
def _rouge_l_scorer() -> Any:
    with optional_import(_PURPOSE, "train"):
        from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_scores(predictions: Sequence[str | None], references: Sequence[str]) -> NDArray[np.float64]:
    """Per-record ROUGE-L F-measure (rouge_score, no stemming)."""
    answers = _answers(predictions, references)
    scorer = _rouge_l_scorer()
    # rouge_score's argument order is (target, prediction)
    return np.array(
        [scorer.score(ref, ans)["rougeL"].fmeasure for ref, ans in zip(references, answers, strict=True)]
    )


def sentence_bleu_scores(predictions: Sequence[str | None], references: Sequence[str]) -> NDArray[np.float64]:
    """Per-record NLTK sentence BLEU-4 on lower-cased whitespace tokens, without smoothing."""
    answers = _answers(predictions, references)
    with optional_import(_PURPOSE, "train"):
        from nltk.translate.bleu_score import sentence_bleu
    scores = []
    with warnings.catch_warnings():
        # NLTK warns for every answer lacking some n-gram overlap; that is the convention, not news
        warnings.simplefilter("ignore", UserWarning)
        for reference, answer in zip(references, answers, strict=True):
            scores.append(float(sentence_bleu([reference.lower().split()], answer.lower().split())))
    return np.array(scores, dtype=np.float64)


def corpus_bleu(
    predictions: Sequence[str | None],
    references: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> tuple[Metric, str]:
    """sacrebleu corpus BLEU (0-100) with a bootstrap interval over records, and sacrebleu's signature.

    Corpus BLEU is not a mean of per-record scores: each resample sums the records' n-gram match counts and
    lengths (sacrebleu's sufficient statistics) and recomputes BLEU from the sums.
    """
    answers = _answers(predictions, references)
    with optional_import(_PURPOSE, "train"):
        from sacrebleu.metrics import BLEU
    bleu = BLEU()
    score = bleu.corpus_score(answers, [list(references)])
    # per-record [hyp_len, ref_len, correct_1..4, total_1..4]; sacrebleu's own significance tests use these
    statistics = np.asarray(bleu._extract_corpus_statistics(answers, [list(references)]), dtype=np.float64)

    def resampled_bleu(samples: NDArray[np.float64]) -> NDArray[np.float64]:
        sums = samples.sum(axis=1)
        return np.array([bleu._compute_score_from_stats(row.tolist()).score for row in sums])

    low, high = bootstrap_ci(statistics, resampled_bleu, n_resamples, seed, level)
    return Metric(float(score.score), low, high, len(answers)), str(bleu.get_signature())


def text_metrics(
    predictions: Sequence[str | None],
    references: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> TextMetrics:
    """All text metrics of one task; intervals are percentile bootstraps over records."""
    answers = _answers(predictions, references)
    resampling = {"n_resamples": n_resamples, "seed": seed, "level": level}
    empty = [not answer.strip() for answer in answers]
    bleu, signature = corpus_bleu(answers, references, **resampling)
    return TextMetrics(
        rouge_l=metric_from_values(rouge_l_scores(answers, references), **resampling),
        sentence_bleu=metric_from_values(sentence_bleu_scores(answers, references), **resampling),
        corpus_bleu=bleu,
        corpus_bleu_signature=signature,
        mean_answer_words=mean_answer_words(answers, **resampling),
        empty_answer_rate=metric_from_values(empty, **resampling),
        format_compliance=metric_from_values([not is_empty for is_empty in empty], **resampling),
    )
