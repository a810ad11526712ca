"""Attention pooling and Perceiver resampler blocks: learned queries that read a variable-length protein.

Both turn `(x [N, L, D], mask [N, L])` into a fixed number of vectors per protein; padding residues are
masked out of every attention, so outputs depend on a protein's own residues only.
"""

from __future__ import annotations

import torch
from torch import nn

from protein_llm_nemo.bridges.blocks.attention import Attention, FeedForward
from protein_llm_nemo.bridges.blocks.layers import LayerFactory

__all__ = ["AttentionPooling", "PerceiverResampler", "ResamplerLayer"]


class AttentionPooling(nn.Module):
    """`num_queries` learned queries attend to the residues (multi-head), then LayerNorm.

    The reference's shape: no residual and no FFN; queries N(0, 0.02).
    """

    def __init__(
        self, layers: LayerFactory, dim: int, num_queries: int, num_heads: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.queries = layers.parameter(num_queries, dim)
        self.attention = Attention(layers, dim, dim, num_heads, dropout=dropout)
        self.norm = layers.layer_norm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.norm(self.attention(queries, x, mask))


class ResamplerLayer(nn.Module):
    """One pre-norm Perceiver layer acting on the latents.

    `self_attention=True` (Perceiver style):  lat += SelfAttn(LN(lat)); lat += XAttn(LN(lat), LN(x)); lat += FFN(LN(lat))
    `self_attention=False` (Flamingo style): lat += Attn(LN(lat), [LN(x); LN(lat)]);                lat += FFN(LN(lat))
    """

    def __init__(
        self,
        layers: LayerFactory,
        dim: int,
        num_heads: int,
        ffn_hidden_size: int,
        activation: str = "gelu",
        self_attention: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_self_attention = self_attention
        if self_attention:
            self.self_attention_norm = layers.layer_norm(dim)
            self.self_attention = Attention(layers, dim, dim, num_heads, dropout=dropout)
        self.cross_attention_norm = layers.layer_norm(dim)
        self.context_norm = layers.layer_norm(dim)
        self.cross_attention = Attention(layers, dim, dim, num_heads, dropout=dropout)
        self.ffn_norm = layers.layer_norm(dim)
        self.ffn = FeedForward(
            layers,
            dim,
            ffn_hidden_size,
            dim,
            activation=activation,
            bias=activation == "gelu",
            dropout=dropout,
        )

    def forward(self, latents: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.use_self_attention:
            normed = self.self_attention_norm(latents)
            latents = latents + self.self_attention(normed, normed)
            keys, key_mask = self.context_norm(x), mask
        else:
            latent_mask = torch.ones(latents.shape[:2], dtype=torch.bool, device=mask.device)
            keys = torch.cat([self.context_norm(x), self.cross_attention_norm(latents)], dim=1)
            key_mask = torch.cat([mask, latent_mask], dim=1)
        latents = latents + self.cross_attention(self.cross_attention_norm(latents), keys, key_mask)
        return latents + self.ffn(self.ffn_norm(latents))


class PerceiverResampler(nn.Module):
    """`num_latents` learned latents refined by `num_layers` `ResamplerLayer`s over the residues."""

    def __init__(
        self,
        layers: LayerFactory,
        dim: int,
        num_latents: int,
        num_layers: int,
        num_heads: int,
        ffn_hidden_size: int,
        activation: str = "gelu",
        self_attention: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.latents = layers.parameter(num_latents, dim)
        self.layers = nn.ModuleList(
            ResamplerLayer(layers, dim, num_heads, ffn_hidden_size, activation, self_attention, dropout)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, x, mask)
        return latents
