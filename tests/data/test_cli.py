import json
import shutil

import pytest

from protein_llm_nemo.cli import main
from protein_llm_nemo.data import ReasonCounter, read_jsonl

from .conftest import SEQ_A, SEQ_B


def test_convert_writes_records_and_report(tmp_path, fixtures, capsys):
    out = tmp_path / "go.jsonl"
    rc = main(
        [
            "data", "convert", "--source", "gaf", "--input", str(fixtures / "goa_human_sample.gaf"),
            "--option", f"fasta={fixtures / 'uniprot_sample.fasta'}", "--option", f"obo={fixtures / 'go_sample.obo'}",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    records = list(read_jsonl(out, ReasonCounter()))
    report = json.loads((tmp_path / "go.jsonl.report.json").read_text())
    assert report["written"] == len(records) == report["totals"]["kept"] > 0
    assert json.loads(capsys.readouterr().out)["written"] == len(records)


def test_converters_lists_names(capsys):
    assert main(["data", "converters"]) == 0
    assert "megascale" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")
def test_leakage_report_cli_fails_on_leak(tmp_path, capsys):
    (tmp_path / "train.fasta").write_text(f">a\n{SEQ_A}\n")
    (tmp_path / "test.fasta").write_text(f">b\n{SEQ_B}\n>a2\n{SEQ_A}\n")
    args = [
        "data",
        "leakage-report",
        "--train",
        str(tmp_path / "train.fasta"),
        "--eval",
        str(tmp_path / "test.fasta"),
    ]
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "leak.json"),
                "--fail-on-leak",
                "--sample",
                "1",
                "--tmp-dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    report = json.loads((tmp_path / "leak.json").read_text())
    assert (
        report["exact_overlaps"] == 1
        and report["evaluation_proteins"] == 2
        and report["audited_proteins"] == 1
    )
