import json
import shutil
import subprocess

import pytest

from protein_llm_nemo.data import QualityConfig, ReasonCounter, read_jsonl
from protein_llm_nemo.data.go.build import GoBuildConfig, build_demo_go, build_metastudent_go

from .conftest import SEQ_A, SEQ_B


def test_demo_builder_on_real_format_assets(tmp_path, fixtures):
    assets = {
        "fasta": fixtures / "uniprot_sample.fasta",
        "gaf": fixtures / "goa_human_sample.gaf",
        "obo": fixtures / "go_sample.obo",
    }
    summary = build_demo_go(assets, tmp_path / "demo")
    records = list(read_jsonl(tmp_path / "demo" / "records.jsonl", ReasonCounter()))
    assert summary["records"] == len(records) > 0
    assert summary["unique_proteins"] == 4
    report = json.loads((tmp_path / "demo" / "quality_report.json").read_text())
    assert report["totals"]["kept"] == len(records)
    assert report["totals"]["kept"] + report["totals"]["dropped_total"] == report["totals"]["seen"]


@pytest.mark.skipif(shutil.which("makeblastdb") is None, reason="ncbi-blast+ not installed")
def test_metastudent_builder_counts_and_gates(tmp_path):
    root = tmp_path / "dataset_201401"
    for aspect in ("MFO", "CCO"):
        (root / aspect).mkdir(parents=True)
    (root / "nameMapping.txt").write_text("GO:0005524\tATP binding\nGO:0005886\tplasma membrane\n")
    (root / "MFO" / "goasp_annot.dat").write_text("P1\tGO:0005524\nP2\tGO:0005524\n")
    (root / "CCO" / "goasp_annot.dat").write_text("P1\tGO:0005886\n")
    for aspect, entries in {"MFO": [("P1", SEQ_A), ("P2", SEQ_B[:30])], "CCO": [("P1", SEQ_A)]}.items():
        fasta = tmp_path / f"{aspect}.fasta"
        fasta.write_text("".join(f">{acc}|x\n{seq}\n" for acc, seq in entries))
        out = root / aspect / "goasp.fasta"
        subprocess.run(
            ["makeblastdb", "-in", fasta, "-dbtype", "prot", "-out", out], check=True, capture_output=True
        )
    cfg = GoBuildConfig(out_dir=tmp_path / "out", dataset_dir=root, aspects=("MFO", "CCO"), progress=False)
    cfg.quality = QualityConfig(min_length=50)
    summary = build_metastudent_go(cfg)
    assert summary["per_task"] == {"go_mf": 1, "go_cc": 1}
    assert summary["unique_proteins"] == 1
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["totals"]["dropped"] == {"too_short": 1}


def test_metastudent_builder_names_missing_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install metastudent-data"):
        build_metastudent_go(GoBuildConfig(out_dir=tmp_path, dataset_dir=tmp_path / "none"))
