import json

from protein_llm_nemo.data import ProteinRecord, QualityConfig, QualityGate
from protein_llm_nemo.data.report import write_json_report

GOOD = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQ"


def rec(i, seq=GOOD, response="Binds ATP and hydrolyses it.", source="a", task="function", seqs=None):
    return ProteinRecord(
        id=str(i),
        sequences=seqs if seqs is not None else [seq],
        instruction="Describe.",
        response=response,
        task=task,
        source=source,
    )


def test_each_gate_counts_its_reason(tmp_path):
    records = [
        rec(0),
        rec(1, seq=GOOD.lower() + "*"),  # normalised, then a duplicate of 0
        rec(2, seq=GOOD[:40]),
        rec(3, seq=GOOD * 13),
        rec(4, seq=GOOD[:-1] + "1"),
        rec(5, seq=GOOD[:-1] + "X", response="Homodimer"),
        rec(6, response="   "),
        rec(7, seqs=[], source="b"),
        rec(8, seqs=[], task="multiple_choice", response="Option 2", source="b"),
        rec(9, seq=GOOD[:-1] + "U"),
        rec(10, seqs=[], task="protein_design", response=GOOD, source="b"),
    ]
    gate = QualityGate(QualityConfig())
    kept = list(gate(records))
    assert [r.id for r in kept] == ["0", "5", "8", "10"]
    assert kept[1].meta["quality_flags"] == ["one_word_response"]
    report = gate.report()
    totals = report["totals"]
    assert totals["seen"] == 11 and totals["kept"] == 4
    assert totals["dropped"] == {
        "empty_response": 1,
        "exact_duplicate": 1,
        "invalid_residue": 2,
        "no_sequence": 1,
        "too_long": 1,
        "too_short": 1,
    }
    assert totals["changed"] == {"normalised_sequence": 1}
    assert totals["flagged"] == {"one_word_response": 1}
    assert totals["kept"] + totals["dropped_total"] == totals["seen"]
    assert report["per_source"]["b"] == {
        "seen": 3,
        "kept": 2,
        "emitted": 2,
        "dropped_total": 1,
        "dropped": {"no_sequence": 1},
        "changed": {},
        "flagged": {},
    }
    path = write_json_report(report, tmp_path / "q.json")
    assert json.loads(path.read_text())["totals"]["kept"] == 4


def test_config_bounds_and_dropping_one_word():
    gate = QualityGate(QualityConfig(min_length=10, max_length=50, drop_one_word_response=True))
    assert gate.check(rec(0, seq=GOOD[:30], response="Monomer")) is None
    assert gate.counter.dropped == {"one_word_response": 1}
    assert gate.check(rec(1, seq=GOOD[:30])) is not None
    try:
        QualityConfig(min_length=10, max_length=5)
    except ValueError as exc:
        assert "length bounds" in str(exc)
    else:
        raise AssertionError("bad bounds accepted")
