"""GO baselines (naive, homology transfer) and the nearest-answer text baseline, on real Swiss-Prot sequences
with hand-checked expectations; mmseqs2 does the searching."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.storage import write_jsonl
from protein_llm_nemo.evaluation.baselines.go import (
    homology_transfer_predictions,
    naive_predictions,
    naive_scores,
    read_go_annotations,
)
from protein_llm_nemo.evaluation.baselines.hits import Hit, HomologySearch, search_hits
from protein_llm_nemo.evaluation.baselines.nearest import nearest_answers_from_files, nearest_training_answers
from protein_llm_nemo.evaluation.metrics.go import evaluate_go
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure

needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")

OBO = Path(__file__).parent / "fixtures" / "go_six_terms.obo"
A = "GO:0003674"
B, C, D, E, F = (f"GO:000000{i}" for i in range(2, 7))  # E is_a B and part_of C; F is_a C; D is_a B

# Swiss-Prot: olfactory receptors 52M1 (Q8NGK5) and 5D13 (Q8NGL4), paralogs at ~30% identity; an
# immunoglobulin lambda variable region (A0A075B6H9); the disordered MINAR2 (P59773), homologous to none.
OR52M1 = (
    "MLTFHNVCSVPSSFWLTGIPGLESLHVWLSIPFGSMYLVAVVGNVTILAVVKIERSLHQPMYFFLCMLAAIDLVLSTSTIPKLLGIFWFGACDIGLDACLGQ"
    "MFLIHCFATVESGIFLAMAFDRYVAICNPLRHSMVLTYTVVGRLGLVSLLRGVLYIGPLPLMIRLRLPLYKTHVISHSYCEHMAVVALTCGDSRVNNVYGL"
    "SIGFLVLILDSVAIAASYVMIFRAVMGLATPEARLKTLGTCASHLCAILIFYVPIAVSSLIHRFGQCVPPPVHTLLANFYLLIPPILNPIVYAVRTKQIRES"
    "LLQIPRIEMKIR"
)
OR5D13 = (
    "MMASERNQSSTPTFILLGFSEYPEIQVPLFLVFLFVYTVTVVGNLGMIIIIRLNSKLHTIMCFFLSHLSLTDFCFSTVVTPKLLENLVVEYRTISFSGCIMQ"
    "FCFACIFGVTETFMLAAMAYDRFVAVCKPLLYTTIMSQKLCALLVAGSYTWGIVCSLILTYFLLDLSFCESTFINNFICDHSVIVSASYSDPYISQRLCFII"
    "AIFNEVSSLIIILTSYMLIFTTIMKMRSASGRQKTFSTCASHLTAITIFHGTILFLYCVPNPKTSSLIVTVASVFYTVAIPMLNPLIYSLRNKDINNMFEKLV"
    "VTKLIYH"
)
IGLV4_69 = (
    "MAWTPLLFLTLLLHCTGSLSQLVLTQSPSASASLGASVKLTCTLSSGHSSYAIAWHQQQPEKGPRYLMKLNSDGSHSKGDGIPDRFSGSSSGAERYLTISS"
    "LQSEDEADYYCQTWGTGI"
)
MINAR2 = (
    "MDLSVLPNNNHPDKFLQLDVKSLTRSSALLQASLVRFPGGNYPAAQHWQNLVYSQREKKNIAAQRIRGSSADSLVTADSPPPSMSSVMKNNPLYGDLSLEEAM"
    "EERKKNPSWTIEEYDKHSLHTNLSGHLKENPNDLRFWLGDMYTPGFDTLLKKEEKQEKHSKFCRMGLILLVVISILVTIVTIITFFT"
)
OR52M1_VARIANT = OR52M1[:100] + "A" + OR52M1[101:200] + "W" + OR52M1[201:]  # two substitutions

TRAINING_TERMS = {"OR52M1": {D}, "OR5D13": {E}, "IGLV4_69": {F}}
TRAINING_SEQUENCES = {"OR52M1": OR52M1, "OR5D13": OR5D13, "IGLV4_69": IGLV4_69}
TEST_SEQUENCES = {"Q_or": OR52M1_VARIANT, "Q_igl": IGLV4_69, "Q_none": MINAR2}


@pytest.fixture(scope="module")
def closure() -> TermClosure:
    return TermClosure.from_obo(OBO)


@pytest.fixture(scope="module")
def hits() -> dict[str, list[Hit]]:
    if shutil.which("mmseqs") is None:
        pytest.skip("mmseqs2 not installed")
    return search_hits(TEST_SEQUENCES, TRAINING_SEQUENCES, HomologySearch(threads=1))


def test_naive_scores_are_propagated_training_frequencies(closure: TermClosure) -> None:
    # propagated: {D,B,A}, {E,B,C,A}, {F,C,A}
    expected = {A: 1.0, B: 2 / 3, C: 2 / 3, D: 1 / 3, E: 1 / 3, F: 1 / 3}
    assert naive_scores(TRAINING_TERMS, closure, "MF") == pytest.approx(expected)
    predictions = naive_predictions(TRAINING_TERMS, ["Q1", "Q2"], closure, "molecular_function")
    assert predictions["Q1"] == predictions["Q2"] == pytest.approx(expected)
    assert naive_scores(TRAINING_TERMS, closure, "biological_process") == {}  # nobody annotated there


@needs_mmseqs
def test_identical_protein_transfers_its_terms_with_score_one(hits, closure: TermClosure) -> None:
    assert [hit.target for hit in hits["Q_igl"]] == ["IGLV4_69"]
    predicted = homology_transfer_predictions(hits, TRAINING_TERMS, closure, "MF")
    assert predicted["Q_igl"] == {A: 1.0, C: 1.0, F: 1.0}


@needs_mmseqs
def test_two_hits_split_the_score_by_bitscore(hits, closure: TermClosure) -> None:
    own, paralog = hits["Q_or"]
    assert (own.target, paralog.target) == ("OR52M1", "OR5D13")
    assert own.bits > 3 * paralog.bits > 0  # 99% vs ~30% identity
    total = own.bits + paralog.bits
    predicted = homology_transfer_predictions(hits, TRAINING_TERMS, closure, "MF")["Q_or"]
    assert predicted == pytest.approx(
        {A: 1.0, B: 1.0, D: own.bits / total, E: paralog.bits / total, C: paralog.bits / total}
    )


@needs_mmseqs
def test_protein_without_hits_gets_no_prediction_but_counts_in_recall(hits, closure: TermClosure) -> None:
    predicted = homology_transfer_predictions(hits, TRAINING_TERMS, closure, "MF")
    assert "Q_none" not in hits and "Q_none" not in predicted
    truth = {"Q_or": [D], "Q_igl": [F], "Q_none": [E]}
    scores = evaluate_go(predicted, truth, OBO)["molecular_function"]
    # at the F-max threshold (just above the paralog's share) Q_or predicts {D,B} = its truth and Q_igl
    # {F,C}: precision 1, recall 2/3 (Q_none has nothing)
    assert scores.recall == pytest.approx(2 / 3) and scores.precision == pytest.approx(1.0)
    assert scores.predicted_proteins == 2 and scores.ground_truth_proteins == 3


@needs_mmseqs
def test_hits_on_proteins_unannotated_in_the_namespace_are_left_out(hits, closure: TermClosure) -> None:
    only_own = {"OR52M1": {D}, "IGLV4_69": {F}}  # the paralog has no molecular-function annotation
    predicted = homology_transfer_predictions(hits, only_own, closure, "MF")
    assert predicted["Q_or"] == {A: 1.0, B: 1.0, D: 1.0}


def _record(record_id: str, sequences: list[str], task: str, response: str, **meta) -> ProteinRecord:
    return ProteinRecord(record_id, sequences, "Q?", response, task, "test", dict(meta))


def test_read_go_annotations_counts_what_it_skips(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    records = [
        _record("goasp:OR52M1:go_mf", [OR52M1], "go_mf", "r", accession="OR52M1", all_go_ids=[D], go_ids=[D]),
        _record("goasp:OR52M1:go_bp", [OR52M1], "go_bp", "r", accession="OR52M1", all_go_ids=["GO:0007608"]),
        _record("goasp:IGL:go_mf", [IGLV4_69], "go_mf", "r", accession="IGLV4_69", go_ids=[F]),
        _record("fn:1", [MINAR2], "function", "Binds NOTCH2."),
        _record("goasp:X:go_cc", [MINAR2], "go_cc", "r", accession="X"),
    ]
    write_jsonl(records, path)
    with open(path, "a") as handle:
        handle.write("not json\n")
    annotations = read_go_annotations(path)
    assert annotations.proteins("MF") == {"OR52M1": {D}, "IGLV4_69": {F}}
    assert annotations.proteins("biological_process") == {"OR52M1": {"GO:0007608"}}
    assert annotations.sequences == {"OR52M1": OR52M1, "IGLV4_69": IGLV4_69}
    assert annotations.skipped == {"not_a_go_task": 1, "no_go_ids": 1}
    assert annotations.read.dropped == {"invalid_json": 1}


@needs_mmseqs
def test_nearest_training_answer_of_the_same_task(tmp_path: Path) -> None:
    training = [
        _record("tr:or52m1:fn", [OR52M1], "function", "Odorant receptor."),
        _record(
            "tr:or5d13:loc", [OR5D13], "subcellular_location", "Cell membrane; multi-pass membrane protein."
        ),
        _record("tr:or5d13:fn", [OR5D13], "function", "Odorant receptor (paralog)."),
        _record(
            "tr:igl:fn",
            [IGLV4_69],
            "function",
            "V region of the variable domain of immunoglobulin light chains.",
        ),
    ]
    evaluation = [
        _record("ev:or:fn", [OR52M1_VARIANT], "function", "?"),  # nearest: OR52M1 itself
        _record("ev:or:loc", [OR52M1_VARIANT], "subcellular_location", "?"),  # OR52M1 has no such record
        _record("ev:none:fn", [MINAR2], "function", "?"),  # no homolog
        _record("ev:pair", [OR52M1, IGLV4_69], "function", "?"),  # two proteins: not this baseline's
    ]
    result = nearest_training_answers(training, evaluation, HomologySearch(threads=1))
    assert result.answers == {
        "ev:or:fn": "Odorant receptor.",
        "ev:or:loc": "Cell membrane; multi-pass membrane protein.",
        "ev:none:fn": None,
        "ev:pair": None,
    }
    assert result.neighbours["ev:or:fn"].training_record == "tr:or52m1:fn"
    assert result.neighbours["ev:or:loc"].training_record == "tr:or5d13:loc"
    assert result.neighbours["ev:or:fn"].bits > result.neighbours["ev:or:loc"].bits
    assert result.counts == {"answered": 2, "no_hit_with_same_task": 1, "not_one_protein": 1}

    write_jsonl(training, tmp_path / "train.jsonl")
    write_jsonl(evaluation, tmp_path / "test.jsonl")
    from_files, read = nearest_answers_from_files(
        tmp_path / "train.jsonl", tmp_path / "test.jsonl", HomologySearch(threads=1), tasks={"function"}
    )
    assert set(from_files.answers) == {"ev:or:fn", "ev:none:fn", "ev:pair"}
    assert from_files.answers["ev:or:fn"] == "Odorant receptor."
    assert read["training"].kept == 4 and read["evaluation"].kept == 4
