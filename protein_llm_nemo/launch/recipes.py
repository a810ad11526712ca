"""Recipe factories: a preset (+ a bridge) -> `run.Partial` of the SFT / SSL entry point, built from the
typed config dataclasses with `run.Config`.

    partial = sft_recipe("qwen3-8b-1node", bridge="flamingo")   # run.Partial[entrypoints.sft]
    partial.train.max_steps = 50                                 # what `train.max_steps=50` does
    run.run(partial, executor=...)

`recipes/sft.py` and `recipes/ssl.py` hand these to `run.cli.main` as the default factory, so NeMo-Run's
own CLI and the `nemo-run` front end configure the same object. Importing this module registers one
NeMo-Run factory per registered bridge (`bridge=flamingo` on either command line).

No annotations are postponed here: NeMo-Run evaluates a factory's return annotation to register it.
"""

from protein_llm_nemo.optional import optional_import

with optional_import("NeMo-Run recipes", "train"):
    import nemo_run as run

from protein_llm_nemo.bridges import get_bridge_config_class, list_bridges
from protein_llm_nemo.launch import entrypoints
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

__all__ = ["DATA", "bridge_config", "register_bridge_factories", "sft_recipe", "ssl_recipe"]

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
