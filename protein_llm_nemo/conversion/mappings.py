"""Declarative weight mappings between HuggingFace Qwen3 and megatron-core GPTModel parameters.

In the style of Megatron-Bridge's `MegatronMappingRegistry`: each mapping names one megatron
parameter and the HF tensors it is made of, and knows three things:

- `to_megatron(hf)`: the *global* (TP=1) megatron tensor from the HF tensors;
- `shard(full, rank, size)`: this tensor-parallel rank's slice of that global tensor;
- `to_hf(full)`: the HF tensors back from the global megatron tensor;
plus `gather(shards)`, the inverse of `shard` over all TP ranks.

Layer indices in megatron names are *global* (`decoder.layers.{i}`), so a pipeline stage maps its
local layer `j` to `j + first_layer_of_stage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from protein_llm_nemo.models.parallel_weights import global_parameter_name
from protein_llm_nemo.models.qwen3 import Qwen3Arch

Parallelism = Literal["replicated", "column", "row", "vocab"]


@dataclass(frozen=True)
class DirectMapping:
    """One HF tensor <-> one megatron tensor, split along rows (column/vocab) or columns (row)."""

    megatron: str
    hf: str
    parallelism: Parallelism = "replicated"

    @property
    def hf_keys(self) -> tuple[str, ...]:
        return (self.hf,)

    def to_megatron(self, hf: dict[str, torch.Tensor], arch: Qwen3Arch) -> torch.Tensor:
        return hf[self.hf]

    def to_hf(self, full: torch.Tensor, arch: Qwen3Arch) -> dict[str, torch.Tensor]:
        if self.parallelism == "vocab":
            full = full[: arch.vocab_size]  # drop the rows added to pad the vocabulary for TP
        return {self.hf: full}

    def shard(self, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        if self.parallelism == "replicated" or size == 1:
            return full
        dim = 1 if self.parallelism == "row" else 0
        return full.chunk(size, dim=dim)[rank]

    def gather(self, shards: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.parallelism == "replicated" or len(shards) == 1:
            return shards[0]
        return torch.cat(list(shards), dim=1 if self.parallelism == "row" else 0)


@dataclass(frozen=True)
class QKVMapping:
    """q, k, v projections <-> megatron's fused `linear_qkv`.

    megatron interleaves by query group: for each of the `num_query_groups` groups, the group's
    `heads_per_group` query heads, then its key head, then its value head. Column-parallel sharding
    then hands each TP rank whole groups, so the global tensor is the same at every TP size.
    """

    megatron: str
    q: str
    k: str
    v: str

    @property
    def hf_keys(self) -> tuple[str, ...]:
        return (self.q, self.k, self.v)

    def to_megatron(self, hf: dict[str, torch.Tensor], arch: Qwen3Arch) -> torch.Tensor:
        groups, head_dim = arch.num_key_value_heads, arch.head_dim
        q = hf[self.q].reshape(groups, -1, head_dim, hf[self.q].shape[-1])
        k = hf[self.k].reshape(groups, 1, head_dim, -1)
        v = hf[self.v].reshape(groups, 1, head_dim, -1)
        return torch.cat([q, k, v], dim=1).reshape(-1, q.shape[-1])

    def to_hf(self, full: torch.Tensor, arch: Qwen3Arch) -> dict[str, torch.Tensor]:
        groups, head_dim = arch.num_key_value_heads, arch.head_dim
        per_group = arch.num_attention_heads // groups
        grouped = full.reshape(groups, per_group + 2, head_dim, -1)
        hidden = full.shape[-1]
        return {
            self.q: grouped[:, :per_group].reshape(-1, hidden).contiguous(),
            self.k: grouped[:, per_group].reshape(-1, hidden).contiguous(),
            self.v: grouped[:, per_group + 1].reshape(-1, hidden).contiguous(),
        }

    def shard(self, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        return full.chunk(size, dim=0)[rank]

    def gather(self, shards: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(shards), dim=0)


@dataclass(frozen=True)
class GatedMLPMapping:
    """gate and up projections <-> megatron's `linear_fc1` ([gate; up] on every TP rank)."""

    megatron: str
    gate: str
    up: str

    @property
    def hf_keys(self) -> tuple[str, ...]:
        return (self.gate, self.up)

    def to_megatron(self, hf: dict[str, torch.Tensor], arch: Qwen3Arch) -> torch.Tensor:
        return torch.cat([hf[self.gate], hf[self.up]], dim=0)

    def to_hf(self, full: torch.Tensor, arch: Qwen3Arch) -> dict[str, torch.Tensor]:
        gate, up = full.chunk(2, dim=0)
        return {self.gate: gate.contiguous(), self.up: up.contiguous()}

    def shard(self, full: torch.Tensor, rank: int, size: int) -> torch.Tensor:
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(size, dim=0)[rank], up.chunk(size, dim=0)[rank]], dim=0)

    def gather(self, shards: Sequence[torch.Tensor]) -> torch.Tensor:
        halves = [shard.chunk(2, dim=0) for shard in shards]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)


