"""Flamingo's tanh-gated cross-attention block, written once for the megatron decoder layer
(`bridges/blocks/flamingo_layer.py`) and the HF twin (a forward pre-hook on a Qwen3 decoder layer):

    y = x + tanh(a) * XAttn(LN(x), LN(context))
    z = y + tanh(b) * SwiGLU(LN(y))          a = b = 0 at init: the block is exactly the identity

Batch-first: `hidden [B, S, H]`, `context [B, C, D]`, `context_mask [B, C]` (or per token `[B, S, C]`)
with True = ignore (megatron's convention for masks).
"""

from __future__ import annotations

import torch
from torch import nn

from protein_llm_nemo.bridges.blocks.attention import Attention, FeedForward
from protein_llm_nemo.bridges.blocks.layers import LayerFactory

__all__ = ["GATE_PARAMETER_NAMES", "GatedCrossAttention", "has_cross_attention"]

GATE_PARAMETER_NAMES = ("attn_gate", "ffn_gate")


def has_cross_attention(layer_index: int, every: int) -> bool:
    """Global 0-based decoder layer `layer_index` gets a gated block when `(index + 1) % every == 0`."""
    return every > 0 and (layer_index + 1) % every == 0


class GatedCrossAttention(nn.Module):
    """Tanh-gated cross-attention + SwiGLU block (heads and FFN units split over TP)."""

    def __init__(
        self,
        layers: LayerFactory,
        hidden_size: int,
        context_dim: int,
        num_heads: int,
        head_dim: int,
        ffn_mult: int = 4,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm = layers.layer_norm(hidden_size, eps)
        self.context_norm = layers.layer_norm(context_dim, eps)
        self.attention = Attention(
            layers, hidden_size, context_dim, num_heads, head_dim=head_dim, output_dim=hidden_size, bias=False
        )
        self.attn_gate = nn.Parameter(torch.zeros(1, dtype=layers.params_dtype))
        self.ffn_norm = layers.layer_norm(hidden_size, eps)
        self.ffn = FeedForward(
            layers, hidden_size, ffn_mult * hidden_size, hidden_size, activation="swiglu", bias=False
        )
        self.ffn_gate = nn.Parameter(torch.zeros(1, dtype=self.attn_gate.dtype))

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor | None, context_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Without context (no protein in the batch) the attention term is 0, as for a token whose proteins
        are all masked, and the gated FFN still runs: a sample's output does not depend on its batch."""
        x = hidden_states
        y = x
        if context is not None:
            ctx = self.context_norm(context.to(x.dtype))
            valid = None if context_mask is None else ~context_mask.bool()
            y = x + torch.tanh(self.attn_gate).to(x.dtype) * self.attention(self.norm(x), ctx, valid)
        return y + torch.tanh(self.ffn_gate).to(x.dtype) * self.ffn(self.ffn_norm(y))
