"""Recipe files through NeMo-Run's own CLI (`python recipes/sft.py key=value`), the entry points' match with
the typed configs, and every preset x bridge building into real config objects."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import fiddle as fdl
import pytest

from protein_llm_nemo.launch import entrypoints
from protein_llm_nemo.launch.presets import PRESETS
from protein_llm_nemo.launch.recipes import sft_recipe, ssl_recipe
from protein_llm_nemo.testing.tiny import built_in_bridges
from protein_llm_nemo.training.config import BridgeSelection, SFTConfig, SSLConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]


def _python(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def test_nemo_run_cli_bridge_factory_and_override(cli_env):
    """`python recipes/sft.py bridge=flamingo train.max_steps=3 --dryrun`: NeMo-Run's own parser resolves the
    registered `flamingo` factory and the typed override."""
    result = _python(["recipes/sft.py", "bridge=flamingo", "train.max_steps=3", "--dryrun"], cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BridgeSelection(name='flamingo'" in result.stdout
    assert "max_steps=3" in result.stdout
    assert "Error" not in result.stdout + result.stderr


def test_nemo_run_cli_help_lists_sections_and_executors(cli_env):
    result = _python(["recipes/ssl.py", "--help"], cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    for word in ("train", "parallel", "lora", "slurm", "torchrun", "docker"):
        assert word in result.stdout, word
    assert "bridge " not in result.stdout  # SSL has no bridge section


def test_entry_points_take_exactly_the_config_sections():
    assert list(inspect.signature(entrypoints.sft).parameters) == [
        f.name for f in dataclasses.fields(SFTConfig)
    ]
    assert list(inspect.signature(entrypoints.ssl).parameters) == [
        f.name for f in dataclasses.fields(SSLConfig)
    ]


def test_config_annotations_are_types_for_nemo_run():
    """NeMo-Run parses `train.max_steps=3` against `inspect.signature(TrainConfig)`: it must see `int`."""
    assert inspect.signature(TrainConfig).parameters["max_steps"].annotation is int
    assert inspect.signature(SFTConfig).parameters["bridge"].annotation is BridgeSelection


BRIDGES = built_in_bridges()


@pytest.mark.parametrize("bridge", BRIDGES)
def test_every_registered_bridge_has_a_nemo_run_factory(bridge):
    """`bridge=<name>` resolves for every bridge of the registry (factories are registered by a loop)."""
    import nemo_run as run

    config = run.cli.resolve_factory(BridgeSelection, bridge)()
    assert config.name == bridge and config.overrides == {}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("bridge", BRIDGES)
def test_every_preset_and_bridge_builds(preset, bridge):
    built = fdl.build(sft_recipe(preset, bridge=bridge))
    assert built.func is entrypoints.sft
    config = entrypoints._assemble(SFTConfig, built.keywords)
    assert config.bridge.name == bridge and config.data.global_batch_size == PRESETS[preset].global_batch_size
    assert config.parallel.tensor_model_parallel_size == PRESETS[preset].tensor_model_parallel_size
    assert (config.lora is None) == (PRESETS[preset].lora_rank is None)
    assert "{bridge}" in config.checkpoint.dir
    filled = entrypoints._fill_placeholders(config, bridge=bridge)
    assert filled.checkpoint.dir == f"runs/sft-{bridge}-{preset}"


def test_sft_starts_from_ssl_or_imported_checkpoint():
    assert sft_recipe("tiny-cpu", init_from="runs/ssl-tiny-cpu").checkpoint.load_model_from == (
        "runs/ssl-tiny-cpu"
    )
    gpu = sft_recipe("qwen3-4b-1node", "mlp")
    assert gpu.checkpoint.load_language_model_from == "runs/qwen3-4b-megatron"
    ssl = fdl.build(ssl_recipe("qwen3-8b-1node"))
    assert ssl.keywords["model"].freeze_language_model is True and ssl.keywords["lora"].rank == 16
    # SSL tokenizes its records into the run's folder unless told otherwise
    assert ssl.keywords["data"].cache_dir == f"{ssl.keywords['checkpoint'].dir}/indexed"


def test_nemo_run_cli_executor_factory_from_launchers(cli_env):
    """`run.executor=slurm run.executor.KEY=VALUE`: NeMo-Run resolves the factory of launchers/executors.py."""
    result = _python(
        [
            "recipes/sft.py",
            "run.executor=slurm",
            "run.executor.account=bio",
            "run.executor.container_image=registry/img:1",
            "run.executor.nodes=2",
            "--dryrun",
        ],
        cli_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = " ".join(result.stdout.split())  # rich wraps the executor's repr
    assert "SlurmExecutor(" in out and "account='bio'" in out and "nodes=2" in out
    assert "container_image='registry/img:1'" in out and "GitArchivePackager(" in out
