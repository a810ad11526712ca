"""Training on megatron-core: configs, the loop, checkpoints, observability, and the SFT / SSL entry points.

One concern per file: `config` (typed dataclasses), `ddp` (megatron DDP wrapping), `optimizer` (param groups +
megatron optimizer), `scheduler`, `microbatch` (the typed micro-batch), `batches` (micro-batch iterators),
`loss` (the per-token loss reduction megatron's schedules call), `step` (one optimizer step through megatron's
pipeline schedule), `checkpoint`, `metrics` (progress bar, TensorBoard, W&B, JSONL), `loop` (the loop, top to
bottom), `sft`, `ssl`.
"""

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


def __getattr__(name: str):
    """`run_sft` / `run_ssl` load megatron-core on first use: importing the configs stays light (recipes)."""
    if name == "run_sft":
        from protein_llm_nemo.training.sft import run_sft

        return run_sft
    if name == "run_ssl":
        from protein_llm_nemo.training.ssl import run_ssl

        return run_ssl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BridgeSelection",
    "CheckpointConfig",
    "DataConfig",
    "EncoderSelection",
    "LoRAConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "SFTConfig",
    "SSLConfig",
    "SchedulerConfig",
    "TrainConfig",
    "TrainResult",
    "run_sft",
    "run_ssl",
]
