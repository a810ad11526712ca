"""The `nemo-run` front end: flags map onto the recipe factory and the executor, key=value overrides reach
the typed configs, and every unknown flag, key or value is a clear error listing the valid ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from protein_llm_nemo.launch.cli import UsageError, main, prepare

REPO = Path(__file__).resolve().parents[2]

SFT = str(REPO / "recipes" / "sft.py")
SSL = str(REPO / "recipes" / "ssl.py")
SLURM = ["executor.account=bio", "executor.container_image=nvcr.io/acme/protein-llm-nemo:0.1"]


def test_defaults_are_tiny_cpu_mlp_on_one_local_process():
    plan = prepare([SFT])
    partial = plan["partial"]
    assert partial.bridge.name == "mlp" and partial.model.preset == "tiny"
    assert partial.encoder.name == "esmc-tiny" and partial.bridge.overrides["num_slots"] == 8
    assert plan["executor_name"] == "local" and plan["layout"]["world_size"] == 1
    assert plan["name"] == "sft-mlp-tiny-cpu"


@pytest.mark.parametrize("bridge", ["text", "mlp", "perceiver", "flamingo"])
def test_bridge_flag_selects_the_bridge(bridge):
    partial = prepare([SFT, "--bridge", bridge])["partial"]
    assert partial.bridge.name == bridge
    assert prepare([SFT, f"--bridge={bridge}"])["partial"].bridge.name == bridge  # the = form too


def test_preset_flag_sets_model_layout_and_batch():
    plan = prepare([SFT, "--preset", "qwen3-8b-1node", "--bridge", "flamingo", "--executor", "slurm", *SLURM])
    partial, executor = plan["partial"], plan["executor"]
    assert partial.model.preset == "8b" and partial.model.params_dtype == "bfloat16"
    assert partial.parallel.tensor_model_parallel_size == 2
    assert partial.data.micro_batch_size == 1 and partial.data.global_batch_size == 128
    assert partial.lora.rank == 16
    assert partial.checkpoint.load_language_model_from == "runs/qwen3-8b-megatron"
    assert (executor.nodes, executor.gpus_per_node) == (1, 8)
    assert plan["layout"] == {
        "world_size": 8,
        "model_parallel": 2,
        "data_parallel": 4,
        "gradient_accumulation": 32,
    }


def test_nproc_per_node_maps_to_torchrun():
    plan = prepare(
        [SFT, "--executor", "torchrun", "--nproc-per-node", "2", "parallel.tensor_model_parallel_size=2"]
    )
    assert plan["executor"].ntasks_per_node == 2 and plan["executor"].launcher == "torchrun"
    assert plan["layout"]["model_parallel"] == 2
    implied = prepare([SFT, "--nproc-per-node", "2"])  # more than one process implies torchrun
    assert implied["executor_name"] == "torchrun"


def test_nodes_and_nproc_map_to_slurm():
    plan = prepare(
        [
            SFT,
            "--preset",
            "qwen3-4b-1node",
            "--executor",
            "slurm",
            "--nodes",
            "4",
            "--nproc-per-node",
            "4",
            *SLURM,
        ]
    )
    assert (plan["executor"].nodes, plan["executor"].gpus_per_node) == (4, 4)
    assert plan["layout"]["world_size"] == 16


def test_overrides_are_typed():
    partial = prepare(
        [
            SFT,
            "train.max_steps=20",
            "optimizer.bridge_lr=3e-4",
            "data.packing=false",
            "checkpoint.dir=/tmp/x",
            "lora.rank=8",  # None section: created from its dataclass
            "bridge.overrides.num_slots=4",  # a dict field
        ]
    )["partial"]
    assert partial.train.max_steps == 20 and isinstance(partial.train.max_steps, int)
    assert partial.optimizer.bridge_lr == pytest.approx(3e-4)
    assert partial.data.packing is False
    assert partial.checkpoint.dir == "/tmp/x"
    assert partial.lora.rank == 8
    assert partial.bridge.overrides["num_slots"] == 4


def test_executor_overrides():
    plan = prepare(
        [
            SFT,
            "--preset",
            "qwen3-4b-1node",
            "--executor",
            "slurm",
            *SLURM,
            "executor.time=01:00:00",
            "executor.nodes=2",
        ]
    )
    assert plan["executor"].time == "01:00:00" and plan["executor"].nodes == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--bogus", "3"],
            r"unknown flag\(s\) --bogus; valid flags: --bridge, --checkpoint, --data, --detach, .*--preset",
        ),
        (
            ["--bridge", "nope"],
            r"unknown bridge 'nope'; choose one of \[('\w+', )*'text'\]",  # the registry, sorted
        ),
        (["--preset", "nope"], "unknown preset 'nope'; choose one of tiny-cpu, qwen3-4b-1node"),
        (["--executor", "k8s"], r"argument --executor: invalid choice: 'k8s'"),
        (
            ["trian.max_steps=3"],
            "unknown key 'trian.max_steps': the recipe has no 'trian'; valid keys: bridge, checkpoint",
        ),
        (
            ["train.max_stepz=3"],
            "unknown key 'train.max_stepz': train has no 'max_stepz'; valid keys: .*max_steps",
        ),
        (["train.max_steps=abc"], "cannot set train.max_steps='abc': expected a value of type int"),
        (["train.max_steps.x=1"], r"train.max_steps is a value \(20\), not a section"),
        (["model.params_dtype=float8"], "invalid recipe config: params_dtype must be one of"),
        (
            ["executor.nodez=2"],
            "unknown key 'executor.nodez': executor has no 'nodez'; valid keys: .*ntasks_per_node",
        ),
        (["stray"], "unexpected argument"),
        (["--nproc-per-node", "2", "--executor", "local"], "--executor local runs one process"),
        (["--nodes", "2"], "--nodes needs --executor slurm"),
        (["--executor", "slurm", "executor.account=bio"], "needs a container image"),
        (
            ["--executor", "torchrun", "--nproc-per-node", "3", "parallel.tensor_model_parallel_size=2"],
            "not divisible",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        prepare([SFT, *argv])


def test_slurm_dryrun_renders_a_complete_job_with_placeholders(capsys, monkeypatch):
    monkeypatch.delenv("SBATCH_ACCOUNT", raising=False)
    monkeypatch.delenv("PROTEIN_LLM_IMAGE", raising=False)
    prepared = prepare([SFT, "--bridge", "flamingo", "--executor", "slurm", "--dryrun"])
    assert prepared["executor"].container_image == "<container-image>"
    assert prepared["executor"].account == "<slurm-account>"
    assert "placeholders for executor.container_image" in capsys.readouterr().err


def test_ssl_recipe_takes_no_bridge():
    with pytest.raises(UsageError, match="takes no --bridge"):
        prepare([SSL, "--bridge", "mlp"])
    assert prepare([SSL])["partial"].model.freeze_language_model is False  # tiny SSL: full fine-tuning


def test_missing_recipe_file():
    with pytest.raises(UsageError, match="recipe file 'recipes/nope.py' not found"):
        prepare(["recipes/nope.py"])


def test_main_prints_the_error_and_exits_2(capsys):
    assert main([SFT, "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: nemo-run" in err and "nemo-run: error: unknown flag(s) --bogus" in err


def test_list_presets(capsys):
    assert main([SFT, "--list-presets"]) == 0
    out = capsys.readouterr().out
    assert "tiny-cpu" in out and "qwen3-8b-2node" in out and "GiB/GPU" in out


def test_cpu_preset_on_a_cluster_is_a_one_gpu_smoke_test(monkeypatch):
    monkeypatch.setenv("SBATCH_ACCOUNT", "bio")  # Slurm's own default-account variable
    monkeypatch.setenv("PROTEIN_LLM_IMAGE", "registry/protein-llm-nemo:dev")
    plan = prepare([SFT, "--executor", "slurm"])
    assert (plan["executor"].nodes, plan["executor"].gpus_per_node) == (1, 1)
    assert (
        plan["executor"].account == "bio"
        and plan["executor"].container_image == "registry/protein-llm-nemo:dev"
    )


def test_console_script_dryrun_prints_a_complete_slurm_job(cli_env):
    """The Done-when command of the containerised-launch issue, through the installed console script."""
    result = subprocess.run(
        [
            "nemo-run",
            "recipes/sft.py",
            "--bridge",
            "flamingo",
            "--executor",
            "slurm",
            "--dryrun",
            "--preset",
            "qwen3-8b-1node",
            *SLURM,
        ],
        cwd=REPO,
        env=cli_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert (
        "#SBATCH --account=bio" in out and "#SBATCH --nodes=1" in out and "#SBATCH --gpus-per-node=8" in out
    )
    assert "--container-image nvcr.io/acme/protein-llm-nemo:0.1" in out
    assert "torchrun" in out and "--nproc-per-node 8" in out
    assert "name: flamingo" in out
