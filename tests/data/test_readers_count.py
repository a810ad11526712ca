"""Every reader counts, and a bad byte is a counted skip or an error naming the file and position (never a bare
UnicodeDecodeError / EOFError, never a silent zero)."""

import gzip
import json

import pytest

from protein_llm_nemo.data import ProteinRecord, ReasonCounter, read_jsonl, read_records, write_jsonl
from protein_llm_nemo.data.converters import convert
from protein_llm_nemo.data.converters._common import load_json_items, read_fasta
from protein_llm_nemo.data.files import DataFileError, open_text
from protein_llm_nemo.data.packing import best_fit_decreasing

from .conftest import SEQ_A, SEQ_B


def _records(n: int) -> list[ProteinRecord]:
    return [ProteinRecord(f"r{i}", [SEQ_A], "What is it?", f"Answer {i}.", "function", "s") for i in range(n)]


def _line(i: int) -> bytes:
    return json.dumps(_records(i + 1)[i].to_dict()).encode() + b"\n"


# -- item 9: reading without a counter is not possible ------------------------------------------------------
@pytest.mark.parametrize("reader", [read_jsonl, read_records, read_fasta, load_json_items])
def test_every_reader_requires_its_counter(reader, tmp_path):
    path = tmp_path / "r.jsonl"
    write_jsonl(_records(1), path)
    with pytest.raises(TypeError, match="counter"):
        list(reader(path))


def test_convert_requires_a_counter(tmp_path):
    (tmp_path / "q.json").write_text("[]")
    with pytest.raises(TypeError, match="counter"):
        convert("proteinlmbench", tmp_path / "q.json")


