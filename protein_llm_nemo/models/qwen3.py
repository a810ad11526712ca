"""Qwen3 as a megatron-core GPTModel: architecture presets, HF config <-> TransformerConfig, model builder.

Qwen3 in megatron vocabulary: RMSNorm, SwiGLU (`gated_linear_unit` + SiLU), no linear biases,
per-head RMSNorm on queries and keys (`qk_layernorm`), grouped-query attention
(`num_query_groups`), rotary embeddings with a large base, tied embeddings up to 4B.

megatron pads the output layer to a multiple of 128 x TP rows; those rows are not tokens (HF Qwen3 has
none). `build_qwen3_model` builds a `Qwen3GPTModel` (`models/qwen3_gpt.py`), a `GPTModel` whose loss
(`labels=...`) is the cross entropy over the real vocabulary only, so every caller of the model gets HF's loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from protein_llm_nemo.tokenizer.special_tokens import QWEN3_EOS_ID, QWEN3_PAD_ID

QWEN3_VOCAB_SIZE = 151936  # the padded embedding size of the released checkpoints
VOCAB_DIVISIBLE_BY = 128


@dataclass(frozen=True)
class Qwen3Arch:
    """The architecture fields of a Qwen3 checkpoint (names follow `transformers.Qwen3Config`)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int = QWEN3_VOCAB_SIZE
    tie_word_embeddings: bool = False
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 40960
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> Qwen3Arch:
        model_type = getattr(hf_config, "model_type", None)
        if model_type != "qwen3":
            raise ValueError(
                f"expected a Qwen3 checkpoint (model_type 'qwen3'), got model_type {model_type!r}"
            )
        rope_theta = getattr(hf_config, "rope_theta", None)
        if rope_theta is None:  # transformers >= 5 keeps it in rope_parameters
            rope_params = getattr(hf_config, "rope_parameters", None) or {}
            rope_theta = rope_params.get("rope_theta", 1_000_000.0)
            if rope_params.get("rope_type", "default") != "default":
                raise ValueError(f"rope scaling {rope_params.get('rope_type')!r} is not supported yet")
        head_dim = (
            getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
        )
        return cls(
            hidden_size=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size,
            num_hidden_layers=hf_config.num_hidden_layers,
            num_attention_heads=hf_config.num_attention_heads,
            num_key_value_heads=hf_config.num_key_value_heads,
            head_dim=head_dim,
            vocab_size=hf_config.vocab_size,
            tie_word_embeddings=bool(hf_config.tie_word_embeddings),
            rope_theta=float(rope_theta),
            rms_norm_eps=hf_config.rms_norm_eps,
            max_position_embeddings=hf_config.max_position_embeddings,
            initializer_range=getattr(hf_config, "initializer_range", 0.02),
        )

    def to_hf_config(self, torch_dtype: torch.dtype = torch.float32) -> Any:
        """The `transformers.Qwen3Config`, with Qwen3's bos/eos ids (`<|endoftext|>`, `<|im_end|>`, as its
        releases' config.json) when the vocabulary holds them."""
        from transformers import Qwen3Config

        has_qwen3_tokens = self.vocab_size > max(QWEN3_EOS_ID, QWEN3_PAD_ID)
        return Qwen3Config(
            bos_token_id=QWEN3_PAD_ID if has_qwen3_tokens else None,
            eos_token_id=QWEN3_EOS_ID if has_qwen3_tokens else None,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            vocab_size=self.vocab_size,
            tie_word_embeddings=self.tie_word_embeddings,
            rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            initializer_range=self.initializer_range,
            hidden_act="silu",
            attention_bias=False,
            attention_dropout=0.0,
            torch_dtype=torch_dtype,
            dtype=torch_dtype,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Qwen3Arch:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown Qwen3 architecture fields: {sorted(unknown)}")
        return cls(**values)

    def num_parameters(self) -> int:
        h, layers = self.hidden_size, self.num_hidden_layers
        q = self.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        per_layer = h * (q + 2 * kv) + q * h + 3 * h * self.intermediate_size + 2 * h + 2 * self.head_dim
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return layers * per_layer + embeddings + h


# The released Qwen3 dense models, from each model's config.json on the hub (`Qwen/Qwen3-<size>`). Shapes as in
# NVIDIA-NeMo/Megatron-Bridge src/megatron/bridge/models/qwen/qwen_provider.py (Qwen3ModelProvider600M, 1P7B,
# 4B, 8B, 14B, 32B, each naming its hub model), whose Qwen3ModelProvider base also gives what all six share:
# head_dim 128, 8 KV heads, vocab 151,936, rope_theta 1,000,000, 40,960 positions, rms_norm_eps 1e-6
# (the Qwen3Arch defaults); tied embeddings for 0.6B, 1.7B and 4B.
_QWEN3_4B = Qwen3Arch(2560, 9728, 36, 32, 8, 128, tie_word_embeddings=True)
QWEN3_PRESETS: dict[str, Qwen3Arch] = {
    # CPU-sized test models (no released counterpart).
    "tiny": Qwen3Arch(64, 128, 2, 4, 2, 16, tie_word_embeddings=False),
    "tiny-tied": Qwen3Arch(64, 128, 2, 4, 2, 16, tie_word_embeddings=True),
    # Qwen/Qwen3-0.6B: Qwen3ModelProvider600M
    "0.6b": Qwen3Arch(1024, 3072, 28, 16, 8, 128, tie_word_embeddings=True),
    # Qwen/Qwen3-1.7B: Qwen3ModelProvider1P7B
    "1.7b": Qwen3Arch(2048, 6144, 28, 16, 8, 128, tie_word_embeddings=True),
    # Qwen/Qwen3-4B (the April 2025 hybrid-thinking release): Qwen3ModelProvider4B
    "4b": _QWEN3_4B,
    # Qwen/Qwen3-4B-Instruct-2507 and Qwen/Qwen3-4B-Thinking-2507: Qwen3-4B's shape with rope_theta 5,000,000
    # and 262,144 positions (their config.json, as reproduced in akougkas/warpio-cli
    # warpio-docs/ai-docs/model_cards/qwen3:4b.md).
    "4b-2507": dataclasses.replace(_QWEN3_4B, rope_theta=5_000_000.0, max_position_embeddings=262144),
    # Qwen/Qwen3-8B: Qwen3ModelProvider8B
    "8b": Qwen3Arch(4096, 12288, 36, 32, 8, 128, tie_word_embeddings=False),
    # Qwen/Qwen3-14B: Qwen3ModelProvider14B
    "14b": Qwen3Arch(5120, 17408, 40, 40, 8, 128, tie_word_embeddings=False),
    # Qwen/Qwen3-32B: Qwen3ModelProvider32B
    "32b": Qwen3Arch(5120, 25600, 64, 64, 8, 128, tie_word_embeddings=False),
}


def qwen3_preset(name: str) -> Qwen3Arch:
    try:
        return QWEN3_PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown Qwen3 preset {name!r}; choose one of {sorted(QWEN3_PRESETS)}") from None


def qwen3_arch_of(model: Any) -> dict[str, Any]:
    """The architecture fields a built Qwen3 `GPTModel` (this rank's stage) really has, read off its config and
    its embedding setup rather than the `Qwen3Arch` it was asked for: what a checkpoint must match."""
    config = model.config
    return {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.ffn_hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_query_groups or config.num_attention_heads,
        "head_dim": config.kv_channels,
        "vocab_size": getattr(model, "real_vocab_size", model.vocab_size),
        "tie_word_embeddings": bool(model.share_embeddings_and_output_weights),
        "rope_theta": float(model.rotary_base),
        "rms_norm_eps": config.layernorm_epsilon,
        "max_position_embeddings": model.max_sequence_length,
    }


def padded_vocab_size(vocab_size: int, tensor_model_parallel_size: int = 1) -> int:
    """Round the vocabulary up so every tensor-parallel shard is a multiple of 128 rows."""
    multiple = VOCAB_DIVISIBLE_BY * tensor_model_parallel_size
    return -(-vocab_size // multiple) * multiple


def transformer_engine_available() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def transformer_config(
    arch: Qwen3Arch,
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    params_dtype: torch.dtype = torch.float32,
    **overrides: Any,
):
    """The megatron `TransformerConfig` of a Qwen3 architecture at a given parallel layout."""
    from megatron.core.transformer import TransformerConfig

    on_gpu = torch.cuda.is_available()
    values: dict[str, Any] = dict(
        num_layers=arch.num_hidden_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.intermediate_size,
        num_attention_heads=arch.num_attention_heads,
        num_query_groups=arch.num_key_value_heads,
        kv_channels=arch.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=arch.rms_norm_eps,
        qk_layernorm=True,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=arch.initializer_range,
        attention_softmax_in_fp32=True,
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        params_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        pipeline_dtype=params_dtype,
        # Initialise full weights on the CPU and slice them: the same seed gives the same model at any TP.
        use_cpu_initialization=True,
        perform_initialization=True,
        # Fusions need apex/TE kernels; the local CPU path keeps them off.
        bias_activation_fusion=on_gpu and transformer_engine_available(),
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        sequence_parallel=False,
    )
    values.update(overrides)
    return TransformerConfig(**values)


def layer_spec(arch: Qwen3Arch, use_transformer_engine: bool | None = None):
    """TransformerEngine's fused spec when it is importable on a GPU, megatron's local spec otherwise (with
    `PackedDotProductAttention`, so packed rows work without TE too)."""
    from megatron.core.models.gpt import gpt_layer_specs

    if use_transformer_engine is None:
        use_transformer_engine = transformer_engine_available()
    if use_transformer_engine:
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec(qk_layernorm=True)
    from protein_llm_nemo.models.attention import PackedDotProductAttention

    spec = gpt_layer_specs.get_gpt_layer_local_spec(qk_layernorm=True, normalization="RMSNorm")
    # Packed (thd) rows attend per sample instead of densely over the whole row with a block mask.
    spec.submodules.self_attention.submodules.core_attention = PackedDotProductAttention
    return spec


def build_qwen3_model(
    arch: Qwen3Arch,
    config=None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    spec=None,
    parallel_output: bool = True,
):
    """Build this rank's stage of a Qwen3 `Qwen3GPTModel` (parallel groups must be initialised)."""
    from megatron.core import parallel_state

    if config is None:
        config = transformer_config(
            arch,
            tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
            pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        )
    if config.num_layers % config.pipeline_model_parallel_size:
        raise ValueError(
            f"{config.num_layers} layers cannot be split evenly over "
            f"pipeline_model_parallel_size={config.pipeline_model_parallel_size}"
        )
    if arch.num_key_value_heads % config.tensor_model_parallel_size:
        raise ValueError(
            f"num_key_value_heads={arch.num_key_value_heads} is not divisible by "
            f"tensor_model_parallel_size={config.tensor_model_parallel_size}"
        )
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    from protein_llm_nemo.models.qwen3_gpt import qwen3_gpt_model_class

    return qwen3_gpt_model_class()(
        config=config,
        transformer_layer_spec=spec if spec is not None else layer_spec(arch),
        vocab_size=padded_vocab_size(arch.vocab_size, config.tensor_model_parallel_size),
        max_sequence_length=arch.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=parallel_output,
        share_embeddings_and_output_weights=arch.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=int(arch.rope_theta),
        rotary_percent=1.0,
        real_vocab_size=arch.vocab_size,
    )
