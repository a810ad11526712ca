"""The bootstrap recomputation of F-max / S-min equals CAFA-evaluator's values, weighted and unweighted, and
its intervals behave (hold the value, shrink with more proteins, repeat with the seed)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from protein_llm_nemo.evaluation.go_intervals import go_intervals
from protein_llm_nemo.evaluation.metrics.go import evaluate_go
from protein_llm_nemo.evaluation.metrics.information_accretion import information_accretion
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure

OBO = Path(__file__).parent / "fixtures" / "go_six_terms.obo"
TERMS = [f"GO:000000{i}" for i in range(2, 8)]  # G (GO:0000007) is F's alt_id: mapped, as cafaeval does


def _case(rng: random.Random, proteins: int):
    truth = {f"P{i}": rng.sample(TERMS, rng.randint(1, 3)) for i in range(proteins)}
    predictions = {
        protein: {term: round(rng.random(), 3) for term in rng.sample(TERMS, rng.randint(0, 4))}
        for protein in truth
        if rng.random() < 0.8
    }
    return truth, predictions


def test_recomputed_values_equal_cafaeval_on_random_cases():
    closure = TermClosure.from_obo(OBO)
    ia = information_accretion({"T1": [TERMS[2]], "T2": [TERMS[3]], "T3": [TERMS[0]]}, closure)
    rng = random.Random(0)
    for _ in range(25):
        truth, predictions = _case(rng, rng.randint(2, 12))
        reference = evaluate_go(predictions, truth, OBO, information_accretion=ia)["molecular_function"]
        got = go_intervals(predictions, truth, closure, "molecular_function", ia, n_resamples=50)
        assert got.proteins == reference.ground_truth_proteins
        assert got.f_max[0] == pytest.approx(reference.f_max, abs=1e-9)
        assert got.weighted_f_max[0] == pytest.approx(reference.weighted_f_max or 0.0, abs=1e-9)
        for mine, theirs in (
            (got.s_min[0], reference.s_min),
            (got.s_min_unweighted[0], reference.s_min_unweighted),
        ):
            if theirs is None:  # cafaeval: no threshold with a prediction
                assert math.isnan(mine)
            else:
                assert mine == pytest.approx(theirs, abs=1e-9)


def test_intervals_hold_the_value_shrink_with_proteins_and_repeat_with_the_seed():
    closure = TermClosure.from_obo(OBO)
    rng = random.Random(1)
    small_truth, small_predictions = _case(rng, 10)
    widths = []
    for truth, predictions in ((small_truth, small_predictions), _case(rng, 200)):
        result = go_intervals(predictions, truth, closure, "F", n_resamples=300)
        value, low, high = result.f_max
        assert low <= value <= high
        widths.append(high - low)
        assert result.weighted_f_max is None and result.s_min is None  # no IA given
    assert widths[1] < widths[0]
    again = go_intervals(small_predictions, small_truth, closure, "F", n_resamples=300)
    assert again.f_max == go_intervals(small_predictions, small_truth, closure, "F", n_resamples=300).f_max
    with pytest.raises(ValueError, match="no protein with ground truth"):
        go_intervals({}, {"P": ["GO:0005575"]}, closure, "F")  # a term the ontology lacks
