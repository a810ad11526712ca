"""Recipe factories: a preset (+ a bridge, + a task) -> `run.Partial` of the SFT / SSL / GRPO entry point,
built from the typed config dataclasses with `run.Config`.

    partial = sft_recipe("qwen3-8b-1node", bridge="flamingo")   # run.Partial[entrypoints.sft]
    partial.train.max_steps = 50                                 # what `train.max_steps=50` does
    run.run(partial, executor=...)

`recipes/sft.py`, `recipes/ssl.py` and `recipes/grpo.py` hand these to `run.cli.main` as the default factory, so NeMo-Run's
own CLI and the `nemo-run` front end configure the same object. Importing this module registers one
NeMo-Run factory per registered bridge (`bridge=flamingo` on either command line).

No annotations are postponed here: NeMo-Run evaluates a factory's return annotation to register it.
"""

from pathlib import Path

from protein_llm_nemo.optional import optional_import

with optional_import("NeMo-Run recipes", "train"):
    import nemo_run as run

from protein_llm_nemo.bridges import get_bridge_config_class, list_bridges
from protein_llm_nemo.evaluation.config import EvalDataConfig, EvalGenerationConfig
from protein_llm_nemo.launch import entrypoints
from protein_llm_nemo.launch.grpo_presets import GRPOPreset, get_grpo_preset
from protein_llm_nemo.launch.presets import RecipePreset, get_preset
from protein_llm_nemo.training.config import (
    BridgeSelection,
    CheckpointConfig,
    DataConfig,
    EncoderSelection,
    LoggingConfig,
    LoRAConfig,
    ModelConfig,
    OptimizerConfig,
    ParallelConfig,
    SchedulerConfig,
    TrainConfig,
)
from protein_llm_nemo.training.grpo.config import (
    GRPOConfig,
    GRPODataConfig,
    GRPOSection,
    RewardsConfig,
    RoutingConfig,
)

__all__ = [
    "DATA",
    "GO_OBO",
    "GRPO_TASKS",
    "bridge_config",
    "eval_recipe",
    "grpo_recipe",
    "grpo_start",
    "grpo_tasks",
    "register_bridge_factories",
    "sft_recipe",
    "ssl_recipe",
]

# Where each preset reads its records (relative to the working directory; override with data.train_path=).
# The CPU default is what `scripts/demo.sh` builds under outputs/ (git-ignored): the demo GO set
# (`protein-llm data build-go --source demo`), its homology split, and GO term definitions as SSL text.
DATA: dict[str, dict[str, str | None]] = {
    "cpu": {"train": "outputs/go_demo_split/train.jsonl", "valid": "outputs/go_demo_split/validation.jsonl"},
    "h100": {"train": "data/go_split/train.jsonl", "valid": "data/go_split/validation.jsonl"},
    "ssl-cpu": {"train": "outputs/biotext_demo/records.jsonl", "valid": None},
    "ssl-h100": {"train": "data/biotext/records.jsonl", "valid": None},
}
RUNS = "runs"  # checkpoints and logs (git-ignored): runs/<stage>-<bridge>-<preset>/


def bridge_config(name: str, preset: RecipePreset | None = None) -> run.Config[BridgeSelection]:
    """`run.Config(BridgeSelection)` of bridge `name`, at the bridge's CPU sizes on a CPU preset (the
    registry defaults are sized for real models)."""
    cls = get_bridge_config_class(name)  # rejects unknown names
    overrides = dict(cls.cpu_sizes) if preset and preset.device == "cpu" else {}
    return run.Config(BridgeSelection, name=name, overrides=overrides)


def register_bridge_factories() -> list[str]:
    """`bridge=<name>` on NeMo-Run's CLI: one factory per registered bridge (real-size bridges; the
    `nemo-run` front end's --bridge also applies the preset's CPU sizes). Returns the names registered."""
    for name in list_bridges():

        def factory(name: str = name) -> run.Config[BridgeSelection]:
            return bridge_config(name)

        factory.__name__ = factory.__qualname__ = name
        run.cli.factory(name=name)(factory)
    return list_bridges()


register_bridge_factories()


