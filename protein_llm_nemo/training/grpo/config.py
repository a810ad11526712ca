"""Typed configuration of the GRPO stage: the SFT sections (model, bridge, encoder, optimizer, ...) plus
`GRPOSection` (rollouts, advantages, dynamic sampling, the loss) and `RoutingConfig` (how the gradient is
shared between LoRA, the bridge and the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from protein_llm_nemo.models.lora import LoRAConfig
from protein_llm_nemo.runtime import ParallelConfig
from protein_llm_nemo.training.config import (
    BridgeSelection,
    CheckpointConfig,
    EncoderSelection,
    LoggingConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
)
from protein_llm_nemo.training.grpo.loss import LOSS_AGG_MODES, PolicyLossConfig

__all__ = ["GRPOConfig", "GRPODataConfig", "GRPOSection", "RewardsConfig", "RoutingConfig"]


@dataclass
class GRPODataConfig:
    """Prompts: canonical records with verifiable ground truth (`meta`) for their task's reward.

    tasks: keep only these record tasks (None: every task that has a registered reward).
    micro_batch_size: samples per forward/backward pass; seq_length: their padded width (None: the step's
    longest prompt + completion)."""

    train_path: str | None = None
    valid_path: str | None = None
    tasks: list[str] | None = None
    micro_batch_size: int = 4
    seq_length: int | None = None
    seed: int = 1234
    shuffle: bool = True
    valid_max_prompts: int | None = 64
    system_prompt: str | None = "default"


@dataclass
class GRPOSection:
    """Rollouts, advantages and the policy loss.

    num_prompts_per_step x num_generations samples train per optimizer step (NeMo-RL's names).
    normalize_std: divide advantages by the group std (GRPO) or not (Dr. GRPO).
    dynamic_sampling: train only groups with non-zero reward variance, over-sampling `batch_multiplier` x
    prompts per generation round until the step is full; give up after `max_generation_rounds` rounds.
    overlong_filtering: samples cut by `max_new_tokens` stay in their group's baseline, out of the loss."""

    num_prompts_per_step: int = 4
    num_generations: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    normalize_std: bool = True
    leave_one_out_baseline: bool = True
    dynamic_sampling: bool = True
    batch_multiplier: float = 2.0
    max_generation_rounds: int = 10
    overlong_filtering: bool = True
    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = None
    beta: float = 0.01
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    importance_sampling_correction: bool = False

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2: a group of {self.num_generations} has no relative advantage"
            )
        if self.num_prompts_per_step < 1:
            raise ValueError(f"num_prompts_per_step must be >= 1, got {self.num_prompts_per_step}")
        if self.batch_multiplier < 1:
            raise ValueError(f"batch_multiplier must be >= 1, got {self.batch_multiplier}")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {self.loss_agg_mode!r}")
        self.loss_config()  # validates the clip range, dual clip and beta

    def loss_config(self) -> PolicyLossConfig:
        return PolicyLossConfig(
            eps_low=self.eps_low,
            eps_high=self.eps_high,
            dual_clip=self.dual_clip,
            beta=self.beta,
            loss_agg_mode=self.loss_agg_mode,
            max_new_tokens=self.max_new_tokens,
            importance_sampling_correction=self.importance_sampling_correction,
        )


@dataclass
class RoutingConfig:
    """Where the reward's gradient goes (the seeds' "gradient routing" finding: with a bridge, GRPO's
    gradient reached the bridge or the LoRA adapters, not both).

    per_group_clip: clip each parameter group's gradient norm to `clip_grad` separately (instead of only the
    global norm). balance: scale every trainable group's gradient to the same norm (their mean) before the
    update. freeze_bridge_steps: a two-stage schedule: the bridge, its gated blocks and the protein tokens are
    frozen for the first N steps, then train at `optimizer.bridge_lr`."""

    per_group_clip: bool = False
    balance: bool = False
    freeze_bridge_steps: int = 0


@dataclass
class RewardsConfig:
    """What the rewards score against. go_obo: the Gene Ontology (.obo) the GO rewards (go_mf, go_bp, go_cc)
    propagate and check terms with (None: $PROTEIN_LLM_GO_OBO); go_ontology_dir: a metastudent ontology
    folder instead. Read only when the prompts hold a GO task, then before any generation."""

    go_obo: str | None = None
    go_ontology_dir: str | None = None


@dataclass
class GRPOConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    bridge: BridgeSelection = field(default_factory=BridgeSelection)
    encoder: EncoderSelection = field(default_factory=EncoderSelection)
    data: GRPODataConfig = field(default_factory=GRPODataConfig)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(lr=5e-6, bridge_lr=2e-5))
    scheduler: SchedulerConfig = field(
        default_factory=lambda: SchedulerConfig(warmup_steps=0, decay_style="constant")
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    lora: LoRAConfig | None = None
    allow_untrained_bridge: bool = False  # starting GRPO from a random bridge is almost always a mistake
