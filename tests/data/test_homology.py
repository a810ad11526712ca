import json
import random
import shutil

import pytest

from protein_llm_nemo.cli import main
from protein_llm_nemo.data import ProteinRecord, ReasonCounter, read_jsonl, write_jsonl
from protein_llm_nemo.data.homology import (
    SPLITS,
    SplitConfig,
    assign_clusters,
    homology_split,
    sequence_key,
    split_file,
    split_sequences,
)
from protein_llm_nemo.data.leakage import LeakageConfig, leakage_report

pytestmark = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")

AA = "ACDEFGHIKLMNPQRSTVWY"


def _families(n_families=12, members=5, length=120, mutation=0.1, seed=0):
    rng = random.Random(seed)
    families = []
    for _ in range(n_families):
        base = "".join(rng.choice(AA) for _ in range(length))
        fam = [base]
        for _ in range(members - 1):
            fam.append("".join(rng.choice(AA) if rng.random() < mutation else a for a in base))
        families.append(fam)
    return families


def _records(families):
    out = []
    for f, fam in enumerate(families):
        for m, seq in enumerate(fam):
            for task in ("go_mf", "go_cc"):
                out.append(ProteinRecord(f"r{f}-{m}-{task}", [seq], "q", "a b", task, "t", {"family": f}))
    return out


def test_whole_families_stay_in_one_split_and_leakage_is_zero(tmp_path):
    families = _families()
    records = _records(families)
    # Families share ~90% identity: a low mmseqs sensitivity finds them and keeps the test fast.
    config = SplitConfig(
        validation_fraction=0.2, test_fraction=0.2, seed=3, purge_sensitivity=2.0, tmp_root=str(tmp_path)
    )
    write_jsonl(records, tmp_path / "records.jsonl")
    report = split_file(tmp_path / "records.jsonl", tmp_path / "split", config)  # streaming path
    splits = {
        name: list(read_jsonl(tmp_path / "split" / f"{name}.jsonl", ReasonCounter())) for name in SPLITS
    }
    family_splits = {}
    for name, recs in splits.items():
        for r in recs:
            family_splits.setdefault(r.meta["family"], set()).add(name)
    assert all(len(s) == 1 for s in family_splits.values())
    assert {n for s in family_splits.values() for n in s} == {"train", "validation", "test"}
    assert report["clusters"] == 12
    assert report["records"]["kept"] + report["records"]["dropped_total"] == len(records)
    assert report["records_per_split"] == {name: len(rs) for name, rs in splits.items() if rs}
    assert len((tmp_path / "split" / "protein_splits.tsv").read_text().splitlines()) == 60
    # The purge iterated the leakage search to a fixed point and recorded every pass.
    passes = report["purge_passes"]
    assert report["purge_iterations"] == sum(1 for p in passes if p["pass"] >= 1) >= 1
    assert passes[-1]["search"] == "eval->train" and passes[-1]["hits_at_or_above_identity"] == 0
    assert sum(p["newly_purged"] for p in passes) == report["purged_train_proteins"]
    proteins = split_sequences(splits)
    leak = leakage_report(
        proteins["train"], proteins["test"], LeakageConfig(sensitivity=2.0, tmp_root=str(tmp_path))
    )
    assert leak["exact_overlaps"] == 0 and leak["at_or_above_threshold"] == 0
    # Deterministic given the seed: the cluster -> split assignment is a pure function.
    assert assign_clusters(dict.fromkeys("abcdef", "a"), config) == assign_clusters(
        dict.fromkeys("abcdef", "a"), config
    )


def test_leakage_report_finds_planted_leak(tmp_path):
    families = _families(n_families=3)
    train = {sequence_key(s): s for s in families[0][:3] + families[1]}
    evaluation = {sequence_key(s): s for s in families[0][3:] + families[2] + [families[1][0]]}
    report = leakage_report(train, evaluation, LeakageConfig(sensitivity=2.0, tmp_root=str(tmp_path)))
    assert report["exact_overlaps"] == 1
    assert report["at_or_above_threshold"] == 3  # two family-0 homologs + the exact copy
    assert report["without_any_hit"] == 5
    assert report["max_identity"] == 1.0
    sampled = leakage_report(
        train, evaluation, LeakageConfig(sensitivity=2.0, sample=3, tmp_root=str(tmp_path))
    )
    assert sampled["audited_proteins"] == 3 and sampled["evaluation_proteins"] == 8
    assert sampled["exact_overlaps"] == 1  # exact overlaps are always counted on the whole set


