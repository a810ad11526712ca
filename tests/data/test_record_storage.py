import json

import pytest

from protein_llm_nemo.data import (
    ArrowRecords,
    ProteinRecord,
    ReasonCounter,
    read_jsonl,
    write_arrow,
    write_jsonl,
)
from protein_llm_nemo.data.record import RecordError

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQ"


def _record(i: int, **kw) -> ProteinRecord:
    base = dict(
        id=f"t:{i}",
        sequences=[SEQ],
        instruction="What does this protein do?",
        response=f"It binds ATP ({i}).",
        task="function",
        source="test",
        meta={"go_ids": ["GO:0005524"], "n": i},
    )
    base.update(kw)
    return ProteinRecord(**base)


def test_jsonl_round_trip_and_malformed_lines_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    write_jsonl([_record(0), _record(1, sequences=[SEQ, SEQ[::-1]])], path)
    with open(path, "a") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"id": "x", "sequences": [SEQ]}) + "\n")
        handle.write(json.dumps({**_record(2).to_dict(), "response": 3}) + "\n")
        handle.write("\n")
    counter = ReasonCounter()
    records = list(read_jsonl(path, counter))
    assert [r.id for r in records] == ["t:0", "t:1"]
    assert records[1].sequences == [SEQ, SEQ[::-1]]
    assert records[0].meta == {"go_ids": ["GO:0005524"], "n": 0}
    assert counter.seen == 5 and counter.kept == 2
    assert counter.dropped == {"invalid_json": 1, "missing_field:instruction": 1, "bad_type:response": 1}


def test_gzip_jsonl(tmp_path):
    path = tmp_path / "r.jsonl.gz"
    assert write_jsonl([_record(i) for i in range(3)], path) == 3
    assert [r.id for r in read_jsonl(path, ReasonCounter())] == ["t:0", "t:1", "t:2"]


def test_arrow_round_trip_is_memory_mapped(tmp_path):
    records = [_record(i) for i in range(5)] + [_record(9, sequences=[], task="multiple_choice", meta={})]
    assert write_arrow(records, tmp_path / "ds") == 6
    loaded = ArrowRecords(tmp_path / "ds")
    assert len(loaded) == 6
    assert loaded[3] == records[3]
    assert list(loaded) == records
    assert all(f["filename"].endswith(".arrow") for f in loaded.dataset.cache_files)


def test_from_dict_errors_name_the_problem():
    with pytest.raises(RecordError, match="sequences"):
        ProteinRecord.from_dict({**_record(0).to_dict(), "sequences": [1, 2]})
    with pytest.raises(RecordError) as info:
        ProteinRecord.from_dict([1])
    assert info.value.reason == "not_an_object"
