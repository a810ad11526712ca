"""GO metrics: hand-computed values on a six-term ontology, and the same files run through cafaeval directly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cafaeval.evaluation import cafa_eval

from protein_llm_nemo.data.go.ontology import GeneOntology
from protein_llm_nemo.evaluation.metrics.go import evaluate_go, f1_at_answer, term_confidences
from protein_llm_nemo.evaluation.metrics.information_accretion import (
    information_accretion,
    write_information_accretion,
)
from protein_llm_nemo.evaluation.metrics.obo import OboFileError, read_obo, write_metastudent_obo
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure

# The six-term ontology (fixtures/go_six_terms.obo, CAFA-evaluator's example layout): A is the root; B, C
# under A; D under B; E under B and part_of C; F under C (alt_id G). H is obsolete and must count for nothing.
SIX_TERMS_OBO = (Path(__file__).parent / "fixtures" / "go_six_terms.obo").read_text()
A = "GO:0003674"
B, C, D, E, F, G, H = (f"GO:000000{i}" for i in range(2, 9))

TRUTH = {"P1": [D], "P2": [E], "P3": [F]}
# P1: D .855 (right), F .355 (wrong); P2: B .655 (right, too general); P3: nothing; X: no ground truth.
# Scores sit between grid points: cafaeval's thresholds are np.arange values (0.35000000000000003 > 0.35).
PREDICTIONS = {"P1": {D: 0.855, F: 0.355}, "P2": {B: 0.655}, "X": {A: 0.9}}
# Training annotations for IA: T1 {D}, T2 {E}, T3 {B}; propagated + the artificial all-terms protein:
# n(A)=4 n(B)=4 n(C)=2 n(D)=2 n(E)=2 n(F)=1; n(B and C)=2 -> IA A 0, B 0, C 1, D 1, E 0, F 1.
TRAINING = {"T1": [D], "T2": [E], "T3": [B]}
EXPECTED_IA = {A: 0.0, B: 0.0, C: 1.0, D: 1.0, E: 0.0, F: 1.0}


@pytest.fixture
def obo(tmp_path: Path) -> Path:
    path = tmp_path / "six_terms.obo"
    path.write_text(SIX_TERMS_OBO)
    return path


def test_hand_computed_fmax_roots_excluded(obo: Path) -> None:
    # Roots excluded, truth P1 {D,B}, P2 {E,B,C}, P3 {F,C}.
    # t <= .355: P1 predicts {D,B,F,C} (P .5, R 1), P2 {B} (P 1, R 1/3): P .75, R 4/9 -> F .558
    # .355 < t <= .655: P1 {D,B} (1, 1), P2 {B} (1, 1/3): P 1, R 4/9 -> F 8/13 (the max, first at t = .36)
    # .655 < t <= .855: P1 only: P 1, R 1/3 -> F .5
    scores = evaluate_go(PREDICTIONS, TRUTH, obo)["molecular_function"]
    assert scores.f_max == pytest.approx(8 / 13)
    assert scores.threshold == pytest.approx(0.36)
    assert (scores.precision, scores.recall) == (pytest.approx(1.0), pytest.approx(4 / 9))
    assert scores.coverage == pytest.approx(2 / 3)
    assert scores.weighted_f_max is None and scores.s_min is None
    # unweighted S: RU 4/3 and MI 0 in the middle band beat (4/3, 2/3) and (5/3, 0)
    assert scores.s_min_unweighted == pytest.approx(4 / 3)
    by_threshold = {point.threshold: point for point in scores.curve}
    assert by_threshold[0.2].precision == pytest.approx(0.75)
    assert by_threshold[0.2].f == pytest.approx(2 * 0.75 * (4 / 9) / (0.75 + 4 / 9))
    assert by_threshold[0.8].recall == pytest.approx(1 / 3)
    assert max(by_threshold) == pytest.approx(0.85)  # no coverage above the highest score: no point
    assert (scores.ground_truth_proteins, scores.predicted_proteins, scores.unknown_proteins) == (3, 2, 1)
    assert scores.counts["predicted_proteins_without_ground_truth"] == 1


def test_hand_computed_fmax_with_roots(obo: Path) -> None:
    # With the root: P1 at .355 < t <= .655 predicts {D,B,A} (1, 1), P2 {B,A} of {E,B,C,A} (1, .5) -> F 2/3.
    scores = evaluate_go(PREDICTIONS, TRUTH, obo, exclude_roots=False)["molecular_function"]
    assert scores.f_max == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(0.5)


def test_information_accretion_hand_computed(obo: Path) -> None:
    ia = information_accretion(TRAINING, TermClosure.from_obo(obo))
    assert ia == pytest.approx(EXPECTED_IA)


def test_weighted_fmax_and_smin_hand_computed(obo: Path) -> None:
    # Weighted terms C, D, F (IA 1). t <= .355: only P1 has weighted predictions (D, F, C; tp D): P 1/3,
    # R (1 + 0 + 0)/3 -> F 1/3; .355 < t <= .855: P1 predicts D: P 1, R 1/3 -> F .5.
    # S: RU per protein (0, 1, 2) / 3 = 1 in every band; MI 2/3 at t <= .355, else 0 -> S-min 1.
    scores = evaluate_go(PREDICTIONS, TRUTH, obo, information_accretion=EXPECTED_IA)["molecular_function"]
    assert scores.weighted_f_max == pytest.approx(0.5)
    assert scores.weighted_threshold == pytest.approx(0.36)
    assert scores.s_min == pytest.approx(1.0)
    assert scores.f_max == pytest.approx(8 / 13)  # the unweighted numbers do not move


def test_child_prediction_counts_for_its_ancestors(obo: Path) -> None:
    # Predicting only the leaf E must score B and C too (propagation), giving P3's truth {F,C} a hit on C.
    scores = evaluate_go({"P3": {E: 0.5}}, {"P3": [F]}, obo)["molecular_function"]
    # predicted {E,B,C} vs truth {F,C}: P 1/3, R 1/2
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.recall == pytest.approx(1 / 2)


def test_alt_id_and_unknown_terms_are_mapped_or_counted(obo: Path) -> None:
    predictions = {"P3": {G: 0.5, "GO:9999999": 0.7, H: 0.9, C: 0.005}}
    truth = {"P3": [F, "GO:8888888"], "P4": ["GO:7777777"], "P5": []}
    scores = evaluate_go(predictions, truth, obo)["molecular_function"]
    assert scores.f_max == pytest.approx(1.0)  # G is F's alt_id: F and C predicted, truth {F, C}
    assert scores.counts["predicted_terms_not_in_ontology"] == 2  # unknown and obsolete
    assert scores.counts["ground_truth_terms_not_in_ontology"] == 2
    assert scores.counts["ground_truth_proteins_without_terms"] == 2  # P4 (unknown term) and P5 (none)
    assert scores.counts["predictions_below_lowest_threshold"] == 1
    assert scores.ground_truth_proteins == 1


def test_one_score_mapping_shared_by_proteins_counts_per_protein(obo: Path) -> None:
    shared = {D: 0.5, "GO:9999999": 0.5}  # how the naive baseline predicts: one mapping for everyone
    scores = evaluate_go({"P1": shared, "P2": shared, "X": shared}, TRUTH, obo)["molecular_function"]
    assert scores.counts["predicted_terms_not_in_ontology"] == 3
    assert (scores.predicted_proteins, scores.unknown_proteins) == (2, 1)
    # predicted {D,B}: P1 (truth {D,B}) precision 1, P2 (truth {E,B,C}) 1/2 -> mean 0.75
    assert scores.precision == pytest.approx(0.75)


def test_protein_without_predictions_lowers_recall_and_nothing_predicted_scores_zero(obo: Path) -> None:
    none_predicted = evaluate_go({}, TRUTH, obo)["molecular_function"]
    assert none_predicted.f_max == 0.0 and none_predicted.threshold is None and none_predicted.curve == []
    one_predicted = evaluate_go({"P1": {D: 0.9}}, TRUTH, obo)["molecular_function"]
    assert one_predicted.recall == pytest.approx(1 / 3)  # P2 and P3 have truth but no prediction
    assert one_predicted.precision == pytest.approx(1.0)  # precision over predicted proteins only


def test_scores_outside_unit_interval_are_rejected(obo: Path) -> None:
    with pytest.raises(ValueError, match="P1"):
        evaluate_go({"P1": {D: 1.5}}, TRUTH, obo)


def test_unparseable_obo_names_the_file(tmp_path: Path) -> None:
    not_obo = tmp_path / "not_an_ontology.obo"
    not_obo.write_text("this is not\nan ontology\n")
    with pytest.raises(OboFileError, match="not_an_ontology.obo"):
        evaluate_go({"P1": {D: 0.5}}, TRUTH, not_obo)
    binary = tmp_path / "binary.obo"
    binary.write_bytes(b"\xff\xfe\x00\x81[Term]\n")
    with pytest.raises(OboFileError, match="binary.obo"):
        evaluate_go({"P1": {D: 0.5}}, TRUTH, binary)
    cyclic = tmp_path / "cyclic.obo"
    cyclic.write_text(
        SIX_TERMS_OBO.replace("name: molecular_function\nnamespace", f"name: x\nis_a: {D}\nnamespace")
    )
    with pytest.raises(OboFileError, match="cyclic.obo"):
        evaluate_go({"P1": {D: 0.5}}, TRUTH, cyclic)


def _cafaeval_direct(obo: Path, predictions: dict, truth: dict, tmp: Path, ia: dict | None, no_orphans: bool):
    """The same inputs written by hand in CAFA format and given to cafaeval on the full ontology."""
    (tmp / "pred").mkdir(parents=True)
    with open(tmp / "pred" / "p.tsv", "w") as handle:
        for protein, term_scores in predictions.items():
            for term, score in term_scores.items():
                handle.write(f"{protein}\t{term}\t{score!r}\n")
    with open(tmp / "gt.tsv", "w") as handle:
        for protein, terms in truth.items():
            for term in terms:
                handle.write(f"{protein}\t{term}\n")
    ia_path = None if ia is None else str(write_information_accretion(ia, tmp / "ia.tsv"))
    return cafa_eval(str(obo), str(tmp / "pred"), str(tmp / "gt.tsv"), ia=ia_path, no_orphans=no_orphans)


def _compare(ours, table, best, namespace: str) -> float:
    """Largest absolute difference over F-max, its threshold / P / R / coverage, weighted F-max, S-min, curve."""
    f = best["f"].xs(namespace, level="ns").reset_index().iloc[0]
    rows = table.xs(namespace, level="ns").reset_index().sort_values("tau")
    pairs = [
        (ours.f_max, f["f"]),
        (ours.threshold, f["tau"]),
        (ours.precision, f["pr"]),
        (ours.recall, f["rc"]),
        (ours.coverage, f["cov"]),
        (ours.s_min_unweighted, rows["s"].min()),
    ]
    if "f_w" in best:
        fw = best["f_w"].xs(namespace, level="ns").reset_index().iloc[0]
        pairs += [(ours.weighted_f_max, fw["f_w"]), (ours.weighted_threshold, fw["tau"])]
        pairs += [(ours.s_min, rows["s_w"].min())]
    assert len(ours.curve) == len(rows)
    for point, row in zip(ours.curve, rows.itertuples(), strict=True):
        pairs += [(point.threshold, row.tau), (point.precision, row.pr), (point.recall, row.rc)]
        pairs += [(point.f, row.f), (point.coverage, row.cov)]
    return max(abs(float(a) - float(b)) for a, b in pairs)


@pytest.mark.parametrize("exclude_roots", [True, False])
def test_matches_cafaeval_direct_on_six_terms(obo: Path, tmp_path: Path, exclude_roots: bool) -> None:
    ours = evaluate_go(
        PREDICTIONS, TRUTH, obo, information_accretion=EXPECTED_IA, exclude_roots=exclude_roots
    )
    table, best = _cafaeval_direct(obo, PREDICTIONS, TRUTH, tmp_path / "direct", EXPECTED_IA, exclude_roots)
    assert _compare(ours["molecular_function"], table, best, "molecular_function") < 1e-6


def _random_ontology(rng: random.Random, path: Path) -> list[str]:
    """Three namespaces of 40 terms, each term with 1-3 earlier parents (some part_of), some alt_ids."""
    stanzas, ids = [], []
    for namespace, root in (
        ("molecular_function", 1000),
        ("biological_process", 2000),
        ("cellular_component", 3000),
    ):
        names = [f"GO:{root + i:07d}" for i in range(40)]
        for i, term in enumerate(names):
            lines = [f"[Term]\nid: {term}\nname: t{term}\nnamespace: {namespace}"]
            if i and rng.random() < 0.2:
                lines.append(f"alt_id: GO:{root + 500 + i:07d}")
            for parent in rng.sample(names[:i], min(i, rng.randint(1, 3))):
                relation = "relationship: part_of" if rng.random() < 0.2 else "is_a:"
                lines.append(f"{relation} {parent} ! p")
            stanzas.append("\n".join(lines))
        ids += names
    path.write_text("format-version: 1.2\n\n" + "\n\n".join(stanzas) + "\n")
    return ids


def test_matches_cafaeval_direct_on_random_ontology(tmp_path: Path) -> None:
    """Pruning the ontology to the touched terms, mapping ids and dropping sub-threshold scores change no
    number: 60 proteins, three namespaces, IA from 100 training proteins, against cafaeval on the full file."""
    rng = random.Random(7)
    obo = tmp_path / "random.obo"
    ids = _random_ontology(rng, obo)
    truth = {f"Q{i}": rng.sample(ids, rng.randint(1, 4)) for i in range(60)}
    predictions = {
        f"Q{i}": {t: round(rng.random(), 3) for t in rng.sample(ids, rng.randint(0, 12))} for i in range(70)
    }
    training = {f"T{i}": rng.sample(ids, rng.randint(1, 5)) for i in range(100)}
    ia = information_accretion(training, TermClosure.from_obo(obo))
    assert all(v >= 0 for v in ia.values()) and any(v > 0 for v in ia.values())
    for exclude_roots in (True, False):
        ours = evaluate_go(predictions, truth, obo, information_accretion=ia, exclude_roots=exclude_roots)
        table, best = _cafaeval_direct(
            obo, predictions, truth, tmp_path / f"direct{exclude_roots}", ia, exclude_roots
        )
        assert sorted(ours) == ["biological_process", "cellular_component", "molecular_function"]
        for namespace, scores in ours.items():
            assert scores.f_max > 0
            assert _compare(scores, table, best, namespace) < 1e-9


def test_term_confidences_frequencies_and_propagation(obo: Path) -> None:
    samples = [{D}, {E}, {D, F}]
    assert term_confidences(samples) == pytest.approx({D: 2 / 3, E: 1 / 3, F: 1 / 3})
    propagated = term_confidences(samples, TermClosure.from_obo(obo), "molecular_function")
    # B is named by no sample but implied by all three (D, E, D): confidence 1, not max(2/3, 1/3)
    assert propagated[B] == pytest.approx(1.0)
    assert propagated[C] == pytest.approx(2 / 3)  # E (part_of C) and F
    assert term_confidences([]) == {}


def test_f1_at_answer_after_propagation(obo: Path) -> None:
    closure = TermClosure.from_obo(obo)
    # predicted {D,B} vs truth {E,B,C} (roots left out): P 1/2, R 1/3 -> F1 0.4
    assert f1_at_answer([D], [E], closure, "MF") == pytest.approx(0.4)
    # with the root: {D,B,A} vs {E,B,C,A}: P 2/3, R 1/2 -> F1 4/7
    assert f1_at_answer([D], [E], closure, "molecular_function", exclude_roots=False) == pytest.approx(4 / 7)
    assert f1_at_answer([G], [F], closure, "MFO") == pytest.approx(1.0)  # alt_id
    assert f1_at_answer([], [F], closure, "MF") == 0.0
    with pytest.raises(ValueError, match="no ground-truth term"):
        f1_at_answer([D], [A], closure, "MF")


def test_f1_at_answer_accepts_gene_ontology(obo: Path) -> None:
    assert f1_at_answer([D], [E], GeneOntology.from_obo(obo), "F") == pytest.approx(0.4)


def test_read_obo_keeps_what_cafaeval_reads(obo: Path) -> None:
    terms = read_obo(obo)
    assert set(terms) == {A, B, C, D, E, F, H}  # the Typedef is not a term
    assert terms[E].parents == (B, C) and terms[F].alt_ids == (G,) and terms[H].obsolete
    assert terms[D].stanza.startswith(f"[Term]\nid: {D}\n")


def test_metastudent_graph_columns_are_parent_then_child(tmp_path: Path) -> None:
    """goGraph.txt lists parent TAB child (GO:0005524 ATP binding is_a GO:0032559 in the 2014 release)."""
    (tmp_path / "nameMapping.txt").write_text(
        "GO:0003674\tmolecular_function\nGO:0032559\tadenyl ribonucleotide binding\nGO:0005524\tATP binding\n"
        "GO:0000005\tribosomal chaperone activity\n"
    )
    (tmp_path / "goGraph.txt").write_text(
        "GO:0003674\tGO:0032559\t1\tis_a\nGO:0032559\tGO:0005524\t1\tis_a\n"
        "obsolete_molecular_function\tGO:0000005\t1\tis_a\nGO:0032559\tGO:0005524\t1\tregulates\n"
    )
    summary = write_metastudent_obo(tmp_path, tmp_path / "go.obo")
    terms = read_obo(tmp_path / "go.obo")
    assert terms["GO:0005524"].parents == ("GO:0032559",)
    assert terms["GO:0032559"].parents == ("GO:0003674",)
    assert terms["GO:0005524"].namespace == "molecular_function"
    assert summary.terms == 3 and summary.skipped_without_namespace == 1  # the obsolete term
