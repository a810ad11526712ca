"""Core attention for packed rows without TransformerEngine (CPU, or GPUs without TE).

megatron-core's local `DotProductAttention` refuses `PackedSeqParams`; the fallback used to be one dense
``[heads, T, T]`` attention over the whole packed row with a block-diagonal causal mask, which spends
``T^2`` work on a row whose samples only need ``sum(L_i^2)``. `PackedDotProductAttention` keeps the
upstream module for ordinary batches and, for ``thd`` packed rows, runs causal attention per sample
(``torch.nn.functional.scaled_dot_product_attention`` on each ``cu_seqlens`` segment). Rotary embeddings are
applied per segment by megatron's attention (``cu_seqlens``) before this module, so positions restart at
every sample exactly as with TransformerEngine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention


def packed_cu_seqlens(packed_seq_params) -> torch.Tensor:
    """Segment boundaries of a ``thd`` row: the padded ones when given (what TE attends over), else the plain."""
    cu = getattr(packed_seq_params, "cu_seqlens_q_padded", None)
    return packed_seq_params.cu_seqlens_q if cu is None else cu


def segment_bounds(packed_seq_params) -> list[tuple[int, int]]:
    """(start, end) of every segment of a ``thd`` row (self-attention: key/value boundaries must agree)."""
    cu = packed_cu_seqlens(packed_seq_params)
    kv = getattr(packed_seq_params, "cu_seqlens_kv_padded", None)
    if kv is None:
        kv = packed_seq_params.cu_seqlens_kv
    if kv is not None and not torch.equal(cu.cpu(), kv.cpu()):
        raise ValueError("packed self-attention needs the same query and key/value boundaries")
    bounds = cu.tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class PackedDotProductAttention(DotProductAttention):
    """megatron's local `DotProductAttention`, plus per-sample causal attention for ``thd`` packed rows."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type=None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        if packed_seq_params is None:
            return super().forward(
                query,
                key,
                value,
                attention_mask,
                attn_mask_type=attn_mask_type,
                attention_bias=attention_bias,
            )
        if packed_seq_params.qkv_format != "thd":
            raise ValueError(f"packed rows must use qkv_format='thd', got {packed_seq_params.qkv_format!r}")
        if attention_bias is not None:
            raise ValueError("attention_bias is not supported for packed rows")
        if (
            self.config.apply_query_key_layer_scaling
            or getattr(self.config, "softmax_type", "vanilla") != "vanilla"
        ):
            raise ValueError(
                "packed local attention supports the vanilla softmax without query-key layer scaling"
            )
        # thd: query [t, heads, dim], key/value [t, groups, dim] (the batch dimension is squeezed upstream).
        q, k, v = (x.transpose(0, 1) for x in (query, key, value))  # [heads or groups, t, dim]
        dropout = self.attention_dropout.p if self.training else 0.0
        gqa = q.shape[0] != k.shape[0]
        outputs = [
            F.scaled_dot_product_attention(
                q[:, a:b],
                k[:, a:b],
                v[:, a:b],
                dropout_p=dropout,
                is_causal=True,
                scale=self.softmax_scale,
                enable_gqa=gqa,
            )
            for a, b in segment_bounds(packed_seq_params)
            if b > a
        ]
        context = torch.cat(outputs, dim=1)  # [heads, t, dim]
        if context.shape[1] != query.shape[0]:
            raise ValueError(f"cu_seqlens cover {context.shape[1]} tokens, the row has {query.shape[0]}")
        return context.transpose(0, 1).reshape(query.shape[0], -1)  # [t, heads * dim]
