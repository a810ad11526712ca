"""Recipe presets: the CPU default and Qwen3-4B / 8B SFT on 1 and 2 nodes of 8x H100 80GB, with the
memory-per-GPU arithmetic next to each (GRPO's presets, which add rollouts to these layouts, are in
`launch.grpo_presets`).

    preset = get_preset("qwen3-8b-1node")
    estimate = memory_per_gpu(preset, "flamingo")     # MemoryEstimate: GiB per component, total
    print(format_presets())                            # what `nemo-run recipes/sft.py --list-presets` prints

The arithmetic (bytes per GPU, the most loaded pipeline stage, bf16 weights, megatron DDP + Adam):
  frozen LLM      2 * P_llm / (TP * PP)  (+ the embedding or output layer on the first / last stage)
  trainable       bridge + LoRA adapters: bf16 param 2 + fp32 main grad 4 + fp32 master 4 + Adam m, v 8
                  = 18 B/param, or 6 + 12/DP with the distributed optimizer (ZeRO-1), all / TP
  activations     per layer s*b*h*(10 + 24/TP) bytes (Korthikanti et al. 2022, bf16, flash attention,
                  no sequence parallel: the CPU-compatible megatron path keeps it off); the first stage
                  holds PP micro-batches of L/PP layers under 1F1B = L layers' worth. Flamingo's gated
                  cross-attention blocks count as one layer each. Full recomputation keeps 2*s*b*h per layer
                  plus one layer's working set.
  logits + loss   s*b*V/TP * 6 bytes (bf16 logits + fp32 softmax / gradient), last stage
  encoder         the frozen protein encoder in bf16 (ESM3-open 1.4B = 2.8 GB), 0 with `encoder.cache_dir`
  reserve         5 GiB: CUDA context, NCCL buffers, allocator fragmentation
Parameter counts come from `Qwen3Arch.num_parameters()` and each bridge's own modules counted on the meta
device (`bridges.sizes.bridge_parameter_count`, what `protein-llm bridge-sizes` prints), at the preset
encoder's width; cross-attending bridges add one activation layer per block they insert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from protein_llm_nemo.bridges import get_bridge_config, get_bridge_config_class, list_bridges

__all__ = [
    "ENCODER_PARAMS",
    "H100_MEMORY_GIB",
    "PRESETS",
    "MemoryEstimate",
    "bridge_trainable_parameters",
    "RecipePreset",
    "format_presets",
    "get_preset",
    "memory_per_gpu",
]

H100_MEMORY_GIB = 80.0
GIB = 1024**3
ENCODER_PARAMS = {"esm3-open": 1_400_000_000, "esmc-tiny": 0}


@dataclass(frozen=True)
class RecipePreset:
    """One launch shape. `nodes` x `gpus_per_node` ranks; DP = ranks / (TP x PP).

    `micro_batch_size` applies to every bridge but those in `micro_batch_size_by_bridge`, where a bridge
    changes the memory (flamingo's cross-attention blocks and 1.2-2.5B trainable parameters); recompute is
    "none" | "selective" | "full" (megatron's `recompute_granularity`)."""

    name: str
    description: str
    llm: str  # Qwen3 preset of protein_llm_nemo.models.qwen3
    encoder: str
    device: str  # "cpu" | "h100"
    nodes: int = 1
    gpus_per_node: int = 0
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    seq_length: int = 64
    micro_batch_size: int = 1
    micro_batch_size_by_bridge: dict[str, int] = field(default_factory=dict)
    global_batch_size: int = 4
    recompute: str = "none"
    params_dtype: str = "float32"
    lora_rank: int | None = None
    use_distributed_optimizer: bool = False
    max_steps: int = 20
    warmup_steps: int = 2
    full_finetune: bool = False  # train the LLM's own weights (else frozen, LoRA when lora_rank is set)
    lr: float | None = None  # LLM / LoRA peak lr (None: OptimizerConfig's 2e-4)

    @property
    def world_size(self) -> int:
        return max(self.nodes * self.gpus_per_node, 1)

    @property
    def data_parallel_size(self) -> int:
        return self.world_size // (self.tensor_model_parallel_size * self.pipeline_model_parallel_size)

    def micro_batch(self, bridge: str) -> int:
        return self.micro_batch_size_by_bridge.get(bridge, self.micro_batch_size)

    def gradient_accumulation(self, bridge: str) -> int:
        return self.global_batch_size // (self.micro_batch(bridge) * self.data_parallel_size)


def _h100(name: str, llm: str, nodes: int, tp: int, pp: int, micro: int, **kw) -> RecipePreset:
    return RecipePreset(
        name=name,
        llm=llm,
        encoder="esm3-open",
        device="h100",
        nodes=nodes,
        gpus_per_node=8,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        seq_length=4096,
        micro_batch_size=micro,
        micro_batch_size_by_bridge=dict(_MICRO_BY_BRIDGE),
        global_batch_size=128,
        params_dtype="bfloat16",
        lora_rank=16,
        use_distributed_optimizer=True,
        max_steps=2000,
        warmup_steps=100,
        **kw,
    )


# flamingo's cross-attention blocks add a layer's activations per block: half the micro-batch
_MICRO_BY_BRIDGE = {"flamingo": 1}

PRESETS: dict[str, RecipePreset] = {
    # CPU, one process: tiny Qwen3 (2 layers, H=64, the real 151,936-token vocabulary) + the tiny ESM C
    # encoder, 256-token packed rows, micro 2 x GA 2. The random tiny LLM is fine-tuned in full at lr 2e-3
    # (a frozen random LLM would leave the loss flat). Memory: 19.6M parameters * 16 B (fp32 + Adam) ~ 0.3 GB.
    "tiny-cpu": RecipePreset(
        name="tiny-cpu",
        description="tiny Qwen3 + tiny encoder on CPU, one process (the default; a few minutes)",
        llm="tiny",
        encoder="esmc-tiny",
        device="cpu",
        seq_length=256,
        micro_batch_size=2,
        global_batch_size=4,
        max_steps=20,
        warmup_steps=2,
        full_finetune=True,
        lr=2e-3,
    ),
    # Qwen3-4B (4.02B, tied), 1 node: TP=1 PP=1 DP=8 (the whole model fits on one GPU; DP is nearly free
    # because only LoRA + bridge gradients are reduced). s=4096 packed, micro 2 (flamingo 1), global 128.
    #   frozen LLM 2*4.02B = 7.5 GiB | activations 36 layers * 4096*2560*34 B * micro 2 = 23.9 GiB
    #   logits 4096*151936*6 B * 2 = 7.0 GiB | encoder 2.6 GiB | reserve 5 GiB
    #   mlp 30.5M + LoRA 28.6M trainable * (6 + 12/8) B = 0.4 GiB            -> mlp   ~ 46 GiB / 80
    #   flamingo 1.24B * 7.5 B = 8.7 GiB; activations (36 + 9 blocks) * micro 1 = 14.9 GiB -> ~ 42 GiB / 80
    "qwen3-4b-1node": _h100(
        "qwen3-4b-1node",
        "4b",
        nodes=1,
        tp=1,
        pp=1,
        micro=2,
        description="Qwen3-4B LoRA SFT, 1 node x 8 H100: TP=1 PP=1 DP=8",
    ),
    # Qwen3-4B, 2 nodes: TP=1 PP=1 DP=16 (same per-GPU memory as 1 node; the distributed optimizer shards
    # flamingo's 1.24B trainable over 16: 1.24B * (6 + 12/16) B = 7.8 GiB). Gradient accumulation halves.
    "qwen3-4b-2node": _h100(
        "qwen3-4b-2node",
        "4b",
        nodes=2,
        tp=1,
        pp=1,
        micro=2,
        description="Qwen3-4B LoRA SFT, 2 nodes x 8 H100: TP=1 PP=1 DP=16",
    ),
    # Qwen3-8B (8.19B, untied), 1 node: TP=2 PP=1 DP=4. TP=1 would need ~16 GiB of weights + 2.46B flamingo
    # trainable * 7.5 B = 17 GiB + 20 GiB of activations: too tight. TP=2 stays inside NVLink.
    #   frozen LLM 2*8.19B/2 = 7.6 GiB | activations 36 * 4096*4096*(10+24/2) B * micro 2 = 24.8 GiB
    #   logits 4096*151936*6/2 B * 2 = 3.5 GiB | encoder 2.6 GiB | reserve 5 GiB
    #   mlp 38M + LoRA 36.6M trainable / 2 * (6 + 12/4) B = 0.3 GiB          -> mlp   ~ 43 GiB / 80
    #   flamingo 2.46B / 2 * 9 B = 10.3 GiB; activations (36 + 9) * micro 1 = 15.5 GiB    -> ~ 42 GiB / 80
    "qwen3-8b-1node": _h100(
        "qwen3-8b-1node",
        "8b",
        nodes=1,
        tp=2,
        pp=1,
        micro=2,
        description="Qwen3-8B LoRA SFT, 1 node x 8 H100: TP=2 PP=1 DP=4",
    ),
    # Qwen3-8B, 2 nodes: TP=2 (inside a node) PP=2 (across nodes: one activation send per micro-batch
    # instead of TP all-reduces over the network) DP=4. Halves the per-GPU weights and flamingo blocks;
    # the first stage still holds L layers' activations under 1F1B, so activations stay ~25 GiB:
    #   frozen LLM (18 layers + embedding) 2*(3.78B + 0.62B)/2 = 4.1 GiB | logits on the last stage only
    #   flamingo 5 blocks on stage 0 + resampler: ~1.4B / 2 * 9 B = 6.0 GiB  -> mlp ~ 40, flamingo ~ 35 GiB / 80
    "qwen3-8b-2node": _h100(
        "qwen3-8b-2node",
        "8b",
        nodes=2,
        tp=2,
        pp=2,
        micro=2,
        description="Qwen3-8B LoRA SFT, 2 nodes x 8 H100: TP=2 PP=2 DP=4",
    ),
}


def get_preset(name: str) -> RecipePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU on the most loaded pipeline stage, by component."""

    frozen_weights: float
    trainable_states: float
    activations: float
    logits: float
    encoder: float
    reserve: float

    @property
    def total(self) -> float:
        return (
            self.frozen_weights
            + self.trainable_states
            + self.activations
            + self.logits
            + self.encoder
            + self.reserve
        )

    def gib(self) -> dict[str, float]:
        fields = ("frozen_weights", "trainable_states", "activations", "logits", "encoder", "reserve")
        return {name: getattr(self, name) / GIB for name in (*fields, "total")}


def lora_parameters(arch, rank: int) -> int:
    """LoRA A/B parameters on linear_qkv, linear_proj, linear_fc1, linear_fc2 of every layer."""
    h, q = arch.hidden_size, arch.num_attention_heads * arch.head_dim
    kv, ffn = arch.num_key_value_heads * arch.head_dim, arch.intermediate_size
    per_layer = rank * ((h + q + 2 * kv) + (q + h) + (h + 2 * ffn) + (ffn + h))
    return arch.num_hidden_layers * per_layer


@cache
def bridge_trainable_parameters(llm: str, encoder: str, bridge: str) -> tuple[int, int, int]:
    """`(bridge module, one cross-attention block, number of blocks)` parameters of `bridge` at real size."""
    from protein_llm_nemo.bridges.sizes import bridge_parameter_count
    from protein_llm_nemo.encoders import get_encoder_config
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    fields = {"encoder_dim": get_encoder_config(encoder).embedding_dim}
    config = get_bridge_config(bridge, **(fields if get_bridge_config_class(bridge).uses_encoder else {}))
    return bridge_parameter_count(config, qwen3_preset(llm))


def memory_per_gpu(preset: RecipePreset, bridge: str) -> MemoryEstimate:
    """The arithmetic of the module docstring for `preset` with `bridge` (GPU presets)."""
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    uses_encoder = get_bridge_config_class(bridge).uses_encoder  # also rejects unknown bridges
    arch = qwen3_preset(preset.llm)
    tp, pp = preset.tensor_model_parallel_size, preset.pipeline_model_parallel_size
    dp = preset.data_parallel_size
    s, b, h, v = preset.seq_length, preset.micro_batch(bridge), arch.hidden_size, arch.vocab_size
    layers = arch.num_hidden_layers
    embedding = v * h
    layer_params = (arch.num_parameters() - embedding * (1 if arch.tie_word_embeddings else 2) - h) / layers
    # The first stage: L/PP layers + the input embedding (the last stage's output layer is the same size).
    frozen = 2.0 * (layer_params * layers / pp + embedding) / tp
    bytes_per_trainable = (6.0 + 12.0 / dp) if preset.use_distributed_optimizer else 18.0
    module, block, blocks = bridge_trainable_parameters(preset.llm, preset.encoder, bridge)
    # Cross-attention blocks split over the stages; a cross-attending bridge's module sits on every stage.
    bridge_params = module + block * -(-blocks // pp)
    lora = lora_parameters(arch, preset.lora_rank) / pp if preset.lora_rank else 0
    trainable = (bridge_params + lora) / tp * bytes_per_trainable
    per_layer = s * b * h * (10 + 24 / tp)
    if preset.recompute == "full":
        activations = 2.0 * s * b * h * (layers + blocks) + per_layer
    else:
        activations = per_layer * (layers + blocks)
    logits = s * b * v / tp * 6.0
    encoder = 2.0 * ENCODER_PARAMS.get(preset.encoder, 0) if uses_encoder else 0.0
    return MemoryEstimate(frozen, trainable, activations, logits, encoder, 5.0 * GIB)


def format_presets() -> str:
    lines = []
    for preset in PRESETS.values():
        if preset.device == "cpu":
            lines.append(f"{preset.name:<16} {preset.description}")
            continue
        lines.append(
            f"{preset.name:<16} {preset.description}; seq {preset.seq_length}, global batch "
            f"{preset.global_batch_size}, recompute {preset.recompute}, LoRA r={preset.lora_rank}"
        )
        for bridge in list_bridges():
            est = memory_per_gpu(preset, bridge).gib()
            lines.append(
                f"{'':<18}{bridge:<10} micro {preset.micro_batch(bridge)} x DP {preset.data_parallel_size} "
                f"x GA {preset.gradient_accumulation(bridge):<3} ~{est['total']:5.1f} GiB/GPU "
                f"(weights {est['frozen_weights']:.1f}, trainable {est['trainable_states']:.1f}, "
                f"activations {est['activations']:.1f}, logits {est['logits']:.1f}, "
                f"encoder {est['encoder']:.1f}, reserve {est['reserve']:.0f})"
            )
    return "\n".join(lines)
