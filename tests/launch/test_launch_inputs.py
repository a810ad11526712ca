"""`nemo-run` checks every file a recipe reads before launching on this machine: on a fresh clone (no demo data)
`nemo-run recipes/sft.py --bridge flamingo` stops with one line naming the missing file and the command that
builds it, instead of a traceback from inside the launched job. `--dryrun` checks nothing; remote executors
read paths on the cluster, so nothing of theirs is checked (a note says so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protein_llm_nemo.launch.cli import check_inputs, main, missing_inputs, prepare

REPO = Path(__file__).resolve().parents[2]
SFT = str(REPO / "recipes" / "sft.py")
SSL = str(REPO / "recipes" / "ssl.py")


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch, nemorun_home):
    """A working directory without outputs/ or runs/, as after `git clone`."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _demo_data(root: Path) -> None:
    for name in ("outputs/go_demo_split/train.jsonl", "outputs/go_demo_split/validation.jsonl"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}\n")


def test_missing_demo_data_stops_with_one_line_naming_the_file_and_the_command(fresh_clone, capsys):
    assert main([SFT, "--bridge", "flamingo"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [
        "nemo-run: error: data.train_path=outputs/go_demo_split/train.jsonl not found (also missing: "
        "data.valid_path); build the CPU demo data with `make demo-data` (the data steps of scripts/demo.sh)"
    ]
    assert "sft-flamingo" not in captured.out  # nothing was launched
    assert not any((fresh_clone / "..").glob("nemo_run_home/experiments/*"))


def test_ssl_names_its_own_demo_file(fresh_clone, capsys):
    assert main([SSL]) == 2
    err = capsys.readouterr().err
    assert "data.train_path=outputs/biotext_demo/records.jsonl not found" in err and "make demo-data" in err


def test_dryrun_checks_nothing(fresh_clone, capsys):
    assert main([SFT, "--bridge", "flamingo", "--dryrun"]) == 0
    captured = capsys.readouterr()
    assert "sft-flamingo-tiny-cpu on local" in captured.out and "not found" not in captured.err


def test_checkpoints_to_load_are_checked_with_the_command_that_writes_them(fresh_clone):
    _demo_data(fresh_clone)
    assert missing_inputs(prepare([SFT])) == []
    plan = prepare([SFT, "checkpoint.load_language_model_from=runs/ssl-tiny-cpu"])
    assert check_inputs(plan) == (
        "checkpoint.load_language_model_from=runs/ssl-tiny-cpu not found; import a Qwen3 with `protein-llm "
        "convert import --hf-model Qwen/Qwen3-... --out runs/ssl-tiny-cpu` or train an SSL run there with "
        "`nemo-run recipes/ssl.py checkpoint.dir=runs/ssl-tiny-cpu`"
    )
    imported = prepare([SFT, "checkpoint.load_language_model_from=runs/qwen3-8b-megatron"])
    assert (
        "`protein-llm convert import --hf-model Qwen/Qwen3-8B --out runs/qwen3-8b-megatron`"
        in check_inputs(imported)
    )
    (fresh_clone / "runs" / "ssl-tiny-cpu").mkdir(parents=True)
    assert check_inputs(plan) is None


def test_encoder_cache_and_local_folders_are_checked_hub_ids_are_not(fresh_clone):
    _demo_data(fresh_clone)
    plan = prepare(
        [SFT, "encoder.cache_dir=cache/esmc", "model.tokenizer=./tokenizer", "checkpoint.resume_from=x"]
    )
    keys = [key for key, _, _ in missing_inputs(plan)]
    assert keys == ["checkpoint.resume_from", "encoder.cache_dir", "model.tokenizer"]
    assert (
        "protein-llm encode --encoder NAME --input RECORDS --cache-dir cache/esmc"
        in dict((k, hint) for k, _, hint in missing_inputs(plan))["encoder.cache_dir"]
    )
    assert missing_inputs(prepare([SFT, "model.tokenizer=Qwen/Qwen3-8B"])) == []  # a hub id: not a path


def test_ssl_reads_a_megatron_prefix(fresh_clone):
    for suffix in (".bin", ".idx"):
        (fresh_clone / f"corpus{suffix}").write_bytes(b"")
    assert missing_inputs(prepare([SSL, "data.train_path=corpus"])) == []
    assert [k for k, *_ in missing_inputs(prepare([SSL, "data.train_path=other"]))] == ["data.train_path"]


def test_remote_executors_check_nothing_and_say_so(fresh_clone, capsys):
    plan = prepare(
        [
            SFT,
            "--executor",
            "slurm",
            "executor.account=bio",
            "executor.container_image=nvcr.io/acme/protein-llm-nemo:0.1",
        ]
    )
    assert check_inputs(plan) is None
    err = capsys.readouterr().err
    assert "the slurm job reads data.train_path, data.valid_path on the cluster" in err
    assert "only local inputs are checked here" in err