def test_registered_eval_set_purges_train_homologs(tmp_path):
    families = _families(n_families=6, seed=1)
    records = _records(families)
    eval_fasta = tmp_path / "bench.fasta"
    external = families[0][0]
    eval_fasta.write_text(f">bench1\n{external}\n")
    config = SplitConfig(
        validation_fraction=0.0, test_fraction=0.0, eval_fastas=(str(eval_fasta),), tmp_root=str(tmp_path)
    )
    result = homology_split(records, config)
    assert result.report["purged_train_proteins"] == 5
    assert result.counter.dropped == {"homologous_to_evaluation_protein": 10}
    assert all(r.meta["family"] != 0 for r in result.splits["train"])


def test_multi_protein_records_across_splits_are_counted(tmp_path):
    assignment = assign_clusters(
        {"a": "a", "b": "a", "c": "c", "d": "d"}, SplitConfig(test_fraction=0.25, validation_fraction=0.25)
    )
    assert assignment["a"] == assignment["b"]
    assert sorted(assignment.values()).count("train") >= 1


def _diverged_family_split(tmp_path, **overrides):
    """One external evaluation protein and 12 training homologs at ~45% mutation, plus unrelated families.

    A weak first pass (``-s 1``, one prefilter candidate) misses some homologs, and the repeated leakage search
    (one candidate per evaluation protein, ``--max-seqs 1``) surfaces one more each time the training set
    shrinks: a fixed point needs several iterations, as on the real GO data.
    """
    (family,) = _families(n_families=1, members=13, length=150, mutation=0.45, seed=0)
    records = _records([family[1:], *_families(n_families=4, seed=5)])
    eval_fasta = tmp_path / "bench.fasta"
    eval_fasta.write_text(f">bench\n{family[0]}\n")
    config = SplitConfig(
        validation_fraction=0.0,
        test_fraction=0.0,
        eval_fastas=(str(eval_fasta),),
        purge_sensitivity=1.0,
        purge_max_seqs=1,
        leakage_sensitivity=7.5,
        leakage_max_seqs=1,
        tmp_root=str(tmp_path),
        **overrides,
    )
    return family, records, config


def test_purge_iterates_until_the_leakage_search_is_empty(tmp_path):
    family, records, config = _diverged_family_split(tmp_path)
    result = homology_split(records, config)
    passes = result.report["purge_passes"]
    iterations = [p for p in passes if p["pass"] >= 1]
    assert result.report["purge_iterations"] == len(iterations)
    # The first pass left leaks that later iterations removed, one search at a time ...
    assert sum(p["newly_purged"] for p in passes if p["pass"] == 0) < 12
    assert sum(p["newly_purged"] for p in iterations) >= 1 and len(iterations) >= 2
    assert [p["train_proteins_searched"] for p in iterations] == sorted(
        (p["train_proteins_searched"] for p in iterations), reverse=True
    )
    # ... until the search came back empty.
    assert iterations[-1]["hits_at_or_above_identity"] == 0
    assert all(p["hits_at_or_above_identity"] > 0 for p in iterations[:-1])
    assert result.report["purged_train_proteins"] == 12
    assert all(r.meta["family"] != 0 for r in result.splits["train"])
    # The leakage report, at full prefilter depth, finds nothing above the threshold.
    leak = leakage_report(
        split_sequences(result.splits)["train"],
        {sequence_key(family[0]): family[0]},
        LeakageConfig(sensitivity=7.5, max_seqs=300, tmp_root=str(tmp_path)),
    )
    assert leak["at_or_above_threshold"] == 0 and leak["exact_overlaps"] == 0


def test_purge_that_does_not_converge_names_the_remaining_leaks(tmp_path):
    _, records, config = _diverged_family_split(tmp_path)
    write_jsonl(records, tmp_path / "records.jsonl")
    args = [
        "data", "split", "--input", str(tmp_path / "records.jsonl"), "--out-dir", str(tmp_path / "split"),
        "--validation-fraction", "0", "--test-fraction", "0", "--eval-fasta", config.eval_fastas[0],
        "--sensitivity", "1", "--max-seqs", "1", "--leakage-sensitivity", "7.5", "--leakage-max-seqs", "1",
        "--max-iterations", "1", "--tmp-dir", str(tmp_path),
    ]  # fmt: skip
    with pytest.raises(SystemExit, match=r"1 iterations: the last search still found 1 training proteins"):
        main(args)
    assert not (tmp_path / "split" / "split_report.json").exists()
    with pytest.raises(ValueError, match="purge_max_iterations"):
        SplitConfig(purge_max_iterations=0)