def _common(preset: RecipePreset, stage: str, bridge: str | None) -> dict:
    """The sections SFT and SSL share, from the preset."""
    on_gpu = preset.device != "cpu"
    data_key = ("ssl-" if stage == "ssl" else "") + ("h100" if on_gpu else "cpu")
    micro = preset.micro_batch(bridge or "mlp")
    # `{bridge}` is filled in by the entry point with the bridge actually used (see entrypoints.sft).
    run_name = f"{stage}-{{bridge}}-{preset.name}" if bridge else f"{stage}-{preset.name}"
    sections = dict(
        model=run.Config(
            ModelConfig,
            preset=preset.llm,
            params_dtype=preset.params_dtype,
            freeze_language_model=not preset.full_finetune and (stage == "sft" or bool(preset.lora_rank)),
        ),
        data=run.Config(
            DataConfig,
            train_path=DATA[data_key]["train"],
            valid_path=DATA[data_key]["valid"],
            seq_length=preset.seq_length,
            packing=True,
            micro_batch_size=micro,
            global_batch_size=preset.global_batch_size,
        ),
        optimizer=run.Config(
            OptimizerConfig,
            use_distributed_optimizer=preset.use_distributed_optimizer,
            **({"lr": preset.lr} if preset.lr is not None else {}),
        ),
        scheduler=run.Config(SchedulerConfig, warmup_steps=preset.warmup_steps),
        train=run.Config(
            TrainConfig,
            max_steps=preset.max_steps,
            eval_interval=0 if not on_gpu else 200,
            progress_bar=True,
        ),
        checkpoint=run.Config(
            CheckpointConfig,
            dir=f"{RUNS}/{run_name}",
            save_interval=0 if not on_gpu else 500,
        ),
        logging=run.Config(LoggingConfig),
        parallel=run.Config(
            ParallelConfig,
            tensor_model_parallel_size=preset.tensor_model_parallel_size,
            pipeline_model_parallel_size=preset.pipeline_model_parallel_size,
        ),
        lora=run.Config(LoRAConfig, rank=preset.lora_rank, alpha=2.0 * preset.lora_rank)
        if preset.lora_rank
        else None,
    )
    return sections


def sft_recipe(
    preset: str = "tiny-cpu",
    bridge: str = "mlp",
    init_from: str | None = None,
    language_model_from: str | None = None,
) -> run.Partial[entrypoints.sft]:
    """SFT of a ProteinLLM with `bridge` at `preset`'s shape.

    init_from:           an SSL (or earlier SFT) checkpoint whose weights start this run
                         (`checkpoint.load_model_from`).
    language_model_from: a Qwen3 megatron checkpoint imported from HF (`protein-llm convert import`,
                         `conversion/import_hf.py`) loaded into the LLM (`checkpoint.load_language_model_from`).
    GPU presets default to `runs/qwen3-<size>-megatron/` as the imported HF checkpoint; the CPU preset
    starts from a random tiny LLM unless one of the two is given.
    """
    shape = get_preset(preset)
    get_bridge_config_class(bridge)  # an unknown bridge fails here, before anything is built
    sections = _common(shape, "sft", bridge)
    if shape.device != "cpu" and not (init_from or language_model_from):
        language_model_from = f"{RUNS}/qwen3-{shape.llm}-megatron"
    sections["checkpoint"].load_model_from = init_from
    sections["checkpoint"].load_language_model_from = language_model_from
    sections["encoder"] = run.Config(EncoderSelection, name=shape.encoder)
    sections["bridge"] = bridge_config(bridge, shape)
    return run.Partial(entrypoints.sft, **sections)


def ssl_recipe(
    preset: str = "tiny-cpu", language_model_from: str | None = None
) -> run.Partial[entrypoints.ssl]:
    """Continued pre-training of the LLM on biology text at `preset`'s shape (LoRA on GPU presets, full
    fine-tuning on the CPU preset); GPU presets start from `runs/qwen3-<size>-megatron/`."""
    shape = get_preset(preset)
    sections = _common(shape, "ssl", None)
    sections["data"].packing = False
    # SSL reads megatron .bin/.idx files: JSONL records are tokenized once into the run's folder
    sections["data"].cache_dir = f"{sections['checkpoint'].dir}/indexed"
    if shape.device != "cpu" and not language_model_from:
        language_model_from = f"{RUNS}/qwen3-{shape.llm}-megatron"
    sections["checkpoint"].load_language_model_from = language_model_from
    return run.Partial(entrypoints.ssl, **sections)


