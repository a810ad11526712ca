"""Masked multi-head attention and feed-forward blocks, written once for both factories (`layers.py`).

Heads and FFN hidden units are split over tensor-parallel ranks: query / key / value and the first FFN
linears are `column` linears (no gather), the output linears are `row` linears. Blocks work batch-first
(`[batch, tokens, dim]`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from protein_llm_nemo.bridges.blocks.layers import LayerFactory

__all__ = ["Attention", "FeedForward", "masked_attention"]


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, dropout: float
) -> torch.Tensor:
    """`softmax(q k^T / sqrt(d)) v` per head with `scaled_dot_product_attention` (no score tensor is kept
    for backward on fused backends); `q [B, h, Q, d]`, `k, v [B, h, K, d]`.

    `key_mask [B, K]` (or per query `[B, Q, K]`), True where a key may be attended: masked keys get exactly
    zero weight, so no output depends on padding. A query with no valid key returns zeros (SDPA alone would
    return NaN there)."""
    mask = None
    has_key = None
    if key_mask is not None:
        mask = key_mask[:, None, None, :] if key_mask.dim() == 2 else key_mask[:, None, :, :]
        has_key = mask.any(dim=-1, keepdim=True)  # [B, 1, Q or 1, 1]
        mask = mask | ~has_key  # let empty rows attend anywhere; they are zeroed below
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if has_key is not None:
        out = out * has_key.to(out.dtype)
    return out


class Attention(nn.Module):
    """Multi-head attention of `query [B, Q, Dq]` over `keys [B, K, Dk]` with a key mask (see
    `masked_attention`); heads split over tensor-parallel ranks."""

    def __init__(
        self,
        layers: LayerFactory,
        query_dim: int,
        key_dim: int,
        num_heads: int,
        head_dim: int | None = None,
        output_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        tp = layers.tensor_parallel_size
        if head_dim is None:
            if query_dim % num_heads:
                raise ValueError(f"query_dim {query_dim} is not divisible by num_heads {num_heads}")
            head_dim = query_dim // num_heads
        if num_heads % tp:
            raise ValueError(f"num_heads={num_heads} is not divisible by tensor_model_parallel_size={tp}")
        self.sharded_rng = layers.sharded_rng
        self.num_heads, self.head_dim = num_heads, head_dim
        self.heads_per_partition = num_heads // tp
        self.dropout = dropout
        inner = num_heads * head_dim
        self.linear_q = layers.column(query_dim, inner, bias=bias)
        self.linear_k = layers.column(key_dim, inner, bias=bias)
        self.linear_v = layers.column(key_dim, inner, bias=bias)
        self.linear_proj = layers.row(inner, output_dim or query_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.heads_per_partition, self.head_dim).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = self._heads(self.linear_q(query)[0])
        k = self._heads(self.linear_k(keys)[0])
        v = self._heads(self.linear_v(keys)[0])
        dropout = self.dropout if self.training else 0.0
        with self.sharded_rng():  # heads are split over TP: each rank its own dropout mask
            out = masked_attention(q, k, v, key_mask, dropout)
        out = out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.linear_proj(out)[0]


class FeedForward(nn.Module):
    """`Linear -> GELU -> Dropout -> Linear`, or SwiGLU `(SiLU(x W_gate) * x W_fc1) W_fc2`; hidden units split
    over TP (gate and up are two column linears, so each rank holds matching halves)."""

    def __init__(
        self,
        layers: LayerFactory,
        input_dim: int,
        hidden_dim: int,
        output_dim: int | None = None,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "swiglu"):
            raise ValueError(f"activation must be 'gelu' or 'swiglu', got {activation!r}")
        self.sharded_rng = layers.sharded_rng
        self.activation, self.dropout = activation, dropout
        if activation == "swiglu":
            self.linear_gate = layers.column(input_dim, hidden_dim, bias=bias)
        self.linear_fc1 = layers.column(input_dim, hidden_dim, bias=bias)
        self.linear_fc2 = layers.row(hidden_dim, output_dim or input_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear_fc1(x)[0]
        gated = self.activation == "swiglu"
        hidden = F.silu(self.linear_gate(x)[0]) * hidden if gated else F.gelu(hidden)
        if self.training and self.dropout > 0:
            with self.sharded_rng():
                hidden = F.dropout(hidden, p=self.dropout, training=True)
        return self.linear_fc2(hidden)[0]
