"""The GRPO recipe: `nemo-run recipes/grpo.py --bridge B --task T` builds the typed `GRPOConfig` (tasks, GO
ontology, the SFT checkpoint it starts from), its presets fit an H100 with headroom by the memory arithmetic
of `launch/presets.py`, the preflight check names what a launch would miss, a Slurm dry run renders, and a
real two-step local run from an SFT checkpoint logs every GRPO metric and writes an exportable checkpoint."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import random
from pathlib import Path

import fiddle as fdl
import pytest

from protein_llm_nemo.launch import entrypoints
from protein_llm_nemo.launch.cli import UsageError, check_inputs, main, missing_inputs, prepare
from protein_llm_nemo.launch.grpo_presets import GRPO_PRESETS, grpo_memory_per_gpu
from protein_llm_nemo.launch.presets import GIB, H100_MEMORY_GIB, PRESETS, bridge_trainable_parameters
from protein_llm_nemo.launch.recipes import grpo_recipe, grpo_tasks
from protein_llm_nemo.models.qwen3 import qwen3_preset
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import built_in_bridges
from protein_llm_nemo.training.grpo.config import GRPOConfig

REPO = Path(__file__).resolve().parents[2]
GRPO = str(REPO / "recipes" / "grpo.py")
SFT = str(REPO / "recipes" / "sft.py")
GO_OBO = REPO / "tests" / "data" / "fixtures" / "go_sample.obo"
SLURM = ["executor.account=bio", "executor.container_image=nvcr.io/acme/protein-llm-nemo:0.1"]
BRIDGES = built_in_bridges()
GPU_PRESETS = [name for name, preset in GRPO_PRESETS.items() if preset.device == "h100"]
DEMO_OBO = "outputs/go_demo/assets/GeneOntology_2019.01.29.obo"


@pytest.fixture
def workdir(tmp_path, monkeypatch, nemorun_home):
    """A working directory without outputs/ or runs/: the recipe's defaults do not depend on this checkout."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}\n")


# ---------------------------------------------------------------------------------------------- presets


def test_grpo_presets_are_the_sft_layouts_on_4b_and_8b_at_one_and_two_nodes():
    assert set(GRPO_PRESETS) == set(PRESETS)
    assert {(GRPO_PRESETS[n].llm, GRPO_PRESETS[n].nodes) for n in GPU_PRESETS} == {
        ("4b", 1),
        ("4b", 2),
        ("8b", 1),
        ("8b", 2),
    }
    for name, preset in GRPO_PRESETS.items():
        assert preset.layout is PRESETS[name]  # the SFT checkpoint's LoRA rank, TP and PP carry over


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_grpo_layout_is_consistent(name):
    preset = GRPO_PRESETS[name]
    for bridge in BRIDGES:
        per_pass = preset.micro_batch(bridge) * preset.data_parallel_size
        assert preset.samples_per_step % per_pass == 0, bridge
        assert preset.micro_batches(bridge) >= preset.pipeline_model_parallel_size  # fills the pipeline
    assert preset.num_generations >= 2 and preset.lora_rank == 16


@pytest.mark.parametrize("name", GPU_PRESETS)
@pytest.mark.parametrize("bridge", BRIDGES)
def test_grpo_memory_fits_an_h100_with_headroom(name, bridge):
    estimate = grpo_memory_per_gpu(GRPO_PRESETS[name], bridge)
    assert estimate.total < 0.75 * H100_MEMORY_GIB * GIB, estimate.gib()
    assert estimate.kv_cache > 0 and estimate.activations > 0 and estimate.frozen_weights > 0
    assert estimate.total == pytest.approx(estimate.held + max(estimate.phases.values()))