# --task of the GRPO recipe: record tasks with a verifiable reward (protein_llm_nemo.rewards); "all" keeps
# every task of the data that has one. A registered task's own name (go_mf, ...) selects it alone.
GRPO_TASKS: dict[str, list[str] | None] = {
    "go": ["go_mf", "go_bp", "go_cc"],
    "ppi": ["ppi"],
    "stability": ["stability"],
    "structure": ["structure_quality"],
    "mc": ["multiple_choice"],
    "all": None,
}
# The Gene Ontology the GO rewards score against: on CPU the OBO `make demo-data` downloads with the demo's
# annotations (the release they were made with); GPU presets read $PROTEIN_LLM_GO_OBO or rewards.go_obo=.
GO_OBO: dict[str, str | None] = {"cpu": "outputs/go_demo/assets/GeneOntology_2019.01.29.obo", "h100": None}
# Where the CPU preset finds the SFT policy it starts from, first found wins: the SFT recipe's own run
# (`nemo-run recipes/sft.py --bridge B`), then the demo's (`make demo` trains runs/demo/sft-mlp).
CPU_SFT_RUNS = (f"{RUNS}/sft-{{bridge}}-tiny-cpu", f"{RUNS}/demo/sft-{{bridge}}")


def grpo_tasks(task: str) -> list[str] | None:
    """`--task` -> `data.tasks` (None: every task with a reward)."""
    from protein_llm_nemo.rewards import has_reward, list_rewards

    if task in GRPO_TASKS:
        tasks = GRPO_TASKS[task]
        return list(tasks) if tasks is not None else None
    if has_reward(task):
        return [task]
    raise ValueError(
        f"unknown task {task!r}; choose one of {', '.join(GRPO_TASKS)} or a record task with a reward "
        f"({', '.join(list_rewards())})"
    )


def grpo_start(preset: GRPOPreset, bridge: str) -> str | None:
    """The SFT run GRPO starts from by default: on GPU the SFT recipe's run at the same preset; on CPU the first
    of `CPU_SFT_RUNS` that holds a checkpoint (None: none does; the text bridge can start from the tiny LLM,
    the encoder bridges then need checkpoint.load_model_from= or allow_untrained_bridge=True)."""
    if preset.device != "cpu":
        return f"{RUNS}/sft-{bridge}-{preset.name}"
    for folder in CPU_SFT_RUNS:
        if (Path(folder.format(bridge=bridge)) / "latest").is_file():
            return folder.format(bridge=bridge)
    return None


