"""The NeMo-Run entry points of the SFT and SSL recipes: `run_sft` / `run_ssl` with one argument per config
section.

NeMo-Run's CLI addresses an entry point's arguments (`bridge=flamingo`, `train.max_steps=20`), so these take
the sections of `SFTConfig` / `SSLConfig` as arguments and assemble the config; the training itself is
`protein_llm_nemo.training.run_sft` / `run_ssl`, unchanged. A section left out keeps its dataclass default.
`bridge=flamingo` resolves the `flamingo` factory registered for `BridgeSelection` (see `launch.recipes`).
Annotations are evaluated (no `from __future__ import annotations`): NeMo-Run reads them for parsing and help.
"""

import dataclasses
import types
import typing

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
from protein_llm_nemo.training.result import TrainResult

__all__ = ["sft", "ssl"]


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


evaluate_config_annotations(SFTConfig, SSLConfig)


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


for _entry in (sft, ssl):
    _entry.__annotations__.update(
        {name: _for_nemo_run(hint) for name, hint in typing.get_type_hints(_entry).items()}
    )