# -- item 10: bad bytes, truncated gzip, broken JSON arrays ----------------------------------------------
def test_a_line_that_is_not_utf8_is_one_counted_skip(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(_line(0) + b'{"id": "bad \xff\xfe"}\n' + _line(1))
    counter = ReasonCounter()
    assert [r.id for r in read_jsonl(path, counter)] == ["r0", "r1"]
    assert counter.seen == 3 and counter.kept == 2 and counter.dropped == {"invalid_utf8": 1}
    assert counter.consistent


def test_truncated_gzip_names_the_file_and_the_line_reached(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    write_jsonl(_records(400), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=r"r\.jsonl\.gz: truncated or corrupt gzip data after line \d+"):
        list(read_jsonl(path, ReasonCounter()))


def test_open_text_names_the_line_of_a_bad_byte(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"a\tb\nc\td\xff\n")
    with (
        open_text(path) as handle,
        pytest.raises(DataFileError, match=r"t\.tsv: line 2, column 4: .*not UTF-8"),
    ):
        list(handle)
    with open_text(path) as handle, pytest.raises(DataFileError, match=r"line 2, column 4"):
        handle.read()


def test_a_malformed_json_array_is_an_error_not_zero_records(tmp_path):
    path = tmp_path / "ProteinLMBench.json"
    path.write_text('[\n  {"question": "q", "options": ["a", "b"], "answer": "1"},\n  {"question": \n')
    with pytest.raises(
        DataFileError, match=r"ProteinLMBench\.json: not a valid JSON array: .* line 4, column 1"
    ):
        list(convert("proteinlmbench", path, ReasonCounter()))


def test_a_json_array_with_a_bad_byte_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "items.json"
    path.write_bytes(b'[\n {"question": "caf\xe9"}\n]\n')
    with pytest.raises(DataFileError, match=r"items\.json: line 2, column \d+"):
        list(load_json_items(path, ReasonCounter()))


def test_jsonl_items_count_bad_lines_seen_and_dropped(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"a": 1}\n{oops\n\xff\n{"a": 2}\n')
    counter = ReasonCounter()
    items = list(load_json_items(path, counter))
    assert items == [{"a": 1}, {"a": 2}]
    assert counter.seen == 2 and counter.dropped == {"invalid_json": 1, "invalid_utf8": 1}


def test_fasta_drops_whole_entries_it_cannot_read_and_counts_them_seen(tmp_path):
    path = tmp_path / "p.fasta"
    path.write_bytes(
        b"stray text\n>a\n"
        + SEQ_A.encode()
        + b"\n>empty\n>bad\nMKV\xffLL\n"
        + SEQ_B.encode()
        + b"\n>b\nMK\nTV\n"
    )
    counter = ReasonCounter()
    entries = list(read_fasta(path, counter))
    assert entries == [("a", SEQ_A), ("b", "MKTV")]  # "bad" is not cut to a fragment: it is dropped whole
    assert counter.dropped == {"fasta_text_before_header": 1, "empty_fasta_entry": 1, "invalid_utf8": 1}
    assert counter.seen == 3  # every drop is also an item seen
    for _ in entries:  # the caller counts what it was given
        counter.seen += 1
        counter.keep()
    counter.check()


def test_megascale_row_with_a_bad_byte_is_one_counted_skip(tmp_path):
    path = tmp_path / "mega.csv"
    path.write_bytes(
        b"name,aa_seq,WT_name,mut_type,ddG_ML\n"
        b"p1,MKTAYIAKQR,w1,A3K,0.5\n"
        b"p2,MKTAY\xffAKQR,w1,A4K,0.6\n"
        b"p3,MKTAYIAKQR,w1,wt,-\n"
    )
    counter = ReasonCounter()
    records = list(convert("megascale", path, counter))
    assert [r.id for r in records] == ["megascale:p1"]
    assert counter.dropped == {"invalid_utf8": 1, "wild_type_row": 1}
    assert counter.seen == 3 and counter.emitted == 1
    counter.check()


def test_paired_and_paragraph_files_with_a_bad_byte_name_file_and_line(tmp_path):
    (tmp_path / "protein_sequence.txt").write_text(f"P1\n{SEQ_A}\n")
    (tmp_path / "text_sequence.txt").write_bytes(b"P1\nAn immunoglobulin \xff region.\n")
    with pytest.raises(DataFileError, match=r"text_sequence\.txt: line 2"):
        list(convert("swissprot_clap", tmp_path, ReasonCounter()))
    text = tmp_path / "notes.txt"
    text.write_bytes(b"First paragraph.\n\nSecond \xff one.\n")
    with pytest.raises(DataFileError, match=r"notes\.txt: line 3"):
        list(convert("biotext", text, ReasonCounter()))


def test_biotext_jsonl_counts_bad_lines_and_keeps_its_ids(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(
            b'{"text": "Kinases move phosphates."}\n\n\xff\n{"text": ""}\n{"text": "ATP is energy."}\n'
        )
    counter = ReasonCounter()
    records = list(convert("biotext", path, counter))
    assert [r.id for r in records] == ["biotext:t.jsonl:0", "biotext:t.jsonl:4"]  # line index, from 0
    assert counter.dropped == {"invalid_utf8": 1, "empty_text": 1} and counter.emitted == 2
    counter.check()


# -- item 12: converters and packing count in one unit -----------------------------------------------------
def test_swissprot_clap_counts_every_accession_and_every_stray_line(tmp_path):
    (tmp_path / "protein_sequence.txt").write_text(f"P1\n{SEQ_A}\nP2\n{SEQ_B}\nP1\n{SEQ_B}\nP9\n")
    (tmp_path / "text_sequence.txt").write_text("P1\nAn immunoglobulin V region.\nP3\nOrphan text.\n")
    counter = ReasonCounter()
    records = list(convert("swissprot_clap", tmp_path, counter))
    assert [(r.id, r.sequences) for r in records] == [("swissprot_clap:P1", [SEQ_A])]  # the first P1 wins
    assert counter.dropped == {
        "odd_line_count:protein_sequence.txt": 1,
        "repeated_accession:protein_sequence.txt": 1,
        "no_text_for_protein": 1,
        "no_protein_for_text": 1,
    }
    assert counter.seen == 5 and counter.kept == counter.emitted == 1
    counter.check()


def test_proteinlmbench_counts_records_emitted(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"question": "Which?", "options": ["a", "b"], "answer": "2"}, {"x": 1}]))
    counter = ReasonCounter()
    records = list(convert("proteinlmbench", path, counter))
    assert len(records) == counter.emitted == counter.kept == 1 and counter.seen == 2
    counter.check()


def test_packing_counts_every_sample():
    counter = ReasonCounter()
    bins = best_fit_decreasing([5, 20, 3, 9], max_tokens=10, counter=counter)
    assert sorted(i for b in bins for i in b) == [0, 2, 3]
    assert counter.seen == 4 and counter.kept == 3 and counter.dropped == {"longer_than_pack": 1}
    counter.check()
