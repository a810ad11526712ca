"""Gated cross-attention inside the megatron decoder (Flamingo), as a megatron-core layer spec.

`FlamingoTransformerLayer` is a `TransformerLayer` (same submodules, same parameter names, so Qwen3 weights
load unchanged) that, when its global layer index is one of the bridge's `cross_attention_layers`, runs the
bridge's `GatedCrossAttention` block (`bridges/blocks/gated_cross_attention.py`) on the hidden states
*before* the layer.

`context` / `context_mask` arrive through `TransformerBlock.forward(context=..., context_mask=...)`, i.e.
`GPTModel.forward(extra_block_kwargs={"context": ..., "context_mask": ...})`, on every pipeline stage.
Shapes (megatron conventions): `context [C, B, context_dim]`, `context_mask [B, C]` (or per token
`[B, S, C]` for packed rows) with True = ignore.
"""

from __future__ import annotations

from typing import Any

from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_layer import TransformerLayer
from torch import nn

from protein_llm_nemo.bridges.blocks.megatron import MegatronLayers, isolated_rng, sharded_state_dict_of

__all__ = ["FlamingoTransformerLayer", "flamingo_layer_spec"]


class FlamingoTransformerLayer(TransformerLayer):
    """A Qwen3 decoder layer with an optional gated cross-attention block in front of it.

    Extra spec params: `bridge_config` (the `BridgeConfig` that places and builds the blocks) and
    `init_seed`. The block of global layer `i` is initialised from the private RNG stream `init_seed + i`,
    so it is the same at every TP/PP layout and building it does not change the LLM's own initialisation.
    """

    def __init__(self, *args: Any, bridge_config: Any = None, init_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        index = self.layer_number - 1  # megatron's layer_number is global and 1-based
        blocks = bridge_config.cross_attention_layers(self.config.num_layers)
        # dist checkpoints stack the blocks over the blocks (not over the layers): see sharded_state_dict
        self.block_index, self.num_blocks = (blocks.index(index) if index in blocks else -1), len(blocks)
        self.gated_cross_attention: nn.Module | None = None
        if self.block_index >= 0:
            layers = MegatronLayers(
                self.config,
                init_method=self.config.init_method,
                output_init_method=self.config.output_layer_init_method,
            )
            with isolated_rng(init_seed + index):
                self.gated_cross_attention = bridge_config.cross_attention_block(
                    layers,
                    self.config.hidden_size,
                    self.config.num_attention_heads,
                    self.config.kv_channels,
                    self.config.layernorm_epsilon,
                )

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None):
        """megatron dist-checkpoint entries; the gated block is indexed over the blocks, not the layers.

        With homogeneous layers megatron stacks each parameter over all `num_layers` (offset axis 0); the
        gated blocks exist on some layers only, so they are stacked over the blocks instead (a layout that
        any TP/PP split can reload).
        """
        block = self.gated_cross_attention
        self.gated_cross_attention = None
        try:
            state = super().sharded_state_dict(prefix, sharded_offsets, metadata)
        finally:
            self.gated_cross_attention = block
        if block is not None:
            offsets = tuple(sharded_offsets)
            if offsets:  # ((0, global_layer, num_layers),): homogeneous stacking over layers
                axis = offsets[0][0]
                offsets = ((axis, self.block_index, self.num_blocks), *offsets[1:])
            state.update(sharded_state_dict_of(block, f"{prefix}gated_cross_attention.", offsets, metadata))
        return state

    def forward(self, *args: Any, **kwargs: Any):
        if self.gated_cross_attention is not None:
            if args:
                hidden_states, args = args[0], args[1:]
            else:
                hidden_states = kwargs.pop("hidden_states")
            context = kwargs.get("context")
            # the block is batch-first: [S, B, H] -> [B, S, H] and back
            hidden_states = self.gated_cross_attention(
                hidden_states.transpose(0, 1),
                None if context is None else context.transpose(0, 1),
                kwargs.get("context_mask"),
            )
            hidden_states = hidden_states.transpose(0, 1).contiguous()
            kwargs["hidden_states"] = hidden_states
        return super().forward(*args, **kwargs)


def flamingo_layer_spec(base_spec: ModuleSpec, bridge_config: Any, init_seed: int) -> ModuleSpec:
    """The decoder layer spec of a cross-attending bridge: `base_spec`'s submodules in a
    `FlamingoTransformerLayer` that builds `bridge_config`'s blocks."""
    if not isinstance(base_spec, ModuleSpec) or not issubclass(base_spec.module, TransformerLayer):
        raise TypeError(f"expected a TransformerLayer ModuleSpec, got {base_spec!r}")
    params = dict(base_spec.params or {})
    params.update(bridge_config=bridge_config, init_seed=init_seed)
    return ModuleSpec(module=FlamingoTransformerLayer, submodules=base_spec.submodules, params=params)
