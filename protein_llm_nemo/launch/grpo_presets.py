"""GRPO presets: the SFT presets' layouts (`launch.presets`) plus rollouts, with the memory arithmetic of a
GRPO step per GPU.

    preset = get_grpo_preset("qwen3-8b-1node")
    grpo_memory_per_gpu(preset, "text").gib()   # GiB per component and phase
    print(format_grpo_presets())                 # what `nemo-run recipes/grpo.py --list-presets` prints

GRPO (`recipes/grpo.py`) runs at the SFT preset of the same name (LLM, encoder, nodes, TP/PP, bf16, LoRA
r=16: the rank of the SFT adapters it continues) and adds rollouts. A step moves through three phases one
after the other, so memory per GPU is what every phase holds plus the largest phase:
  held        frozen weights + trainable states + encoder + reserve, as for SFT (`launch.presets`). The reference
              policy keeps its start weights on the CPU (`ReferencePolicy(offload=True)`): LoRA runs copy only
              the bridge (the adapters are switched off instead), full fine-tuning copies every weight.
  generation  the KV cache: rows x (prompt + max_new_tokens) tokens, per layer 2 (K, V) x kv_heads x
              head_dim x 2 B / TP, layers / PP per stage, plus one layer's copy while finished rows are
              dropped; rows per DP rank = ceil(ceil(num_prompts_per_step x batch_multiplier) / DP) x
              num_generations (dynamic sampling draws batch_multiplier x the prompts per round). Plus the
              prefill's working set (one layer at a time, no activations kept, only the last position's
              logits) and the decode logits rows x V / TP x 6 B.
  log-probs   the reference log-prob pass: forward only, so one layer's working set and the logits
              of one micro-batch; the reference pass swaps the start weights in and keeps the current ones
              on the GPU meanwhile (the bridge's tensors x 2 B / TP for LoRA runs).
  update      activations and logits of SFT's arithmetic at s = prompt + max_new_tokens (each step pads to
              its longest sample), b = the GRPO micro-batch.
Prompts: the encoder bridges' are <= 256 tokens (system prompt, instruction, two proteins' slots); the text
bridge spells residues out (~2 per token), so two 1,000-residue proteins make ~1,100 tokens: 1,280.
Rollouts: 64 prompts x 8 generations = 512 samples per step on 1 node, 128 x 8 on 2 nodes; dynamic sampling
(on) generates 2 x the prompts per round. Per GPU (`nemo-run recipes/grpo.py --list-presets`, GiB):
  qwen3-4b-1node  DP=8: 16 prompts x 8 = 128 rows; 36 layers x 2 x 8 kv heads x 128 x 2 B = 144 KiB/token
    text:     KV 128 x 1,792 x 144 KiB = 31.5 (+1 layer: 32.4) | update 36 x 1,792 x 4 x 2560 x 34 B = 20.9
              + logits 1,792 x 4 x 151,936 x 6 B = 6.1 | held 7.5 + 0.2 + 5 = 12.7       -> 12.7 + 34.1 = 46.8
    mlp:      KV 128 x 768 x 144 KiB = 13.9 | update 9.0 + 2.6 | held 15.5 (encoder 2.6)   -> 15.5 + 14.3 = 29.8
    flamingo: KV 13.9 | update (36 + 9 blocks) x 768 x 2: 5.6 + 1.3 | held 24.0 (8.9 states) -> 38.3
  qwen3-4b-2node  DP=16, 128 prompts: the same rows per GPU, the same figures (flamingo 37.4: ZeRO over 16).
  qwen3-8b-1node  TP=2 DP=4: 32 prompts x 8 = 256 rows; 72 KiB/token (kv heads over TP)
    text:     KV 256 x 1,792 x 72 KiB = 32.4 + prefill 3.5 | update 21.7 + 3.0 | held 12.2       -> 48.1
    flamingo: KV 13.9 | held 25.1 (10.5 states)                                                  -> 39.8
  qwen3-8b-2node  TP=2 PP=2 DP=4, 128 prompts: 512 rows over 18 layers per stage
    text:     KV 33.2 + prefill 7.1 | update 24.7 | held 8.9                                      -> 49.2
Every preset x bridge stays under 75% of an H100 (tested); the text bridge's long prompts are the largest.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from protein_llm_nemo.bridges import list_bridges
from protein_llm_nemo.launch.presets import (
    GIB,
    PRESETS,
    RecipePreset,
    bridge_trainable_parameters,
    memory_per_gpu,
)

__all__ = [
    "GRPO_PRESETS",
    "GRPOMemoryEstimate",
    "GRPOPreset",
    "format_grpo_presets",
    "get_grpo_preset",
    "grpo_memory_per_gpu",
]


@dataclass(frozen=True)
class GRPOPreset:
    """A GRPO launch shape: `layout` (the SFT preset of the same name: LLM, encoder, nodes, TP/PP, dtype, LoRA)
    plus rollouts. Samples per step = num_prompts_per_step x num_generations, trained in micro-batches of
    `micro_batch(bridge)` on every data-parallel rank."""

    name: str
    description: str
    layout: RecipePreset
    num_prompts_per_step: int
    num_generations: int
    max_new_tokens: int
    micro_batch_size: int
    micro_batch_size_by_bridge: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 256  # the longest prompt the arithmetic assumes (encoder bridges)
    prompt_tokens_by_bridge: dict[str, int] = field(default_factory=lambda: {"text": 1280})
    dynamic_sampling: bool = True
    batch_multiplier: float = 2.0
    overlong_filtering: bool = True
    max_steps: int = 500
    save_interval: int = 50  # rollouts are expensive: checkpoint often
    eval_interval: int = 50
    lr: float | None = None  # None: GRPOConfig's (5e-6 LLM / LoRA, 2e-5 bridge)
    bridge_lr: float | None = None

    # -- the layout is the SFT preset's
    @property
    def device(self) -> str:
        return self.layout.device

    @property
    def llm(self) -> str:
        return self.layout.llm

    @property
    def encoder(self) -> str:
        return self.layout.encoder

    @property
    def nodes(self) -> int:
        return self.layout.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.layout.gpus_per_node

    @property
    def tensor_model_parallel_size(self) -> int:
        return self.layout.tensor_model_parallel_size

    @property
    def pipeline_model_parallel_size(self) -> int:
        return self.layout.pipeline_model_parallel_size

    @property
    def data_parallel_size(self) -> int:
        return self.layout.data_parallel_size

    @property
    def lora_rank(self) -> int | None:
        return self.layout.lora_rank

    # -- rollouts
    @property
    def samples_per_step(self) -> int:
        return self.num_prompts_per_step * self.num_generations

    def micro_batch(self, bridge: str) -> int:
        return self.micro_batch_size_by_bridge.get(bridge, self.micro_batch_size)

    def micro_batches(self, bridge: str) -> int:
        """Micro-batches per data-parallel rank and step."""
        return self.samples_per_step // (self.micro_batch(bridge) * self.data_parallel_size)

    def prompt_length(self, bridge: str) -> int:
        return self.prompt_tokens_by_bridge.get(bridge, self.prompt_tokens)

    def width(self, bridge: str) -> int:
        """Tokens per trained sample at most: the longest prompt + the generation budget."""
        return self.prompt_length(bridge) + self.max_new_tokens

    def prompts_per_round(self) -> int:
        multiplier = self.batch_multiplier if self.dynamic_sampling else 1.0
        return math.ceil(self.num_prompts_per_step * multiplier)

    def generation_rows(self) -> int:
        """Rows one data-parallel rank generates at once: its share of a round's prompts x generations."""
        return -(-self.prompts_per_round() // self.data_parallel_size) * self.num_generations


def _grpo_h100(name: str, prompts: int, description: str) -> GRPOPreset:
    return GRPOPreset(
        name=name,
        description=description,
        layout=PRESETS[name],
        num_prompts_per_step=prompts,
        num_generations=8,
        max_new_tokens=512,  # the generation budget the rewards are sized for (rewards/base.py)
        micro_batch_size=4,
        micro_batch_size_by_bridge={"flamingo": 2},  # its trainable states and 9 extra blocks, as for SFT
    )


GRPO_PRESETS: dict[str, GRPOPreset] = {
    # CPU, one process: the tiny full fine-tuned policy of the SFT tiny-cpu preset (what `make demo` trains),
    # 4 prompts x 4 generations of 48 tokens, 2 micro-batches of 8. A 20-step SFT policy rarely writes a GO id
    # or ends its turn within the budget: no dynamic sampling (most groups score alike, over-sampling would
    # only add rounds) and no overlong filtering (it would leave no token to train). A larger lr than the real
    # presets' so that a few steps move the tiny model.
    "tiny-cpu": GRPOPreset(
        name="tiny-cpu",
        description="tiny policy of the SFT tiny-cpu preset on CPU, one process (the default; a few minutes)",
        layout=PRESETS["tiny-cpu"],
        num_prompts_per_step=4,
        num_generations=4,
        max_new_tokens=48,
        micro_batch_size=8,
        prompt_tokens=128,
        prompt_tokens_by_bridge={"text": 640},
        dynamic_sampling=False,
        overlong_filtering=False,
        max_steps=10,
        save_interval=0,
        eval_interval=0,
        lr=1e-4,
        bridge_lr=4e-4,
    ),
    "qwen3-4b-1node": _grpo_h100("qwen3-4b-1node", 64, "Qwen3-4B LoRA GRPO, 1 node x 8 H100: TP=1 PP=1 DP=8"),
    "qwen3-4b-2node": _grpo_h100(
        "qwen3-4b-2node", 128, "Qwen3-4B LoRA GRPO, 2 nodes x 8 H100: TP=1 PP=1 DP=16"
    ),
    "qwen3-8b-1node": _grpo_h100("qwen3-8b-1node", 64, "Qwen3-8B LoRA GRPO, 1 node x 8 H100: TP=2 PP=1 DP=4"),
    "qwen3-8b-2node": _grpo_h100(
        "qwen3-8b-2node", 128, "Qwen3-8B LoRA GRPO, 2 nodes x 8 H100: TP=2 PP=2 DP=4"
    ),
}


def get_grpo_preset(name: str) -> GRPOPreset:
    try:
        return GRPO_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(GRPO_PRESETS)}") from None