def grpo_recipe(
    preset: str = "tiny-cpu",
    bridge: str = "mlp",
    task: str = "all",
    init_from: str | None = None,
) -> run.Partial[entrypoints.grpo]:
    """GRPO of a ProteinLLM with `bridge` at `preset`'s shape on the records of `task` (`GRPO_TASKS`).

    init_from: the SFT checkpoint (run or step folder) the policy and the KL reference start from
               (`checkpoint.load_model_from`; default `grpo_start`). It must be of the same bridge, LLM and
               LoRA rank: the GPU presets train the SFT preset's LoRA adapters on, the CPU preset the whole
               tiny LLM as the SFT tiny-cpu preset does.
    Checkpoints and logs: runs/grpo-<bridge>[-<task>]-<preset>/.
    """
    shape = get_grpo_preset(preset)
    get_bridge_config_class(bridge)  # an unknown bridge or task fails here, before anything is built
    tasks = grpo_tasks(task)
    layout = shape.layout
    on_gpu = shape.device != "cpu"
    where = "h100" if on_gpu else "cpu"
    stage_defaults = GRPOConfig()
    run_name = "-".join(["grpo", "{bridge}", *([task] if task != "all" else []), preset])
    return run.Partial(
        entrypoints.grpo,
        model=run.Config(
            ModelConfig,
            preset=layout.llm,
            params_dtype=layout.params_dtype,
            freeze_language_model=not layout.full_finetune,
        ),
        bridge=bridge_config(bridge, layout),
        encoder=run.Config(EncoderSelection, name=layout.encoder),
        data=run.Config(
            GRPODataConfig,
            train_path=DATA[where]["train"],
            valid_path=DATA[where]["valid"],
            tasks=tasks,
            micro_batch_size=shape.micro_batch(bridge),
        ),
        grpo=run.Config(
            GRPOSection,
            num_prompts_per_step=shape.num_prompts_per_step,
            num_generations=shape.num_generations,
            max_new_tokens=shape.max_new_tokens,
            dynamic_sampling=shape.dynamic_sampling,
            batch_multiplier=shape.batch_multiplier,
            overlong_filtering=shape.overlong_filtering,
        ),
        routing=run.Config(RoutingConfig),
        rewards=run.Config(RewardsConfig, go_obo=GO_OBO[where]),
        optimizer=run.Config(
            OptimizerConfig,
            lr=shape.lr if shape.lr is not None else stage_defaults.optimizer.lr,
            bridge_lr=shape.bridge_lr if shape.bridge_lr is not None else stage_defaults.optimizer.bridge_lr,
            use_distributed_optimizer=layout.use_distributed_optimizer,
        ),
        scheduler=run.Config(
            SchedulerConfig,
            warmup_steps=stage_defaults.scheduler.warmup_steps,
            decay_style=stage_defaults.scheduler.decay_style,
        ),
        train=run.Config(
            TrainConfig, max_steps=shape.max_steps, eval_interval=shape.eval_interval, progress_bar=True
        ),
        checkpoint=run.Config(
            CheckpointConfig,
            dir=f"{RUNS}/{run_name}",
            save_interval=shape.save_interval,
            load_model_from=init_from or grpo_start(shape, bridge),
        ),
        logging=run.Config(LoggingConfig),
        parallel=run.Config(
            ParallelConfig,
            tensor_model_parallel_size=layout.tensor_model_parallel_size,
            pipeline_model_parallel_size=layout.pipeline_model_parallel_size,
        ),
        lora=run.Config(LoRAConfig, rank=layout.lora_rank, alpha=2.0 * layout.lora_rank)
        if layout.lora_rank
        else None,
    )


# The test records an evaluation reads by default (the split next to each preset's training records).
EVAL_TEST: dict[str, str] = {"cpu": "outputs/go_demo_split/test.jsonl", "h100": "data/go_split/test.jsonl"}


def eval_checkpoint(preset: RecipePreset, bridge: str) -> str:
    """The SFT run an evaluation reads by default: the SFT recipe's run at the preset; on CPU, when that does
    not exist, `make demo`'s (runs/demo/sft-<bridge>)."""
    own = f"{RUNS}/sft-{bridge}-{preset.name}"
    demo = f"{RUNS}/demo/sft-{bridge}"
    if preset.device == "cpu" and not Path(own).exists() and Path(demo).exists():
        return demo
    return own


def eval_recipe(
    preset: str = "tiny-cpu", bridge: str = "mlp", checkpoint: str | None = None, test_path: str | None = None
) -> run.Partial[entrypoints.evaluate]:
    """Evaluation of an SFT (or GRPO) checkpoint at `preset`'s layout on the test split, with the naive and
    homology baselines (`protein_llm_nemo.evaluation`). `checkpoint` defaults to `eval_checkpoint`, `test_path`
    to the preset's test split (`EVAL_TEST`).
    Results: runs/eval/<checkpoint folder name>/results.json; data.test_path=, generation.samples= ..."""
    shape = get_preset(preset)
    on_gpu = shape.device != "cpu"
    where = "h100" if on_gpu else "cpu"
    checkpoint = checkpoint or eval_checkpoint(shape, bridge)
    micro = 32 if on_gpu else 8
    return run.Partial(
        entrypoints.evaluate,
        checkpoint=checkpoint,
        data=run.Config(
            EvalDataConfig,
            test_path=test_path or EVAL_TEST[where],
            train_path=DATA[where]["train"],
            go_obo=GO_OBO[where],
            micro_batch_size=micro,
            global_batch_size=micro * shape.data_parallel_size,
        ),
        generation=run.Config(
            EvalGenerationConfig, samples=5, temperature=1.0, max_new_tokens=256 if on_gpu else 64
        ),
        baselines="naive,homology",
        out_dir=f"{RUNS}/eval/{Path(checkpoint).name}",
        parallel=run.Config(
            ParallelConfig,
            tensor_model_parallel_size=shape.tensor_model_parallel_size,
            pipeline_model_parallel_size=shape.pipeline_model_parallel_size,
        ),
    )
