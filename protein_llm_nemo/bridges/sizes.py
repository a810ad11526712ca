"""Trainable-parameter counts of every bridge at real shapes, without allocating (meta device).

    rows = bridge_size_report(encoder_dim=1536, arch=qwen3_preset("8b"))

Counted on each bridge's HF twin (the same `build_module` as training on plain torch layers, so no process
group is needed); the tests check that the megatron modules hold exactly as many parameters at TP=1.
Components are the bridge module's top-level parts, plus the cross-attention blocks and their gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from protein_llm_nemo.bridges import BridgeConfig, get_bridge_config, list_bridges

__all__ = [
    "REFERENCE_COUNTS",
    "SizeRow",
    "bridge_parameter_count",
    "bridge_size_report",
    "format_size_report",
]

# The reference implementation's counts at its one shape, ESM3-open (1536) -> Qwen3-8B (4096), in parameters.
REFERENCE_SHAPE = (1536, 4096)
REFERENCE_COUNTS: dict[tuple[str, str], float] = {
    ("mlp", "pooling"): 9.50e6,
    ("mlp", "projector"): 28.85e6,
    ("perceiver", "total"): 31.0e6,
}


@dataclass(frozen=True)
class SizeRow:
    bridge: str
    component: str
    parameters: int
    reference: float | None = None

    @property
    def relative_difference(self) -> float | None:
        if self.reference is None:
            return None
        return self.parameters / self.reference - 1.0


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build_on_meta(config: BridgeConfig, arch: Any) -> tuple[torch.nn.Module, torch.nn.Module | None, int]:
    """The bridge's HF twin, one cross-attention block (or None) and the number of blocks, on meta."""
    from protein_llm_nemo.bridges.blocks.layers import TorchLayers

    with torch.device("meta"):
        module = config.build_hf(arch.hidden_size)
        layers = config.cross_attention_layers(arch.num_hidden_layers)
        block = None
        if layers:
            block = config.cross_attention_block(
                TorchLayers(), arch.hidden_size, arch.num_attention_heads, arch.head_dim, arch.rms_norm_eps
            )
    return module, block, len(layers)


def _components(config: BridgeConfig, arch: Any) -> list[tuple[str, int]]:
    if not config.uses_encoder:
        return [("total", 0)]
    module, block, blocks = _build_on_meta(config, arch)
    parts = [(name, _count(child)) for name, child in module.named_children() if _count(child)]
    parts += [(name, p.numel()) for name, p in module.named_parameters(recurse=False)]
    if block is not None:
        gates = sum(p.numel() for n, p in block.named_parameters() if n.endswith("_gate"))
        parts += [
            (f"x-attn blocks ({blocks} x)", blocks * (_count(block) - gates)),
            ("gates", blocks * gates),
        ]
    parts.append(("total", sum(count for _, count in parts)))
    return parts


def bridge_size_report(
    encoder_dim: int, arch: Any, bridges: list[str] | None = None, **overrides: Any
) -> list[SizeRow]:
    """One row per bridge component plus a `total` row per bridge (trainable parameters at TP=1)."""
    rows: list[SizeRow] = []
    for name in bridges or list_bridges():
        config = get_bridge_config(
            name, **({} if name == "text" else {"encoder_dim": encoder_dim}), **overrides
        )
        at_reference_shape = (encoder_dim, arch.hidden_size) == REFERENCE_SHAPE
        for component, count in _components(config, arch):
            reference = REFERENCE_COUNTS.get((name, component)) if at_reference_shape else None
            rows.append(SizeRow(name, component, count, reference))
    return rows


def bridge_parameter_count(config: BridgeConfig, arch: Any) -> tuple[int, int, int]:
    """`(bridge module, one cross-attention block, number of blocks)` trainable parameters at TP=1."""
    if not config.uses_encoder:
        return 0, 0, 0
    module, block, blocks = _build_on_meta(config, arch)
    return _count(module), (_count(block) if block is not None else 0), blocks


def format_size_report(rows: list[SizeRow], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'bridge':<10} {'component':<24} {'trainable':>14} {'reference':>11} {'diff':>8}")
    for row in rows:
        ref = f"{row.reference / 1e6:.2f}M" if row.reference else ""
        diff = f"{row.relative_difference:+.2%}" if row.reference else ""
        lines.append(f"{row.bridge:<10} {row.component:<24} {row.parameters:>14,} {ref:>11} {diff:>8}")
    return "\n".join(lines)