def test_grpo_memory_arithmetic_by_hand():
    preset = GRPO_PRESETS["qwen3-4b-1node"]
    arch = qwen3_preset("4b")
    text = grpo_memory_per_gpu(preset, "text")
    # 64 prompts x 2 (dynamic sampling) over DP=8 = 16 prompts x 8 generations = 128 rows per GPU, each
    # 1,280 prompt + 512 new tokens; K and V of 8 heads x 128 in bf16 on 36 layers, + one layer's copy
    assert preset.generation_rows() == 128 and preset.width("text") == 1792
    per_token = 36 * 2 * 8 * 128 * 2
    assert text.kv_cache == pytest.approx(128 * 1792 * per_token * (1 + 1 / 36))
    assert text.kv_cache / GIB == pytest.approx(32.4, abs=0.05)
    # the update: SFT's activations at s = 1,792 and the GRPO micro-batch 4
    assert text.activations == pytest.approx(36 * 1792 * 4 * arch.hidden_size * 34)
    assert text.logits == pytest.approx(1792 * 4 * arch.vocab_size * 6)
    assert text.phases["generation"] > text.phases["update"] > text.phases["logprobs"]
    # LoRA runs swap only the bridge's tensors for the reference pass: flamingo's 1.2B at 2 bytes
    flamingo = grpo_memory_per_gpu(preset, "flamingo")
    module, block, blocks = bridge_trainable_parameters("4b", "esm3-open", "flamingo")
    assert flamingo.reference_swap == pytest.approx(2 * (module + block * blocks))
    # pipeline parallelism splits the layers, hence the cache, over the stages
    two_stage = grpo_memory_per_gpu(GRPO_PRESETS["qwen3-8b-2node"], "mlp")
    rows = GRPO_PRESETS["qwen3-8b-2node"].generation_rows()
    assert rows == 512
    assert two_stage.kv_cache == pytest.approx(rows * 768 * 18 * 2 * 8 * 128 * 2 / 2 * (1 + 1 / 18))


