"""A crash is not a half output: records, splits, reports and indexed datasets appear whole, together with
their reports, or not at all (and an earlier output at the same path is left as it was)."""

import gzip
import json
import shutil

import pytest

from protein_llm_nemo.cli import main
from protein_llm_nemo.data import ProteinRecord, ReasonCounter, write_arrow, write_jsonl
from protein_llm_nemo.data.files import AtomicOutputs, DataFileError

from .conftest import SEQ_A


def _records(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("source broke")
        yield ProteinRecord(f"r{i}", [SEQ_A], "What is it?", f"Answer {i}.", "function", "s")


def _visible(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "out.jsonl.gz"
    assert write_jsonl(_records(3), path) == 3
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="source broke"):
        write_jsonl(_records(5, fail_at=2), path)
    assert path.read_bytes() == before and _visible(tmp_path) == ["out.jsonl.gz"]
    with pytest.raises(RuntimeError, match="source broke"):
        write_jsonl(_records(5, fail_at=2), tmp_path / "new.jsonl")
    assert _visible(tmp_path) == ["out.jsonl.gz"]
    with gzip.open(path, "rt") as handle:
        assert len(handle.readlines()) == 3


def test_arrow_folders_are_replaced_whole(tmp_path):
    assert write_arrow(_records(4), tmp_path / "ds") == 4
    with pytest.raises(Exception, match="source broke|generating the dataset"):  # `datasets` wraps it
        write_arrow(_records(6, fail_at=3), tmp_path / "ds")
    assert _visible(tmp_path) == ["ds"]
    assert write_arrow(_records(2), tmp_path / "ds") == 2  # a folder replaces a folder
    assert json.loads((tmp_path / "ds" / "state.json").read_text())["_data_files"]
    assert _visible(tmp_path) == ["ds"]


def test_outputs_of_a_group_appear_together_or_not_at_all(tmp_path):
    with pytest.raises(ValueError, match="late"), AtomicOutputs() as outputs:
        outputs.stage(tmp_path / "a.txt").write_text("a")
        outputs.stage(tmp_path / "b.txt").write_text("b")
        raise ValueError("late")
    assert _visible(tmp_path) == []
    with AtomicOutputs() as outputs:
        outputs.stage(tmp_path / "a.txt").write_text("a")
        outputs.stage(tmp_path / "sub" / "b.txt").write_text("b")
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "sub" / "b.txt").read_text() == "b"


def test_convert_failing_midway_writes_neither_records_nor_report(tmp_path):
    rows = "".join(
        f"p{i},MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEK,w,A{i}K,0.{i}\n" for i in range(2000)
    )
    source = tmp_path / "mega.csv.gz"
    with gzip.open(source, "wt") as handle:
        handle.write("name,aa_seq,WT_name,mut_type,ddG_ML\n" + rows)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "out" / "mega.jsonl"
    out.parent.mkdir()
    out.write_text("earlier output\n")
    with pytest.raises(SystemExit, match=r"mega\.csv\.gz: truncated or corrupt gzip data after line \d+"):
        main(["data", "convert", "--source", "megascale", "--input", str(source), "--out", str(out)])
    assert out.read_text() == "earlier output\n" and _visible(out.parent) == ["mega.jsonl"]


def test_mix_writes_records_and_report_together(tmp_path):
    write_jsonl(_records(5), tmp_path / "a.jsonl")
    (tmp_path / "blocker").write_text("a file where the report folder should be")
    args = ["data", "mix", "--input", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "mix.jsonl")]
    with pytest.raises(OSError):
        main([*args, "--report", str(tmp_path / "blocker" / "mix.report.json")])
    assert not (tmp_path / "mix.jsonl").exists()
    assert main(args) == 0
    assert (tmp_path / "mix.jsonl").is_file() and (tmp_path / "mix.jsonl.report.json").is_file()


def test_go_build_on_a_truncated_input_leaves_no_outputs(tmp_path, fixtures):
    from protein_llm_nemo.data.go.build import build_demo_go

    gaf = tmp_path / "goa.gaf.gz"
    text = (fixtures / "goa_human_sample.gaf").read_bytes()
    with gzip.open(gaf, "wb") as handle:
        handle.write(text * 40)
    data = gaf.read_bytes()
    gaf.write_bytes(data[: len(data) // 2])
    assets = {"fasta": fixtures / "uniprot_sample.fasta", "gaf": gaf, "obo": fixtures / "go_sample.obo"}
    with pytest.raises(DataFileError, match=r"goa\.gaf\.gz"):
        build_demo_go(assets, tmp_path / "demo")
    assert not (tmp_path / "demo").exists() or _visible(tmp_path / "demo") == []


def test_indexed_text_appears_with_its_report_or_not_at_all(tmp_path):
    from protein_llm_nemo.data.indexed import write_indexed_text
    from protein_llm_nemo.tokenizer import load_tokenizer

    def texts(fail_at=None):
        for i in range(4):
            if i == fail_at:
                raise RuntimeError("source broke")
            yield ProteinRecord(f"d{i}", [], "", f"Kinases move phosphate {i}.", "ssl_text", "s")

    tokenizer = load_tokenizer()
    with pytest.raises(RuntimeError, match="source broke"):
        write_indexed_text(texts(fail_at=2), tokenizer, tmp_path / "ssl" / "train")
    assert _visible(tmp_path / "ssl") == []
    read = ReasonCounter(seen=5, kept=4, emitted=4)
    read.drop("invalid_json")
    summary = write_indexed_text(texts(), tokenizer, tmp_path / "ssl" / "train", read=read)
    assert _visible(tmp_path / "ssl") == ["train.bin", "train.idx", "train.report.json"]
    stored = json.loads((tmp_path / "ssl" / "train.report.json").read_text())
    assert stored == summary and stored["read"]["dropped"] == {"invalid_json": 1}
    assert stored["records"]["seen"] == 4 and stored["documents"] == 4


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")
def test_split_failing_midway_writes_no_split_file(tmp_path, monkeypatch):
    from protein_llm_nemo.data import homology

    records = [ProteinRecord(f"r{i}", [SEQ_A[i:]], "q", "a", "function", "s") for i in range(6)]
    write_jsonl(records, tmp_path / "records.jsonl")
    calls = []

    def record_split(record, assignment, config):
        calls.append(record.id)
        if len(calls) == 4:
            raise RuntimeError("split broke")
        return "train"

    monkeypatch.setattr(homology, "record_split", record_split)
    config = homology.SplitConfig(purge=False, grow_eval_families=False, tmp_root=str(tmp_path))
    with pytest.raises(RuntimeError, match="split broke"):
        homology.split_file(tmp_path / "records.jsonl", tmp_path / "split", config)
    assert _visible(tmp_path / "split") == []
