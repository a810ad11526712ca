"""`flamingo`: a Perceiver resampler whose latents are the cross-attention context of tanh-gated
cross-attention blocks inserted before every k-th decoder layer (`bridges/blocks/gated_cross_attention.py`).

Reference shape: learned residue positions [2048, 1536], 64 latents, 6 layers, SwiGLU FFN (x4), blocks
before layers 3, 7, ..., 35 of a 36-layer Qwen3 (k = 4); the gates start at 0 so the model starts as the
plain LLM; the LLM is frozen (no LoRA).

Prompt: one `<|protein_start|><|protein_embed|><|protein_end|>` group per protein (`num_slots = 1`) marks
where a protein sits and how many a sample has; nothing is spliced into those slots, their (trainable)
token embeddings stay.

Pipeline parallelism: every stage that holds gated blocks needs the latents, and megatron's pipeline only
carries the hidden states between stages. Each pipeline stage therefore holds a replica of the resampler
and runs it on the same protein embeddings (the resampler is small next to a decoder stage, and this avoids
an extra point-to-point exchange per micro-batch). The replicas start identical (private RNG stream) and
stay identical when their gradients are summed over the pipeline group before the optimizer step:
`ProteinLLMModel.allreduce_pipeline_replicated_grads()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from protein_llm_nemo.bridges import BridgeConfig, register_bridge
from protein_llm_nemo.bridges.blocks.gated_cross_attention import GatedCrossAttention, has_cross_attention
from protein_llm_nemo.bridges.blocks.inputs import check_encoder_inputs
from protein_llm_nemo.bridges.blocks.layers import LayerFactory, module_dtype
from protein_llm_nemo.bridges.blocks.resampler import PerceiverResampler


@register_bridge("flamingo")
@dataclass
class FlamingoBridgeConfig(BridgeConfig):
    splices: ClassVar[bool] = False
    cross_attention: ClassVar[bool] = True
    test_sizes: ClassVar[dict[str, Any]] = dict(
        num_latents=4, num_layers=2, num_heads=4, ffn_mult=2, cross_attention_every=1
    )
    cpu_sizes: ClassVar[dict[str, Any]] = dict(
        num_latents=16, num_layers=1, num_heads=4, cross_attention_every=1
    )

    num_slots: int = 1  # placeholder tokens per protein; nothing is spliced
    num_latents: int = 64
    num_layers: int = 6
    num_heads: int = 8
    ffn_mult: int = 4
    max_residues: int = 2048  # learned residue positions: the longest protein it reads
    dropout: float = 0.0
    cross_attention_every: int = 4
    cross_attention_ffn_mult: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cross_attention_every < 1:
            raise ValueError(f"cross_attention_every must be >= 1, got {self.cross_attention_every}")

    def cross_attention_layers(self, num_layers: int) -> list[int]:
        return [i for i in range(num_layers) if has_cross_attention(i, self.cross_attention_every)]

    def cross_attention_block(
        self, layers: LayerFactory, hidden_size: int, num_heads: int, head_dim: int, eps: float
    ) -> GatedCrossAttention:
        return GatedCrossAttention(
            layers, hidden_size, self.context_dim, num_heads, head_dim, self.cross_attention_ffn_mult, eps
        )

    def build_module(self, layers: LayerFactory, hidden_size: int) -> FlamingoResampler:
        return FlamingoResampler(self, layers)


class FlamingoResampler(nn.Module):
    """`(embeddings [N, L, D], mask [N, L]) -> latents [N, num_latents, D]` (the cross-attention context)."""

    def __init__(self, config: FlamingoBridgeConfig, layers: LayerFactory) -> None:
        super().__init__()
        self.bridge_config = c = config
        self.input_norm = layers.layer_norm(c.encoder_dim) if c.normalize_input else nn.Identity()
        self.positions = layers.parameter(c.max_residues, c.encoder_dim)
        self.resampler = PerceiverResampler(
            layers,
            c.encoder_dim,
            c.num_latents,
            c.num_layers,
            c.num_heads,
            c.ffn_mult * c.encoder_dim,
            activation="swiglu",
            self_attention=False,
            dropout=c.dropout,
        )
        self.output_norm = layers.layer_norm(c.encoder_dim)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        c = self.bridge_config
        embeddings = embeddings.to(module_dtype(self))
        mask = check_encoder_inputs(embeddings, mask, c.encoder_dim)
        length = embeddings.shape[1]
        if length > c.max_residues:
            raise ValueError(
                f"proteins of {length} residues exceed the bridge's max_residues={c.max_residues}"
            )
        x = self.input_norm(embeddings) + self.positions[:length].to(embeddings.dtype)
        return self.output_norm(self.resampler(x, mask))
