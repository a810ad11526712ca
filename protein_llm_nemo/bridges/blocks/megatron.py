"""The megatron-core side of the layer factory: tensor-parallel linears, megatron's `MultimodalProjector`,
the RNG and config plumbing of bridge modules, and their dist-checkpoint entries.

    layers = MegatronLayers(language_config)          # the LLM's TransformerConfig
    with isolated_rng(seed):
        bridge = bridge_config.build_module(layers, language_config.hidden_size)
    state = sharded_state_dict_of(bridge, "bridge.")  # megatron dist-checkpoint entries, TP-sharded

Bridge modules are plain `nn.Module` trees (the same classes as the HF twin); what megatron needs from them
is here: parallel linears shard themselves in checkpoints, every other tensor is replicated over TP.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.models.vision.multimodal_projector import MultimodalProjector
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.mlp import MLPSubmodules
from megatron.core.transformer.utils import (
    ensure_metadata_has_dp_cp_group,
    make_sharded_tensors_for_checkpoint,
)
from torch import nn

from protein_llm_nemo.bridges.blocks.layers import InitMethod, add_hidden_dropout, xavier_uniform

__all__ = [
    "MegatronLayers",
    "bridge_parallel_config",
    "isolated_rng",
    "sharded_state_dict_of",
]


def bridge_parallel_config(language_config: Any) -> Any:
    """The LLM's `TransformerConfig`, adjusted for bridge modules.

    Bridge inputs are never sequence-sharded (so `sequence_parallel` is off) and bridge weights are always
    initialised on the CPU as full matrices and sliced (so the same seed gives the same bridge at every TP
    size). A shallow copy: the LLM's config object is left untouched.
    """
    config = copy.copy(language_config)
    config.sequence_parallel = False
    config.use_cpu_initialization = True
    config.perform_initialization = True
    config.gradient_accumulation_fusion = False
    return config


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Draw from a private CPU RNG stream seeded with `seed`; the global stream is restored afterwards.

    Bridge weights are therefore independent of what was built before them (the LLM, other pipeline
    stages), and building a bridge does not shift the LLM's initialisation.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class GatheredColumnParallelLinear(ColumnParallelLinear):
    """A column-parallel linear that adds its bias before gathering the output.

    megatron's `MultimodalProjector("affine")` builds its linear with `gather_output=True` and
    `skip_bias_add=True`; the returned bias is then this rank's shard while the output is gathered, which
    fails at TP > 1. Used as the projector's `linear_fc1` spec, this class keeps the bias in the output."""

    def __init__(self, *args: Any, skip_bias_add: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, skip_bias_add=False, **kwargs)


class MegatronLayers:
    """`LayerFactory` on megatron-core: linears split over tensor parallelism, Xavier-initialised (the
    reference bridges' init) unless other init methods are given (the gated blocks use the LLM's)."""

    def __init__(
        self,
        language_config: Any,
        init_method: InitMethod = xavier_uniform,
        output_init_method: InitMethod = xavier_uniform,
    ) -> None:
        self.config = bridge_parallel_config(language_config)
        self.init_method, self.output_init_method = init_method, output_init_method
        self.tensor_parallel_size = self.config.tensor_model_parallel_size

    @property
    def params_dtype(self) -> torch.dtype:
        return self.config.params_dtype

    def column(
        self, in_features: int, out_features: int, bias: bool = True, gather_output: bool = False
    ) -> nn.Module:
        return ColumnParallelLinear(
            in_features,
            out_features,
            config=self.config,
            init_method=self.init_method,
            bias=bias,
            gather_output=gather_output,
        )

    def row(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        return RowParallelLinear(
            in_features,
            out_features,
            config=self.config,
            init_method=self.output_init_method,
            bias=bias,
            input_is_parallel=True,
            skip_bias_add=False,
        )

    def projector(
        self, kind: str, input_dim: int, output_dim: int, hidden_dim: int = 0, dropout: float = 0.0
    ) -> nn.Module:
        """megatron's `MultimodalProjector`, built from its submodules spec (our column / row linears)."""
        if kind not in ("affine", "mlp"):
            raise ValueError(f"projector kind must be 'affine' or 'mlp', got {kind!r}")
        config = copy.copy(self.config)
        config.hidden_size = output_dim
        config.ffn_hidden_size = hidden_dim or output_dim
        config.activation_func = F.gelu
        config.gated_linear_unit = False
        config.add_bias_linear = True
        config.bias_activation_fusion = False
        config.init_method = self.init_method
        config.output_layer_init_method = self.output_init_method
        fc1 = GatheredColumnParallelLinear if kind == "affine" else ColumnParallelLinear
        submodules = MLPSubmodules(linear_fc1=fc1, linear_fc2=RowParallelLinear)
        projector = MultimodalProjector(config, submodules, kind, input_dim)
        if kind == "mlp":
            add_hidden_dropout(projector.encoder, dropout, self)
        return projector

    def layer_norm(self, dim: int, eps: float = 1e-5) -> nn.Module:
        return nn.LayerNorm(dim, eps=eps, dtype=self.config.params_dtype)

    def parameter(self, *shape: int, std: float = 0.02) -> nn.Parameter:
        values = torch.empty(*shape, dtype=torch.float32).normal_(0.0, std)
        return nn.Parameter(values.to(self.config.params_dtype))

    def sharded_rng(self) -> contextlib.AbstractContextManager:
        return tensor_parallel.get_cuda_rng_tracker().fork()


def sharded_state_dict_of(
    module: nn.Module, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None
) -> dict:
    """megatron dist-checkpoint entries of a plain-torch module tree: modules that know their sharding
    (parallel linears, megatron modules) describe themselves; every other tensor is replicated over TP.

    megatron's own default stops at the first plain container and treats everything below it as
    replicated, which would save one TP shard of a linear as if it were the whole tensor."""
    metadata = ensure_metadata_has_dp_cp_group(metadata)
    if hasattr(module, "sharded_state_dict"):
        return module.sharded_state_dict(prefix=prefix, sharded_offsets=sharded_offsets, metadata=metadata)
    own = {name: t for name, t in module._parameters.items() if t is not None}
    own.update(
        (name, t)
        for name, t in module._buffers.items()
        if t is not None and name not in module._non_persistent_buffers_set
    )
    state = make_sharded_tensors_for_checkpoint(own, prefix, {}, sharded_offsets) if own else {}
    for name, child in module.named_children():
        state.update(sharded_state_dict_of(child, f"{prefix}{name}.", sharded_offsets, metadata))
    return state
