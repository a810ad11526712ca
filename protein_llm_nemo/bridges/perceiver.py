"""`perceiver`: a Perceiver resampler (32 latents, 2 layers of self-attn + cross-attn + FFN) then a projection.

Reference shape: input Linear(1536 -> 1024, Xavier); latents [32, 1024]; 2 pre-norm layers, 8 heads,
FFN 1024 -> 2048 -> 1024 GELU; final LayerNorm + Linear(1024 -> H) (megatron's `MultimodalProjector`,
`affine`). 31.0M parameters into Qwen3-8B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from protein_llm_nemo.bridges import BridgeConfig, register_bridge
from protein_llm_nemo.bridges.blocks.inputs import check_encoder_inputs
from protein_llm_nemo.bridges.blocks.layers import LayerFactory, module_dtype
from protein_llm_nemo.bridges.blocks.resampler import PerceiverResampler


@register_bridge("perceiver")
@dataclass
class PerceiverBridgeConfig(BridgeConfig):
    test_sizes: ClassVar[dict[str, Any]] = dict(
        num_slots=4, latent_dim=24, num_heads=4, ffn_hidden_size=40, num_layers=2
    )
    cpu_sizes: ClassVar[dict[str, Any]] = dict(
        num_slots=8, latent_dim=64, num_layers=1, num_heads=4, ffn_hidden_size=128
    )

    num_slots: int = 32  # latents = slot vectors per protein
    latent_dim: int = 1024
    num_layers: int = 2
    num_heads: int = 8
    ffn_hidden_size: int = 2048
    dropout: float = 0.1

    def build_module(self, layers: LayerFactory, hidden_size: int) -> PerceiverBridge:
        return PerceiverBridge(self, layers, hidden_size)


class PerceiverBridge(nn.Module):
    """`(embeddings [N, L, D], mask [N, L]) -> [N, num_slots, hidden_size]`."""

    def __init__(self, config: PerceiverBridgeConfig, layers: LayerFactory, hidden_size: int) -> None:
        super().__init__()
        self.bridge_config = c = config
        self.input_norm = layers.layer_norm(c.encoder_dim) if c.normalize_input else nn.Identity()
        # Column-parallel with a gathered output: the weight is sharded, the activations stay full width.
        self.input_proj = layers.column(c.encoder_dim, c.latent_dim, gather_output=True)
        self.resampler = PerceiverResampler(
            layers,
            c.latent_dim,
            c.num_slots,
            c.num_layers,
            c.num_heads,
            c.ffn_hidden_size,
            activation="gelu",
            self_attention=True,
            dropout=c.dropout,
        )
        self.output_norm = layers.layer_norm(c.latent_dim)
        self.output_proj = layers.projector("affine", c.latent_dim, hidden_size)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = embeddings.to(module_dtype(self))
        mask = check_encoder_inputs(embeddings, mask, self.bridge_config.encoder_dim)
        latents = self.resampler(self.input_proj(self.input_norm(embeddings))[0], mask)
        return self.output_proj(self.output_norm(latents))
