"""`mlp`: attention pooling (learned queries) then megatron-core's `MultimodalProjector` to the LLM width.

Reference shape (ESM3-open 1536 -> Qwen3-8B 4096): 32 queries N(0, 0.02), MHA(1536, 8 heads, dropout 0.1),
LayerNorm; projector Linear(1536 -> 5120) -> GELU -> Dropout(0.1) -> Linear(5120 -> H). Pooling 9.50M +
projector 28.85M parameters. The projector is `MultimodalProjector(projector_type="mlp")` on the megatron
side (column-parallel -> row-parallel) and its twin with the same names on the HF side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from protein_llm_nemo.bridges import BridgeConfig, register_bridge
from protein_llm_nemo.bridges.blocks.inputs import check_encoder_inputs
from protein_llm_nemo.bridges.blocks.layers import LayerFactory, module_dtype
from protein_llm_nemo.bridges.blocks.resampler import AttentionPooling


@register_bridge("mlp")
@dataclass
class MLPBridgeConfig(BridgeConfig):
    test_sizes: ClassVar[dict[str, Any]] = dict(num_slots=4, num_heads=4, projector_hidden_size=48)
    cpu_sizes: ClassVar[dict[str, Any]] = dict(num_slots=8, num_heads=4, projector_hidden_size=128)

    num_slots: int = 32  # learned queries = slot vectors per protein
    num_heads: int = 8
    attention_dropout: float = 0.1
    projector_hidden_size: int = 5120
    projector_dropout: float = 0.1

    def build_module(self, layers: LayerFactory, hidden_size: int) -> MLPBridge:
        return MLPBridge(self, layers, hidden_size)


class MLPBridge(nn.Module):
    """`(embeddings [N, L, D], mask [N, L]) -> [N, num_slots, hidden_size]`."""

    def __init__(self, config: MLPBridgeConfig, layers: LayerFactory, hidden_size: int) -> None:
        super().__init__()
        self.bridge_config = c = config
        self.input_norm = layers.layer_norm(c.encoder_dim) if c.normalize_input else nn.Identity()
        self.pooling = AttentionPooling(layers, c.encoder_dim, c.num_slots, c.num_heads, c.attention_dropout)
        self.projector = layers.projector(
            "mlp", c.encoder_dim, hidden_size, hidden_dim=c.projector_hidden_size, dropout=c.projector_dropout
        )

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = embeddings.to(module_dtype(self))
        mask = check_encoder_inputs(embeddings, mask, self.bridge_config.encoder_dim)
        return self.projector(self.pooling(self.input_norm(embeddings), mask))
