"""Typed configs of a training run: what NeMo-Run recipes compose and `run_sft` / `run_ssl` consume.

Plain dataclasses with defaults for every field (fiddle / NeMo-Run build them with ``run.Config(SFTConfig,
...)`` and override any field as ``train.max_steps=20``). Values are plain types (str, int, float, bool,
tuples, dicts of plain values); nothing here imports megatron-core, so recipe files load fast.

    config = SFTConfig()                                        # tiny-cpu defaults: mlp bridge, tiny encoder
    config.data.train_path = "data/go_demo/records.jsonl"
    config.train.max_steps = 50
    result = run_sft(config)

Defaults follow the reference recipe (seed-implementation section 2): AdamW (0.9, 0.999), weight decay 0.01
(not on norms, biases or gates), lr 2e-4 for the LLM / LoRA and 1e-3 for the bridge,
warmup + cosine, clip 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from protein_llm_nemo.models.lora import LoRAConfig
from protein_llm_nemo.runtime.distributed import ParallelConfig

__all__ = [
    "BridgeSelection",
    "CheckpointConfig",
    "DataConfig",
    "EncoderSelection",
    "LoggingConfig",
    "LoRAConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "SFTConfig",
    "SSLConfig",
    "SchedulerConfig",
    "TrainConfig",
]

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """The language model.

    preset:     a Qwen3 preset of `protein_llm_nemo.models.qwen3.QWEN3_PRESETS` ("tiny", "0.6b" ... "32b"),
                used when `hf_path` is None.
    hf_path:    a HuggingFace Qwen3 directory or hub id: the architecture is read from its config.json.
                Weights come from a megatron checkpoint (`CheckpointConfig.load_language_model_from`, written
                by `protein-llm convert import`), never from the HF files directly.
    tokenizer:  tokenizer source (local dir | hub id); None = the packaged offline Qwen3 tokenizer.
    params_dtype: "float32" | "bfloat16" | "float16" (bf16 on GPU; CPU runs keep float32).
    freeze_language_model: True for LoRA or bridge-only runs; False = full fine-tuning.
    """

    preset: str = "tiny"
    hf_path: str | None = None
    tokenizer: str | None = None
    params_dtype: str = "float32"
    freeze_language_model: bool = True

    def __post_init__(self) -> None:
        if self.params_dtype not in DTYPES:
            raise ValueError(f"params_dtype must be one of {DTYPES}, got {self.params_dtype!r}")


@dataclass
class BridgeSelection:
    """A bridge of `protein_llm_nemo.bridges` by registry name, with field overrides of its config
    (e.g. ``{"num_slots": 8, "projector_hidden_size": 128}``). `encoder_dim` follows the encoder unless
    given here."""

    name: str = "mlp"
    overrides: dict[str, Any] = field(default_factory=dict)
    freeze: bool = False  # True: bridge weights frozen (the reference's "frozen bridge" runs)


@dataclass
class EncoderSelection:
    """The frozen protein encoder: a registry name of `protein_llm_nemo.encoders` ("esmc-tiny",
    "esm3-open", ...) with overrides, and/or `cache_dir`, an embedding cache built by
    `protein-llm encode` (then the encoder never runs during training; a missing sequence is an error)."""

    name: str = "esmc-tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None


@dataclass
class DataConfig:
    """Training and validation data.

    SFT: `train_path` / `valid_path` are canonical records (JSONL, JSONL.gz or an Arrow folder).
    SSL: records with task "ssl_text" (tokenized into a megatron indexed dataset under `cache_dir`) or the
    prefix of an existing megatron ``.bin/.idx`` pair.

    seq_length:        tokens per row: the pack width when `packing`, otherwise the padded width (SSL: the
                       GPTDataset sample length). Longer samples are dropped and counted, never truncated.
    micro_batch_size:  rows per forward pass (packed rows when `packing`).
    global_batch_size: rows per optimizer step over all data-parallel ranks; gradient accumulation =
                       global / (micro x data-parallel size).
    """

    train_path: str | None = None
    valid_path: str | None = None
    seq_length: int = 64
    packing: bool = True
    micro_batch_size: int = 1
    global_batch_size: int = 4
    seed: int = 1234
    shuffle: bool = True
    valid_max_batches: int | None = None  # None: the whole validation set
    system_prompt: str | None = "default"  # "default": the reference's system prompt; None: no system turn
    cache_dir: str | None = None  # SSL indexed-dataset / GPTDataset index cache

    def __post_init__(self) -> None:
        if self.seq_length < 2:
            raise ValueError(f"seq_length must be >= 2, got {self.seq_length}")
        if self.micro_batch_size < 1 or self.global_batch_size < 1:
            raise ValueError("micro_batch_size and global_batch_size must be >= 1")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size})"
            )


@dataclass
class OptimizerConfig:
    """AdamW with per-group learning rates (megatron `get_megatron_optimizer` underneath).

    lr:         language model (full fine-tuning), LoRA adapters and boundary-token rows.
    bridge_lr:  bridge modules, flamingo's gated blocks and gates.
    No weight decay on norms, biases (every 1-D parameter) and the tanh gates.
    """

    optimizer: Literal["adam"] = "adam"
    lr: float = 2e-4
    bridge_lr: float = 1e-3
    min_lr_ratio: float = 0.0  # min lr of each group = ratio x its peak lr (cosine floor)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    clip_grad: float = 1.0  # global L2 norm; 0 disables clipping
    use_distributed_optimizer: bool = False  # ZeRO-1 sharding of optimizer states over data parallelism

    def __post_init__(self) -> None:
        if self.lr < 0 or self.bridge_lr < 0:
            raise ValueError("learning rates must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class SchedulerConfig:
    """Linear warmup from 0 to each group's peak lr, then `decay_style` down to the floor
    (`OptimizerConfig.min_lr_ratio`) at `decay_steps` (None: `TrainConfig.max_steps`)."""

    warmup_steps: int = 100
    decay_style: Literal["cosine", "linear", "constant"] = "cosine"
    decay_steps: int | None = None

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TrainConfig:
    """The loop. `max_steps` optimizer steps; validation every `eval_interval` steps (0: never, except at the
    end when a validation set is given); a step whose loss or grad norm is NaN/Inf is skipped, and the run
    stops after `nan_guard_max_consecutive` such steps in a row."""

    max_steps: int = 20
    eval_interval: int = 0
    log_interval: int = 1
    nan_guard_max_consecutive: int = 3
    stop_at_step: int | None = None  # save a checkpoint and return at this step (time-limited jobs)
    seed: int = 1234
    deterministic: bool = False
    progress_bar: bool = True


@dataclass
class CheckpointConfig:
    """Megatron dist checkpoints (model + optimizer + scheduler + data position + RNG) under `dir`.

    save_interval: every N steps (0: only at the end); keep_last: how many step checkpoints to keep (0: all).
    resume_from:   a checkpoint directory to resume from; with `auto_resume`, the newest complete
                   checkpoint of `dir` is used when `resume_from` is None.
    load_language_model_from: a Qwen3 megatron checkpoint (`protein-llm convert import`) loaded into the
                   LLM before training (ignored on resume).
    load_model_from: a ProteinLLM checkpoint (e.g. SSL's or a previous SFT's) whose model weights start this
                   run; optimizer, scheduler and data position start fresh.
    """

    dir: str | None = None
    save_interval: int = 0
    keep_last: int = 2
    save_final: bool = True
    resume_from: str | None = None
    auto_resume: bool = True
    load_language_model_from: str | None = None
    load_model_from: str | None = None

    def __post_init__(self) -> None:
        if self.save_interval < 0 or self.keep_last < 0:
            raise ValueError("save_interval and keep_last must be >= 0")


@dataclass
class LoggingConfig:
    """Where metrics go: `metrics.jsonl` + TensorBoard event files under `log_dir` (None: the checkpoint
    dir, or nothing when that is None too); W&B when `wandb_project` is set (and wandb is installed)."""

    log_dir: str | None = None
    tensorboard: bool = True
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    level: str = "INFO"


@dataclass
class SFTConfig:
    """Supervised fine-tuning: records -> chat formatting (response-only loss) -> packing -> ProteinLLM."""

    model: ModelConfig = field(default_factory=ModelConfig)
    bridge: BridgeSelection = field(default_factory=BridgeSelection)
    encoder: EncoderSelection = field(default_factory=EncoderSelection)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoRAConfig | None = None


@dataclass
class SSLConfig:
    """Continued pre-training of the language model on biology text (every token is a target; no
    proteins, no bridge), LoRA or full."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(freeze_language_model=False))
    data: DataConfig = field(default_factory=lambda: DataConfig(packing=False))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoRAConfig | None = None