@dataclass(frozen=True)
class GRPOMemoryEstimate:
    """Bytes per GPU of a GRPO step by phase (see the module docstring)."""

    frozen_weights: float
    trainable_states: float
    encoder: float
    reserve: float
    kv_cache: float
    generation_work: float  # prefill working set + decode logits
    logprob_work: float  # one layer's working set + one micro-batch's logits
    reference_swap: float  # the current weights kept while the reference's are swapped in
    activations: float
    logits: float

    @property
    def held(self) -> float:
        return self.frozen_weights + self.trainable_states + self.encoder + self.reserve

    @property
    def phases(self) -> dict[str, float]:
        return {
            "generation": self.kv_cache + self.generation_work,
            "logprobs": self.logprob_work + self.reference_swap,
            "update": self.activations + self.logits,
        }

    @property
    def total(self) -> float:
        return self.held + max(self.phases.values())

    def gib(self) -> dict[str, float]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values |= {f"phase/{name}": value for name, value in self.phases.items()}
        return {
            name: value / GIB for name, value in (values | {"held": self.held, "total": self.total}).items()
        }


def grpo_memory_per_gpu(preset: GRPOPreset, bridge: str) -> GRPOMemoryEstimate:
    """The GRPO arithmetic for `preset` with `bridge` (GPU presets)."""
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    arch = qwen3_preset(preset.llm)
    tp, pp = preset.tensor_model_parallel_size, preset.pipeline_model_parallel_size
    width, micro = preset.width(bridge), preset.micro_batch(bridge)
    # The update is SFT's arithmetic at the GRPO micro-batch and width (weights, states, encoder alike).
    update = memory_per_gpu(
        dataclasses.replace(
            preset.layout, seq_length=width, micro_batch_size=micro, micro_batch_size_by_bridge={}
        ),
        bridge,
    )
    h, v, layers = arch.hidden_size, arch.vocab_size, arch.num_hidden_layers // pp
    layer_work = h * (10 + 24 / tp)  # bytes per token of one layer's working set
    rows = preset.generation_rows()
    kv_per_token = layers * 2 * arch.num_key_value_heads * arch.head_dim * 2 / tp
    kv_cache = rows * width * kv_per_token * (1 + 1 / layers)
    prompts = rows // preset.num_generations
    generation_work = prompts * preset.prompt_length(bridge) * layer_work + rows * v / tp * 6.0
    logprob_work = width * micro * (layer_work + v / tp * 6.0)
    module, block, blocks = bridge_trainable_parameters(preset.llm, preset.encoder, bridge)
    swapped = module + block * -(-blocks // pp)  # LoRA runs: the bridge side only
    if preset.layout.full_finetune:
        swapped += arch.num_parameters() / pp
    return GRPOMemoryEstimate(
        frozen_weights=update.frozen_weights,
        trainable_states=update.trainable_states,
        encoder=update.encoder,
        reserve=update.reserve,
        kv_cache=kv_cache,
        generation_work=generation_work,
        logprob_work=logprob_work,
        reference_swap=2.0 * swapped / tp,
        activations=update.activations,
        logits=update.logits,
    )


def format_grpo_presets() -> str:
    """What `nemo-run recipes/grpo.py --list-presets` prints."""
    lines = []
    for preset in GRPO_PRESETS.values():
        head = (
            f"{preset.name:<16} {preset.description}; {preset.num_prompts_per_step} prompts x "
            f"{preset.num_generations} generations of <= {preset.max_new_tokens} tokens"
        )
        lines.append(head)
        if preset.device == "cpu":
            continue
        for bridge in list_bridges():
            est = grpo_memory_per_gpu(preset, bridge).gib()
            lines.append(
                f"{'':<18}{bridge:<10} micro {preset.micro_batch(bridge)} x {preset.micro_batches(bridge):<2} "
                f"per rank, {preset.generation_rows()} rows x {preset.width(bridge)} tokens "
                f"~{est['total']:5.1f} GiB/GPU (held {est['held']:.1f}; generation "
                f"{est['phase/generation']:.1f} (KV {est['kv_cache']:.1f}), log-probs {est['phase/logprobs']:.1f}, "
                f"update {est['phase/update']:.1f})"
            )
    return "\n".join(lines)