def test_without_the_reverse_search_the_iterations_still_reach_zero_leaks(tmp_path):
    family, records, config = _diverged_family_split(tmp_path)
    write_jsonl(records, tmp_path / "records.jsonl")
    args = [
        "data", "split", "--input", str(tmp_path / "records.jsonl"), "--out-dir", str(tmp_path / "split"),
        "--validation-fraction", "0", "--test-fraction", "0", "--eval-fasta", config.eval_fastas[0],
        "--sensitivity", "1", "--max-seqs", "1", "--leakage-sensitivity", "7.5", "--leakage-max-seqs", "1",
        "--no-reverse-search", "--tmp-dir", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    report = json.loads((tmp_path / "split" / "split_report.json").read_text())
    assert report["config"]["reverse_search"] is False
    assert {p["search"] for p in report["purge_passes"]} == {"eval->train"}
    assert report["purge_passes"][-1]["hits_at_or_above_identity"] == 0
    assert report["purged_train_proteins"] == 12
    train = {s for r in read_jsonl(tmp_path / "split" / "train.jsonl", ReasonCounter()) for s in r.sequences}
    assert not train & set(family)


def test_grown_evaluation_families_keep_fragmented_families_whole_instead_of_purging_them(tmp_path):
    # Families diverged to ~35-60% identity: linclust at 30% leaves them in fragments (nearly one cluster per
    # protein), so plain cluster assignment splits each family and the purge empties training.
    families = _families(n_families=6, members=10, length=150, mutation=0.4, seed=1)
    families += _families(n_families=12, members=1, length=150, seed=2)
    records = _records(families)
    common = dict(validation_fraction=0.15, test_fraction=0.15, linclust=True, purge_sensitivity=5.7)
    plain = homology_split(records, SplitConfig(**common, grow_eval_families=False, tmp_root=str(tmp_path)))
    grown = homology_split(records, SplitConfig(**common, tmp_root=str(tmp_path)))  # the default
    assert plain.report["clusters"] > 40  # fragmented
    assert plain.report["purged_train_proteins"] > 20
    assert grown.report["purged_train_proteins"] < plain.report["purged_train_proteins"] / 4
    family = grown.report["families"]
    assert family["hits"] > 0 and family["evaluation_proteins_from_outside_the_seeds"] > 0
    assert set(family["families_per_split"]) <= {"test", "validation", "train"}
    splits_of_family: dict[int, set[str]] = {}
    for name, recs in grown.splits.items():
        for r in recs:
            splits_of_family.setdefault(r.meta["family"], set()).add(name)
    multi = [f for f in range(6) if f in splits_of_family]
    assert all(len(splits_of_family[f]) == 1 for f in multi)  # no family straddles two splits
    assert {n for s in splits_of_family.values() for n in s} == {"train", "validation", "test"}
    proteins = split_sequences(grown.splits)
    for evaluation in ("test", "validation"):
        leak = leakage_report(proteins["train"], proteins[evaluation], LeakageConfig(tmp_root=str(tmp_path)))
        assert leak["exact_overlaps"] == 0 and leak["at_or_above_threshold"] == 0
    # Deterministic: the same seed grows the same families.
    again = homology_split(records, SplitConfig(**common, tmp_root=str(tmp_path)))
    assert again.assignment == grown.assignment


def test_a_relative_tmp_root_works(tmp_path, monkeypatch):
    """mmseqs2 runs inside its temporary folder: a relative --tmp-dir must not break its paths."""
    from protein_llm_nemo.data.mmseqs import ClusterParams, SearchParams, cluster, search, write_fasta

    monkeypatch.chdir(tmp_path)
    (tmp_path / "scratch").mkdir()
    families = _families(n_families=2, members=3)
    entries = [(f"s{f}-{m}", seq) for f, fam in enumerate(families) for m, seq in enumerate(fam)]
    write_fasta(entries, "all.fasta")
    members = cluster("all.fasta", ClusterParams(), tmp_root="scratch")
    assert len(members) == 6 and len(set(members.values())) == 2
    hits = search("all.fasta", "all.fasta", SearchParams(), tmp_root="scratch")
    assert {h["query"] for h in hits} == {name for name, _ in entries}