WeightMapping = DirectMapping | QKVMapping | GatedMLPMapping

# TransformerEngine's spec fuses the pre-attention and pre-MLP norms into the following linear.
TE_NAME_ALIASES = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}


def canonical_megatron_name(name: str) -> str:
    """Map a TE-spec parameter name onto the local-spec name the mappings use."""
    for te_suffix, local_suffix in TE_NAME_ALIASES.items():
        if name.endswith(te_suffix):
            return name[: -len(te_suffix)] + local_suffix
    return name


def global_parameter_names(model: torch.nn.Module) -> dict[str, str]:
    """Local parameter name -> canonical global name (pipeline stages number their layers from 0)."""
    return {
        name: canonical_megatron_name(global_parameter_name(model, name))
        for name, _ in model.named_parameters()
    }


def qwen3_layer_mappings(layer: int) -> list[WeightMapping]:
    m, h = f"decoder.layers.{layer}.", f"model.layers.{layer}."
    return [
        DirectMapping(m + "input_layernorm.weight", h + "input_layernorm.weight"),
        QKVMapping(
            m + "self_attention.linear_qkv.weight",
            q=h + "self_attn.q_proj.weight",
            k=h + "self_attn.k_proj.weight",
            v=h + "self_attn.v_proj.weight",
        ),
        DirectMapping(m + "self_attention.q_layernorm.weight", h + "self_attn.q_norm.weight"),
        DirectMapping(m + "self_attention.k_layernorm.weight", h + "self_attn.k_norm.weight"),
        DirectMapping(m + "self_attention.linear_proj.weight", h + "self_attn.o_proj.weight", "row"),
        DirectMapping(m + "pre_mlp_layernorm.weight", h + "post_attention_layernorm.weight"),
        GatedMLPMapping(
            m + "mlp.linear_fc1.weight", gate=h + "mlp.gate_proj.weight", up=h + "mlp.up_proj.weight"
        ),
        DirectMapping(m + "mlp.linear_fc2.weight", h + "mlp.down_proj.weight", "row"),
    ]


def qwen3_mappings(arch: Qwen3Arch) -> list[WeightMapping]:
    """Every mapping of a Qwen3 checkpoint, in HF file order (embeddings, layers, norm, head)."""
    mappings: list[WeightMapping] = [
        DirectMapping("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab")
    ]
    for layer in range(arch.num_hidden_layers):
        mappings.extend(qwen3_layer_mappings(layer))
    mappings.append(DirectMapping("decoder.final_layernorm.weight", "model.norm.weight"))
    if not arch.tie_word_embeddings:
        mappings.append(DirectMapping("output_layer.weight", "lm_head.weight", "vocab"))
    return mappings


def expected_hf_shapes(arch: Qwen3Arch) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a HF Qwen3 checkpoint of this architecture must contain."""
    h, hd = arch.hidden_size, arch.head_dim
    q, kv, ffn = arch.num_attention_heads * hd, arch.num_key_value_heads * hd, arch.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (arch.vocab_size, h),
        "model.norm.weight": (h,),
    }
    for layer in range(arch.num_hidden_layers):
        p = f"model.layers.{layer}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "self_attn.q_norm.weight": (hd,),
                p + "self_attn.k_norm.weight": (hd,),
                p + "mlp.gate_proj.weight": (ffn, h),
                p + "mlp.up_proj.weight": (ffn, h),
                p + "mlp.down_proj.weight": (h, ffn),
            }
        )
    if not arch.tie_word_embeddings:
        shapes["lm_head.weight"] = (arch.vocab_size, h)
    return shapes
