"""The layer factory a bridge is built from, and its plain-torch implementation.

Every bridge's math is written once, against `LayerFactory`. Two factories build it:

- `TorchLayers` (here, torch only): `nn.Linear` / `nn.LayerNorm`, the HF twin that `transformers` loads;
- `MegatronLayers` (`bridges/blocks/megatron.py`): megatron-core's `ColumnParallelLinear` /
  `RowParallelLinear` and `MultimodalProjector`, split over tensor-parallel ranks.

Both give the same parameter names and shapes (at TP=1), so a megatron state gathered over tensor
parallelism loads into the twin name for name. Linears follow megatron's call contract on both sides:
`linear(x) -> (output, bias)` with the bias already added (`bias` is None).

Tensor-parallel layout (megatron's attention / MLP pattern): a `column` linear splits its output features
over TP ranks (`gather_output=True` gathers them back), a `row` linear splits its input features and
all-reduces the partial sums. Blocks therefore take and return full-width tensors on every TP rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Linear",
    "LayerFactory",
    "Projector",
    "TorchLayers",
    "add_hidden_dropout",
    "module_dtype",
]

InitMethod = Callable[[torch.Tensor], torch.Tensor]


def xavier_uniform(tensor: torch.Tensor) -> torch.Tensor:
    return nn.init.xavier_uniform_(tensor)


class LayerFactory(Protocol):
    """What a bridge module needs to build itself; see the module docstring."""

    tensor_parallel_size: int
    params_dtype: torch.dtype

    def column(
        self, in_features: int, out_features: int, bias: bool = True, gather_output: bool = False
    ) -> nn.Module:
        """`y = x W^T + b`, output features split over TP ranks unless `gather_output`."""
        ...

    def row(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        """`y = x W^T + b` of a TP-split input, partial sums all-reduced: full output everywhere."""
        ...

    def projector(
        self, kind: str, input_dim: int, output_dim: int, hidden_dim: int = 0, dropout: float = 0.0
    ) -> nn.Module:
        """megatron's multimodal projector: `affine` (one linear) or `mlp` (Linear -> GELU -> Linear)."""
        ...

    def layer_norm(self, dim: int, eps: float = 1e-5) -> nn.Module: ...

    def parameter(self, *shape: int, std: float = 0.02) -> nn.Parameter:
        """A learned tensor drawn from N(0, std) in fp32 (the same values whatever the dtype)."""
        ...

    def sharded_rng(self) -> contextlib.AbstractContextManager:
        """The RNG context for dropout on tensors split over TP ranks (each rank draws its own mask)."""
        ...


class Linear(nn.Linear):
    """`nn.Linear` with megatron's `(output, bias)` return, so the same block code drives both sides."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return super().forward(x), None


class Projector(nn.Module):
    """The twin of megatron's `MultimodalProjector`: `encoder` is one linear (`affine`) or an MLP module with
    `linear_fc1` -> GELU -> `linear_fc2` (`mlp`); the forward returns the projected tensor."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, bias = self.encoder(x)
        return output if bias is None else output + bias


class _MLP(nn.Module):
    """megatron `MLP` names (`linear_fc1`, `linear_fc2`) and contract, GELU, no gating."""

    def __init__(self, fc1: nn.Module, fc2: nn.Module) -> None:
        super().__init__()
        self.linear_fc1, self.linear_fc2 = fc1, fc2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.linear_fc2(F.gelu(self.linear_fc1(x)[0]))


def add_hidden_dropout(mlp: nn.Module, p: float, layers: LayerFactory) -> None:
    """Dropout on an MLP's hidden activations (between the activation and `linear_fc2`).

    megatron's `MLP` has no inner dropout; a forward pre-hook on `linear_fc2` adds it on both sides without
    changing the module or its parameter names. The hidden units are split over TP ranks, so each rank
    draws its own mask."""
    if p <= 0.0:
        return

    def hook(module: nn.Module, args: tuple) -> tuple:
        if not module.training:
            return args
        with layers.sharded_rng():
            return (F.dropout(args[0], p=p, training=True), *args[1:])

    mlp.linear_fc2.register_forward_pre_hook(hook)


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's parameters (what its inputs are cast to)."""
    for param in module.parameters():
        return param.dtype
    return torch.get_default_dtype()


class TorchLayers:
    """Plain-torch layers (the HF twin): one device, no tensor parallelism.

    Parameters take the default dtype at construction (what `from_pretrained(dtype=...)` sets); their
    initial values are irrelevant to an export (weights are loaded) and HF's `_init_weights` re-draws
    them for a fresh model."""

    tensor_parallel_size = 1

    @property
    def params_dtype(self) -> torch.dtype:
        return torch.get_default_dtype()

    def column(
        self, in_features: int, out_features: int, bias: bool = True, gather_output: bool = False
    ) -> nn.Module:
        return Linear(in_features, out_features, bias=bias)

    def row(self, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        return Linear(in_features, out_features, bias=bias)

    def projector(
        self, kind: str, input_dim: int, output_dim: int, hidden_dim: int = 0, dropout: float = 0.0
    ) -> nn.Module:
        if kind == "affine":
            return Projector(Linear(input_dim, output_dim))
        if kind != "mlp":
            raise ValueError(f"projector kind must be 'affine' or 'mlp', got {kind!r}")
        mlp = _MLP(Linear(input_dim, hidden_dim), Linear(hidden_dim, output_dim))
        add_hidden_dropout(mlp, dropout, self)
        return Projector(mlp)

    def layer_norm(self, dim: int, eps: float = 1e-5) -> nn.Module:
        return nn.LayerNorm(dim, eps=eps)

    def parameter(self, *shape: int, std: float = 0.02) -> nn.Parameter:
        values = torch.empty(*shape, dtype=torch.float32).normal_(0.0, std)
        return nn.Parameter(values.to(torch.get_default_dtype()))

    @contextlib.contextmanager
    def sharded_rng(self) -> Iterator[None]:
        yield
