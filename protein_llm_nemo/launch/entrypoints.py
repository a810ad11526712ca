"""The NeMo-Run entry points of the SFT, SSL and GRPO recipes: `run_sft` / `run_ssl` / `run_grpo` with one
argument per config section.

NeMo-Run's CLI addresses an entry point's arguments (`bridge=flamingo`, `train.max_steps=20`), so these take
the sections of `SFTConfig` / `SSLConfig` / `GRPOConfig` as arguments and assemble the config; the training
itself is `protein_llm_nemo.training.run_sft` / `run_ssl` / `training.grpo.run_grpo`, unchanged. A section left out keeps its dataclass default.
`bridge=flamingo` resolves the `flamingo` factory registered for `BridgeSelection` (see `launch.recipes`).
Annotations are evaluated (no `from __future__ import annotations`): NeMo-Run reads them for parsing and help.
"""

import dataclasses
import types
import typing

from protein_llm_nemo.evaluation.config import EvalDataConfig, EvalGenerationConfig
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
    SFTConfig,
    SSLConfig,
    TrainConfig,
)
from protein_llm_nemo.training.grpo.config import (
    GRPOConfig,
    GRPODataConfig,
    GRPOSection,
    RewardsConfig,
    RoutingConfig,
)
from protein_llm_nemo.training.result import TrainResult

__all__ = ["evaluate", "grpo", "sft", "ssl"]


def _for_nemo_run(hint):
    """`X | None` (types.UnionType) -> `typing.Optional[X]`: NeMo-Run's parser handles `typing.Union` only."""
    if isinstance(hint, types.UnionType):
        return typing.Union[tuple(_for_nemo_run(arg) for arg in typing.get_args(hint))]  # noqa: UP007
    return hint


def evaluate_config_annotations(*roots: type) -> None:
    """Give the config dataclasses' `__init__` evaluated annotations NeMo-Run can parse against.

    `training/config.py` postpones annotations (strings such as "int") and uses `X | None`; NeMo-Run's CLI
    parser reads `inspect.signature(cls)` and handles neither ("Unsupported type: int"). This evaluates them
    and spells unions as `typing.Union`. Idempotent; equivalent types, so nothing else changes."""
    seen: set[type] = set()
    stack = list(roots)
    while stack:
        cls = stack.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        init_annotations = cls.__init__.__annotations__
        for name, hint in hints.items():
            if name in init_annotations:
                init_annotations[name] = _for_nemo_run(hint)
            for arg in (*typing.get_args(hint), hint):
                if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                    stack.append(arg)


evaluate_config_annotations(SFTConfig, SSLConfig, GRPOConfig, EvalDataConfig, EvalGenerationConfig)


def _assemble(config_cls, sections: dict):
    given = {name: value for name, value in sections.items() if value is not None}
    if "lora" in sections:  # None is a meaningful value of `lora` (full fine-tuning / bridge only)
        given["lora"] = sections["lora"]
    return config_cls(**given)


def _fill_placeholders(config, **values: str):
    """`checkpoint.dir` / `logging.log_dir` may hold `{bridge}`: the run's bridge, whichever way it was chosen
    (`--bridge`, `bridge=flamingo`, `bridge.name=...`), so two bridges never share (and auto-resume) a dir."""
    for section, name in (("checkpoint", "dir"), ("logging", "log_dir")):
        part = getattr(config, section)
        value = getattr(part, name)
        if isinstance(value, str) and "{" in value:
            setattr(part, name, value.format(**values))
    return config


def sft(
    model: ModelConfig | None = None,
    bridge: BridgeSelection | None = None,
    encoder: EncoderSelection | None = None,
    data: DataConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    train: TrainConfig | None = None,
    checkpoint: CheckpointConfig | None = None,
    logging: LoggingConfig | None = None,
    parallel: ParallelConfig | None = None,
    lora: LoRAConfig | None = None,
) -> TrainResult:
    """Supervised fine-tuning of a ProteinLLM (`protein_llm_nemo.training.run_sft`); every rank calls this."""
    sections = dict(locals())
    from protein_llm_nemo.training.sft import run_sft

    config = _assemble(SFTConfig, sections)
    return run_sft(_fill_placeholders(config, bridge=config.bridge.name))


def ssl(
    model: ModelConfig | None = None,
    data: DataConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    train: TrainConfig | None = None,
    checkpoint: CheckpointConfig | None = None,
    logging: LoggingConfig | None = None,
    parallel: ParallelConfig | None = None,
    lora: LoRAConfig | None = None,
) -> TrainResult:
    """Continued pre-training of the language model on biology text (`protein_llm_nemo.training.run_ssl`)."""
    sections = dict(locals())
    from protein_llm_nemo.training.ssl import run_ssl

    return run_ssl(_assemble(SSLConfig, sections))


def grpo(
    model: ModelConfig | None = None,
    bridge: BridgeSelection | None = None,
    encoder: EncoderSelection | None = None,
    data: GRPODataConfig | None = None,
    grpo: GRPOSection | None = None,
    routing: RoutingConfig | None = None,
    rewards: RewardsConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    scheduler: SchedulerConfig | None = None,
    train: TrainConfig | None = None,
    checkpoint: CheckpointConfig | None = None,
    logging: LoggingConfig | None = None,
    parallel: ParallelConfig | None = None,
    lora: LoRAConfig | None = None,
    allow_untrained_bridge: bool = False,
) -> TrainResult:
    """GRPO of a ProteinLLM from its SFT checkpoint (`protein_llm_nemo.training.grpo.run_grpo`); every rank
    calls this. A section left out keeps `GRPOConfig`'s default (its optimizer: lr 5e-6, bridge_lr 2e-5)."""
    sections = dict(locals())
    from protein_llm_nemo.training.grpo.run import run_grpo

    config = _assemble(GRPOConfig, sections)
    return run_grpo(_fill_placeholders(config, bridge=config.bridge.name))


def evaluate(
    checkpoint: str | None = None,
    model: str | None = None,
    data: EvalDataConfig | None = None,
    generation: EvalGenerationConfig | None = None,
    baselines: str = "",
    out_dir: str | None = None,
    parallel: ParallelConfig | None = None,
    name: str | None = None,
    bootstrap_resamples: int = 1000,
) -> dict | None:
    """Evaluation of a megatron checkpoint (or an HF export: `model`) on test records
    (`protein_llm_nemo.evaluation.runner.run_evaluation`); every rank calls this, rank 0 writes
    `out_dir`/results.json (default runs/eval/<checkpoint folder name>)."""
    from pathlib import Path

    from protein_llm_nemo.evaluation.config import EvalConfig
    from protein_llm_nemo.evaluation.runner import run_evaluation

    parallel = parallel or ParallelConfig()
    source = checkpoint or model
    config = EvalConfig(
        out_dir=out_dir or str(Path("runs/eval") / Path(source or "model").resolve().name),
        checkpoint=checkpoint,
        model=model,
        data=data or EvalDataConfig(),
        generation=generation or EvalGenerationConfig(),
        baselines=baselines,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        bootstrap_resamples=bootstrap_resamples,
        name=name,
    )
    return run_evaluation(config)


for _entry in (sft, ssl, grpo, evaluate):
    _entry.__annotations__.update(
        {name: _for_nemo_run(hint) for name, hint in typing.get_type_hints(_entry).items()}
    )
