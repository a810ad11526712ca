from collections import Counter
from itertools import islice

import pytest

from protein_llm_nemo.data.mixing import MixingConfig, epoch_plan, mixing_weights
from protein_llm_nemo.data.sampler import DistributedPackSampler

SIZES = {"big": 9000, "mid": 900, "small": 100}


def test_temperature_and_caps():
    natural = mixing_weights(SIZES, MixingConfig(alpha=1.0))
    assert natural["big"] == pytest.approx(0.9)
    flat = mixing_weights(SIZES, MixingConfig(alpha=0.0))
    assert flat == pytest.approx({"big": 1 / 3, "mid": 1 / 3, "small": 1 / 3})
    capped = mixing_weights(SIZES, MixingConfig(alpha=1.0, caps={"big": 900}))
    assert capped["big"] == pytest.approx(capped["mid"])


def test_epoch_plan_deterministic_reshuffled_and_upsamples():
    config = MixingConfig(alpha=0.5, seed=1)
    plan0 = epoch_plan(SIZES, config, epoch=0)
    assert plan0 == epoch_plan(SIZES, config, epoch=0)
    plan1 = epoch_plan(SIZES, config, epoch=1)
    assert plan1 != plan0 and Counter(s for s, _ in plan1) == Counter(s for s, _ in plan0)
    counts = Counter(s for s, _ in plan0)
    assert sum(counts.values()) == 10_000
    weights = mixing_weights(SIZES, config)
    assert abs(counts["small"] - weights["small"] * 10_000) <= 1
    small = [i for s, i in plan0 if s == "small"]
    assert counts["small"] > 100 and set(small) == set(range(100))  # repeated, every item used
    assert all(0 <= i < SIZES[s] for s, i in plan0)


def test_sampler_shards_and_resumes():
    samplers = [DistributedPackSampler(103, rank=r, world_size=4, seed=5) for r in range(4)]
    epoch0 = [list(islice(iter(s), len(s))) for s in samplers]
    flat = [i for part in epoch0 for i in part]
    assert len(flat) == len(set(flat)) == 100 and samplers[0].dropped_per_epoch == 3
    a = DistributedPackSampler(103, rank=1, world_size=4, seed=5)
    it = iter(a)
    first = [next(it) for _ in range(40)]  # crosses into epoch 1
    state = a.state_dict()
    rest = [next(it) for _ in range(10)]
    b = DistributedPackSampler(103, rank=1, world_size=4, seed=5)
    b.load_state_dict(state)
    assert [next(iter(b)) for _ in range(1)] == rest[:1]
    assert first[:25] == epoch0[1] and state["epoch"] == 1
    with pytest.raises(ValueError, match="num_items"):
        DistributedPackSampler(50, seed=5).load_state_dict(state)


def _source_files(tmp_path):
    from protein_llm_nemo.data import ProteinRecord, write_jsonl

    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAXZ"  # noqa: E501
    a = [ProteinRecord(f"a{i}", [seq[: 50 + i]], "q", "answer a", "go_mf", "alpha") for i in range(90)]
    b = [ProteinRecord(f"b{i}", [seq[: 60 + i]], "q", "answer b", "go_cc", "beta") for i in range(10)]
    write_jsonl(a, tmp_path / "a.jsonl")
    write_jsonl(b[:6], tmp_path / "b.jsonl")
    write_jsonl(b[6:], tmp_path / "b2.jsonl")  # one source may span several files
    return a, b


def test_mix_command_writes_seeded_reshuffled_epochs_with_a_report(tmp_path):
    import json

    from protein_llm_nemo.cli import main
    from protein_llm_nemo.data import ReasonCounter, read_jsonl

    a, b = _source_files(tmp_path)
    inputs = ["--input", str(tmp_path / "a.jsonl"), "--input", str(tmp_path / "b.jsonl"),
              "--input", str(tmp_path / "b2.jsonl")]  # fmt: skip
    args = ["data", "mix", *inputs, "--alpha", "0.5", "--cap", "alpha=40", "--epochs", "2", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "mix.jsonl")]) == 0
    assert main([*args, "--out", str(tmp_path / "again.jsonl")]) == 0
    assert (tmp_path / "mix.jsonl").read_bytes() == (tmp_path / "again.jsonl").read_bytes()
    mixed = list(read_jsonl(tmp_path / "mix.jsonl", ReasonCounter()))
    report = json.loads((tmp_path / "mix.jsonl.report.json").read_text())
    # Capped sizes 40 and 10, alpha 0.5: weights 40**.5 : 10**.5 = 2 : 1 of a 50-record epoch.
    assert report["sources"]["alpha"]["weight"] == pytest.approx(2 / 3, abs=1e-6)
    assert report["sources"]["beta"]["drawn_per_epoch"] == 17 and report["records_written"] == 100 == len(
        mixed
    )
    epochs = [mixed[:50], mixed[50:]]
    assert [r.id for r in epochs[0]] != [r.id for r in epochs[1]]
    for epoch in epochs:
        assert Counter(r.source for r in epoch) == {"alpha": 33, "beta": 17}
        assert {r.id for r in epoch if r.source == "beta"} == {r.id for r in b}  # upsampled: every one drawn
    originals = {r.id: r for r in a + b}
    assert all(r == originals[r.id] for r in mixed)  # records pass through unchanged


def test_mix_command_rejects_unknown_sources_and_bad_caps(tmp_path):
    from protein_llm_nemo.cli import main

    _source_files(tmp_path)
    base = ["data", "mix", "--input", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "m.jsonl")]
    with pytest.raises(SystemExit, match=r"absent from the inputs: \['gamma'\]"):
        main([*base, "--cap", "gamma=5"])
    with pytest.raises(SystemExit, match="positive integer, got alpha=x"):
        main([*base, "--cap", "alpha=x"])
    with pytest.raises(SystemExit, match="alpha must be in"):
        main([*base, "--alpha", "1.5"])
    assert not (tmp_path / "m.jsonl").exists()