def test_list_presets_prints_the_grpo_arithmetic(capsys):
    assert main([GRPO, "--list-presets"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-8b-2node" in out and "512 rows x 1792 tokens" in out and "KV" in out
    assert main([SFT, "--list-presets"]) == 0
    assert "KV" not in capsys.readouterr().out  # SFT keeps its own table


# ---------------------------------------------------------------------------------------------- recipe


def test_task_maps_to_record_tasks():
    assert grpo_tasks("go") == ["go_mf", "go_bp", "go_cc"]
    assert grpo_tasks("structure") == ["structure_quality"]
    assert grpo_tasks("mc") == ["multiple_choice"]
    assert grpo_tasks("ppi") == ["ppi"] and grpo_tasks("stability") == ["stability"]
    assert grpo_tasks("all") is None
    assert grpo_tasks("go_bp") == ["go_bp"]  # a task with a reward, by its own name
    with pytest.raises(ValueError, match="unknown task 'function'"):
        grpo_tasks("function")  # free text: no reward


def test_entry_point_takes_exactly_the_grpo_config_sections():
    assert list(inspect.signature(entrypoints.grpo).parameters) == [
        f.name for f in dataclasses.fields(GRPOConfig)
    ]


@pytest.mark.parametrize("preset", sorted(GRPO_PRESETS))
@pytest.mark.parametrize("bridge", BRIDGES)
def test_every_preset_and_bridge_builds(preset, bridge, workdir):
    config = entrypoints._assemble(GRPOConfig, fdl.build(grpo_recipe(preset, bridge, task="go")).keywords)
    shape = GRPO_PRESETS[preset]
    assert config.bridge.name == bridge and config.data.tasks == ["go_mf", "go_bp", "go_cc"]
    assert config.grpo.num_prompts_per_step * config.grpo.num_generations == shape.samples_per_step
    assert config.data.micro_batch_size == shape.micro_batch(bridge)
    assert (config.lora is None) == (shape.lora_rank is None)
    assert config.model.freeze_language_model == (shape.device != "cpu")  # CPU: full FT, as its SFT
    filled = entrypoints._fill_placeholders(config, bridge=bridge)
    assert filled.checkpoint.dir == f"runs/grpo-{bridge}-go-{preset}"
    if shape.device == "cpu":
        assert config.rewards.go_obo == DEMO_OBO and config.checkpoint.load_model_from is None
    else:  # the SFT recipe's run at the same preset
        assert config.checkpoint.load_model_from == f"runs/sft-{bridge}-{preset}"


def test_cpu_default_starts_from_the_sft_runs_found(workdir):
    def start(bridge: str) -> str | None:
        return prepare([GRPO, "--bridge", bridge])["partial"].checkpoint.load_model_from

    assert start("mlp") is None
    (workdir / "runs/demo/sft-mlp").mkdir(parents=True)
    (workdir / "runs/demo/sft-mlp/latest").write_text("step_0000020\n")
    assert start("mlp") == "runs/demo/sft-mlp"  # what `make demo` trains
    (workdir / "runs/sft-mlp-tiny-cpu").mkdir(parents=True)
    (workdir / "runs/sft-mlp-tiny-cpu/latest").write_text("step_0000020\n")
    assert start("mlp") == "runs/sft-mlp-tiny-cpu"  # the user's own SFT recipe run comes first
    assert start("flamingo") is None
    given = prepare([GRPO, "checkpoint.load_model_from=runs/mine"])["partial"]
    assert given.checkpoint.load_model_from == "runs/mine"


@pytest.mark.parametrize("bridge", ["text", "mlp", "perceiver", "flamingo"])
def test_dryrun_through_main_for_every_bridge(bridge, workdir, capsys):
    assert main([GRPO, "--bridge", bridge, "--task", "go", "train.max_steps=2", "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert f"grpo-{bridge}-go-tiny-cpu on local" in out and "samples_per_step=16" in out
    assert "go_mf" in out and "max_steps: 2" in out and "GeneOntology_2019.01.29.obo" in out


def test_flags_and_overrides_reach_the_grpo_sections(workdir):
    plan = prepare(
        [
            GRPO,
            "--bridge",
            "perceiver",
            "--task",
            "ppi",
            "grpo.num_generations=8",
            "grpo.loss_agg_mode=seq-mean-token-mean",
            "grpo.dual_clip=3.0",
            "routing.freeze_bridge_steps=5",
            "rewards.go_obo=/data/go.obo",
            "allow_untrained_bridge=true",
            "data.tasks=['ppi', 'stability']",
        ]
    )
    config = entrypoints._assemble(GRPOConfig, fdl.build(plan["partial"]).keywords)
    assert plan["name"] == "grpo-perceiver-ppi-tiny-cpu"
    assert config.grpo.num_generations == 8 and config.grpo.loss_agg_mode == "seq-mean-token-mean"
    assert config.grpo.dual_clip == 3.0 and config.routing.freeze_bridge_steps == 5
    assert config.rewards.go_obo == "/data/go.obo" and config.allow_untrained_bridge is True
    assert config.data.tasks == ["ppi", "stability"]
    assert plan["layout"] == {
        "world_size": 1,
        "model_parallel": 1,
        "data_parallel": 1,
        "samples_per_step": 32,
        "micro_batches_per_rank": 4,
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [GRPO, "--task", "nope"],
            "unknown task 'nope'; choose one of go, ppi, stability, structure, mc, all",
        ),
        ([SFT, "--task", "go"], "takes no --task"),
        (
            [GRPO, "grpo.num_generations=3"],
            r"= 12 samples per step is not a multiple of data.micro_batch_size",
        ),
        ([GRPO, "grpo.num_generations=1"], "num_generations must be >= 2"),
        ([GRPO, "--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_grpo_arguments_are_clear_errors(argv, message, workdir):
    with pytest.raises(UsageError, match=message):
        prepare(argv)


def test_slurm_dryrun_renders_a_two_node_grpo_job(nemorun_home, capsys):
    """From the checkout: the Slurm job packages the code with `git archive`."""
    argv = [GRPO, "--preset", "qwen3-8b-2node", "--bridge", "flamingo", "--task", "go", "--executor", "slurm"]
    assert main([*argv, *SLURM, "--dryrun"]) == 0
    out = capsys.readouterr().out
    assert (
        "#SBATCH --account=bio" in out and "#SBATCH --nodes=2" in out and "#SBATCH --gpus-per-node=8" in out
    )
    assert "--container-image nvcr.io/acme/protein-llm-nemo:0.1" in out
    assert "torchrun" in out and "--nproc-per-node 8" in out and "--nnodes 2" in out
    assert "grpo-flamingo-go-qwen3-8b-2node on slurm" in out and "samples_per_step=1024" in out
    assert "protein_llm_nemo.launch.entrypoints.grpo" in out and "load_model_from: runs/sft-flamingo" in out


# ---------------------------------------------------------------------------------------------- preflight


def test_preflight_names_the_demo_data_the_ontology_and_the_sft_run(workdir, capsys):
    assert main([GRPO, "--bridge", "mlp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nemo-run: error: data.train_path=outputs/go_demo_split/train.jsonl not found")
    assert "rewards.go_obo" in err and "make demo-data" in err
    _touch(workdir, "outputs/go_demo_split/train.jsonl", "outputs/go_demo_split/validation.jsonl", DEMO_OBO)
    plan = prepare([GRPO, "--bridge", "mlp", "checkpoint.load_model_from=runs/demo/sft-mlp"])
    assert check_inputs(plan) == (
        "checkpoint.load_model_from=runs/demo/sft-mlp not found; run `make demo` first (its SFT run writes "
        "runs/demo/sft-mlp)"
    )
    plan = prepare([GRPO, "--bridge", "perceiver", "checkpoint.load_model_from=runs/sft-perceiver"])
    assert "`nemo-run recipes/sft.py --bridge perceiver [--preset P] checkpoint.dir=runs/sft-perceiver`" in (
        check_inputs(plan)
    )


def test_preflight_refuses_an_untrained_bridge_unless_allowed(workdir):
    _touch(workdir, "outputs/go_demo_split/train.jsonl", "outputs/go_demo_split/validation.jsonl", DEMO_OBO)
    assert missing_inputs(prepare([GRPO, "--bridge", "flamingo"])) == []
    problem = check_inputs(prepare([GRPO, "--bridge", "flamingo"]))
    assert problem.startswith("GRPO would start from an untrained 'flamingo' bridge")
    assert "allow_untrained_bridge=True" in problem and "make demo" in problem
    assert check_inputs(prepare([GRPO, "--bridge", "flamingo", "allow_untrained_bridge=True"])) is None
    assert check_inputs(prepare([GRPO, "--bridge", "text"])) is None  # no bridge weights to train first


# ---------------------------------------------------------------------------------------------- a real run

AMINO = "ACDEFGHIKLMNPQRSTVWY"
GO_TERMS = {  # terms of the fixture ontology, by record task
    "go_mf": (["GO:0004888", "GO:0004930"], "molecular function"),
    "go_bp": (["GO:0002250", "GO:0007165"], "biological process"),
    "go_cc": (["GO:0005615", "GO:0005886"], "cellular component"),
}
STEP_METRICS = (
    "train/loss",
    "train/grad_norm",
    "reward/mean",
    "reward/std",
    "reward/format",
    "format_compliance",
    "zero_variance_fraction",
    "clip_fraction",
    "kl",
    "entropy",
    "token_mult_prob_error",
    "response_length/mean",
    "truncated_fraction",
    "generated_tokens",
    "timers/generation",
    "timers/logprobs",
    "timers/training",
    "timers/total",
    "throughput/generated_tokens_per_s",
    "lr/main",
    "lr/bridge",
    "grad_norm/before/bridge",
    "memory/peak_bytes",
)


def write_go_records(path: Path, n: int, seed: int) -> str:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            task = list(GO_TERMS)[i % 3]
            ids, aspect = GO_TERMS[task]
            record = {
                "id": f"go:{seed}:{i}",
                "sequences": ["M" + "".join(rng.choice(AMINO) for _ in range(rng.randint(10, 20)))],
                "instruction": f"Predict the {aspect} of this protein as Gene Ontology terms (name and GO id).",
                "response": f"This protein is annotated with the following {aspect} terms: {ids[0]}.",
                "task": task,
                "source": "test",
                "meta": {"go_ids": ids[:1], "all_go_ids": ids},
            }
            handle.write(json.dumps(record) + "\n")
    return str(path)


def _sft_body(rank: int, world_size: int, records: str, run_dir: str) -> None:
    """One step of the SFT recipe's CPU preset: the checkpoint the GRPO recipe's CPU preset continues."""
    from protein_llm_nemo.launch.recipes import sft_recipe
    from protein_llm_nemo.training.config import SFTConfig
    from protein_llm_nemo.training.sft import run_sft

    config = entrypoints._assemble(SFTConfig, fdl.build(sft_recipe("tiny-cpu", "mlp")).keywords)
    config.data.train_path, config.data.valid_path = records, None
    config.data.micro_batch_size, config.data.global_batch_size = 1, 1
    config.train.max_steps, config.train.progress_bar = 1, False
    config.checkpoint.dir = run_dir
    config.logging.tensorboard = False
    run_sft(config)


def test_local_grpo_run_from_an_sft_checkpoint_logs_every_metric(tmp_path, workdir, monkeypatch, capsys):
    """`nemo-run recipes/grpo.py --bridge mlp --task go checkpoint.load_model_from=<SFT run>`: NeMo-Run's local
    executor, two steps, the GO reward on the configured ontology."""
    records = write_go_records(tmp_path / "go.jsonl", 12, seed=0)
    sft_run, grpo_run = tmp_path / "sft-mlp", tmp_path / "grpo-mlp"
    run_distributed(_sft_body, world_size=1, args=(records, str(sft_run)), timeout_s=900)
    monkeypatch.setenv("PATH", os.environ["PATH"])  # the launch puts .venv/bin first: undone after the test
    argv = [
        GRPO,
        "--bridge",
        "mlp",
        "--task",
        "go",
        f"checkpoint.load_model_from={sft_run}",  # a run folder: its latest step
        f"data.train_path={records}",
        "data.valid_path=None",
        f"rewards.go_obo={GO_OBO}",
        f"checkpoint.dir={grpo_run}",
        "train.max_steps=2",
        "train.progress_bar=false",
        "grpo.num_prompts_per_step=2",
        "grpo.num_generations=2",
        "grpo.max_new_tokens=6",
        "data.micro_batch_size=4",
        "logging.tensorboard=false",
    ]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    assert "grpo-mlp-go-tiny-cpu on local" in capsys.readouterr().out
    rows = [json.loads(line) for line in (grpo_run / "logs" / "metrics.jsonl").open()]
    steps = [row for row in rows if "train/loss" in row]
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:
        missing = [key for key in STEP_METRICS if row.get(key) is None]
        assert not missing, missing
        assert math.isfinite(row["train/loss"]) and row["generated_tokens"] == 2 * 2 * 6
        assert row["timers/total"] >= row["timers/generation"] + row["timers/training"] > 0
    assert rows[0]["data"]["train"]["selection"]["kept"] == 12  # every GO record has a reward
    header = json.loads((grpo_run / "step_0000002" / "protein_llm_checkpoint.json").read_text())
    assert header["source"] == "grpo" and header["extra"]["protein_llm"]["bridge"]["name"] == "mlp"
