"""Reports account for every item in one unit (``seen == kept + dropped``, per source and in total), include
what their readers dropped, and a counting inconsistency is an error, never a report."""

import json
import shutil

import pytest

from protein_llm_nemo.cli import main
from protein_llm_nemo.data import ProteinRecord, QualityConfig, QualityGate, write_jsonl
from protein_llm_nemo.data import converters as converter_registry
from protein_llm_nemo.data.converters import ConverterSpec

from .conftest import SEQ_A, SEQ_B


def _record(i: int, seq: str = SEQ_A, source: str = "s") -> ProteinRecord:
    return ProteinRecord(
        f"{source}{i}", [seq], "What does it do?", f"It binds ATP, case {i}.", "function", source
    )


def _with_bad_line(path, records) -> None:
    write_jsonl(records, path)
    with open(path, "a") as handle:
        handle.write("{not json\n")


def _fake_converter(monkeypatch, name: str, body) -> None:
    converter_registry.list_converters()  # load the real ones first
    monkeypatch.setitem(converter_registry._REGISTRY, name, ConverterSpec(name, body, "test"))


def test_convert_refuses_a_converter_that_loses_an_item(tmp_path, monkeypatch):
    def loses_one(path, counter):
        for i in range(3):
            counter.seen += 1
            if i == 1:
                continue  # neither kept nor dropped
            counter.keep()
            yield _record(i)

    _fake_converter(monkeypatch, "loses_one", loses_one)
    out = tmp_path / "out.jsonl"
    args = ["data", "convert", "--source", "loses_one", "--input", str(tmp_path), "--out", str(out)]
    with pytest.raises(AssertionError, match=r"conversion: 3 seen but 2 kept \+ 0 dropped"):
        main(args)
    assert list(tmp_path.iterdir()) == []  # no records, no report


def test_convert_refuses_records_emitted_but_not_counted(tmp_path, monkeypatch):
    def two_records_counted_as_one(path, counter):
        counter.seen += 1
        counter.keep()  # should be keep(2)
        yield _record(0)
        yield _record(1, SEQ_B)

    _fake_converter(monkeypatch, "miscounts", two_records_counted_as_one)
    out = tmp_path / "out.jsonl"
    base = ["data", "convert", "--source", "miscounts", "--input", str(tmp_path), "--out", str(out)]
    with pytest.raises(AssertionError, match="conversion emitted 1 records, the quality gates saw 2"):
        main(base)
    with pytest.raises(AssertionError, match="conversion emitted 1 records, 2 written"):
        main([*base, "--no-quality"])
    assert not out.exists()


def test_quality_gate_counts_changes_and_flags_per_source_too():
    gate = QualityGate(QualityConfig())
    records = [_record(0, SEQ_A.lower(), "a"), _record(1, source="b"), _record(2, SEQ_A[:10], "b")]
    records[1].response = "Homodimer"
    assert len(list(gate(records))) == 2
    report = gate.report()
    assert report["per_source"]["a"]["changed"] == {"normalised_sequence": 1}
    assert report["per_source"]["b"]["flagged"] == {"one_word_response": 1}
    assert report["per_source"]["b"]["emitted"] == 1 and report["totals"]["emitted"] == 2
    gate.check_counts()
    gate.per_source["b"].seen += 1
    with pytest.raises(AssertionError, match="source 'b'"):
        gate.check_counts()


def test_pack_stats_reports_what_it_read(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    _with_bad_line(path, [_record(i) for i in range(3)])
    assert main(["data", "pack-stats", "--input", str(path), "--max-tokens", "512"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read"]["seen"] == 4 and report["read"]["dropped"] == {"invalid_json": 1}
    assert report["formatting"]["seen"] == 3 and report["packing"]["kept"] == report["samples"] == 3


def test_mix_reports_reads_per_input_and_in_total(tmp_path):
    _with_bad_line(tmp_path / "a.jsonl", [_record(i, source="alpha") for i in range(4)])
    write_jsonl([_record(i, source="beta") for i in range(2)], tmp_path / "b.jsonl")
    args = ["data", "mix", "--input", str(tmp_path / "a.jsonl"), "--input", str(tmp_path / "b.jsonl")]
    assert main([*args, "--out", str(tmp_path / "mix.jsonl")]) == 0
    report = json.loads((tmp_path / "mix.jsonl.report.json").read_text())
    assert report["read_per_input"][str(tmp_path / "a.jsonl")]["dropped"] == {"invalid_json": 1}
    assert report["read"]["seen"] == 7 and report["read"]["kept"] == 6
    assert sum(s["records"] for s in report["sources"].values()) == report["read"]["kept"]


def test_eval_fastas_are_counted_and_keyed_apart(tmp_path):
    from protein_llm_nemo.data.leakage import read_eval_fastas

    (tmp_path / "a.fasta").write_text(f">x\n{SEQ_A}\n>empty\n")
    (tmp_path / "b.fasta").write_text(f">y\n{SEQ_B}\n")
    entries, counts = read_eval_fastas([str(tmp_path / "a.fasta"), str(tmp_path / "b.fasta")])
    assert entries == [("external:0", SEQ_A), ("external:1", SEQ_B)]  # one key per protein, across files
    assert counts[str(tmp_path / "a.fasta")]["dropped"] == {"empty_fasta_entry": 1}
    assert counts[str(tmp_path / "a.fasta")]["seen"] == 2


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")
def test_leakage_report_includes_what_was_read(tmp_path, capsys):
    _with_bad_line(tmp_path / "train.jsonl", [_record(0)])
    (tmp_path / "test.fasta").write_text(f">b\n{SEQ_B}\n>empty\n")
    args = [
        "data",
        "leakage-report",
        "--train",
        str(tmp_path / "train.jsonl"),
        "--eval",
        str(tmp_path / "test.fasta"),
    ]
    assert main([*args, "--tmp-dir", str(tmp_path), "--out", str(tmp_path / "leak.json")]) == 0
    report = json.loads((tmp_path / "leak.json").read_text())
    assert report["train_read"]["dropped"] == {"invalid_json": 1} and report["train_read"]["kept"] == 1
    assert report["evaluation_read"]["dropped"] == {"empty_fasta_entry": 1}
    assert report["evaluation_read"]["kept"] == report["evaluation_proteins"] == 1


def test_go_build_refuses_inconsistent_conversion_counts(tmp_path, monkeypatch):
    from protein_llm_nemo.data.go import build

    def convert(name, path, counter, **options):
        counter.seen += 2
        counter.keep()
        yield _record(0)

    monkeypatch.setattr(build, "convert", convert)
    assets = {"fasta": tmp_path / "x.fasta", "gaf": tmp_path / "x.gaf", "obo": tmp_path / "x.obo"}
    assets["gaf"].write_text("")
    with pytest.raises(AssertionError, match="conversion: 2 seen but 1 kept"):
        build.build_demo_go(assets, tmp_path / "demo")
    assert not (tmp_path / "demo").exists() or list((tmp_path / "demo").iterdir()) == []
