"""LoRA for megatron-core linears, laid out like each base layer's tensor parallelism (Megatron-Bridge style).

    wrapped = apply_lora(model, LoRAConfig(rank=8, alpha=16))   # GPTModel or ProteinLLMModel, any TP/PP
    ...train: only `*.adapter.linear_in.weight` (A) and `*.adapter.linear_out.weight` (B) have grads...
    merge_lora(model)                                          # W += B @ A * alpha / r, adapters removed

Layout, for a base `y = x W^T` with TP ranks holding shards of W:
- column-parallel base (`linear_qkv`, `linear_fc1`; W split by output rows): A `[r, in]` is replicated,
  B `[out/TP, r]` is column-parallel like W. `h = A x` is identical on every rank; its gradient is summed
  over TP (`copy_to_tensor_model_parallel_region`), so A's gradient is the full one on every rank.
- row-parallel base (`linear_proj`, `linear_fc2`; W split by input columns): A `[r, in/TP]` is row-parallel
  and its partial products are all-reduced (`reduce_from_tensor_model_parallel_region`), B `[out, r]` is
  replicated.
B's rows follow the base's rows, so the fused layouts carry over unchanged: `linear_qkv`'s per-query-group
interleave and `linear_fc1`'s `[gate; up]` per TP rank. Dist checkpoints store A and B in global
coordinates (B of a gated `linear_fc1` through megatron's SwiGLU factory), so a LoRA checkpoint saved at
one TP/PP layout loads at any other.

The base module keeps its identity and parameter names: wrapping swaps its class for a subclass that adds
the adapter output (as `torch.nn.utils.parametrize` does) and registers the adapter as `<linear>.adapter`.
A checkpoint of the base model therefore loads into the wrapped model's base weights unchanged, and the
conversion code that reads `...linear_qkv.weight` keeps working. Adapter parameter names contain `adapter`,
which `ProteinLLMModel.named_parameter_groups()` files under the `lora` group.

A is initialised from a generator seeded by (config.seed, global module name) on the full `[r, in]` matrix
and then sliced, so the same seed gives the same adapters at any TP/PP layout; B starts at zero, so the
wrapped model equals the base model until B is trained.

The PEFT/HuggingFace side (adapter folders for `peft.PeftModel`, and back) is
`protein_llm_nemo.conversion.peft_adapter`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "LoRAAdapter",
    "LoRAConfig",
    "LoRALinear",
    "adapters_disabled",
    "apply_lora",
    "language_model_of",
    "lora_modules",
    "lora_parameters",
    "merge_lora",
    "parallel_mode",
]

DEFAULT_TARGET_MODULES = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")
# Submodules never wrapped: flamingo's gated cross-attention blocks are bridge weights, trained in full.
_EXCLUDED_PARTS = ("gated_cross_attention",)


@dataclass
class LoRAConfig:
    """LoRA hyper-parameters (reference SFT defaults: r=8, alpha=16, dropout 0.05 on q,k,v,o,gate,up,down).

    `target_modules`: glob patterns matched against each linear's module name inside the language model
    (`decoder.layers.3.self_attention.linear_qkv`) and against its last component (`linear_qkv`).
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    init_method: Literal["kaiming", "normal"] = "kaiming"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if not self.target_modules:
            raise ValueError("LoRA target_modules is empty")
        if self.init_method not in ("kaiming", "normal"):
            raise ValueError(f"unknown LoRA init_method {self.init_method!r}; choose 'kaiming' or 'normal'")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def matches(self, name: str) -> bool:
        last = name.rsplit(".", 1)[-1]
        return any(
            fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(last, pattern)
            for pattern in self.target_modules
        )


# -- which linears, and how they are parallel ---------------------------------------------------------
def _parallel_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    column: list[type] = [ColumnParallelLinear]
    row: list[type] = [RowParallelLinear]
    try:  # TransformerEngine layers, when TE is importable (GPU machines)
        from megatron.core.extensions import transformer_engine as te_ext

        column += [
            getattr(te_ext, n, None) for n in ("TELayerNormColumnParallelLinear", "TEColumnParallelLinear")
        ]
        row.append(getattr(te_ext, "TERowParallelLinear", None))
    except ImportError:  # TE (or megatron's extension module) absent; any other error is a broken install
        pass
    # without TE, megatron's extension module leaves placeholders that are not classes
    return tuple(c for c in column if isinstance(c, type)), tuple(c for c in row if isinstance(c, type))


def parallel_mode(module: nn.Module) -> Literal["column", "row"] | None:
    """'column' / 'row' for megatron's (or TE's) tensor-parallel linears, None for anything else."""
    if isinstance(module, LoRALinear):
        return module.adapter.mode
    column, row = _parallel_classes()
    if isinstance(module, column):
        return "column"
    if isinstance(module, row):
        return "row"
    return None


def _tp_group(module: nn.Module):
    from megatron.core import parallel_state

    group = getattr(module, "tp_group", None)
    return group if group is not None else parallel_state.get_tensor_model_parallel_group()


def _pipeline_size() -> int:
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return 1
    return parallel_state.get_pipeline_model_parallel_world_size()


def language_model_of(model: nn.Module) -> tuple[nn.Module, str]:
    """The megatron GPTModel inside `model` (a `ProteinLLMModel`'s `language_model`) and its name prefix."""
    inner = getattr(model, "language_model", None)
    if isinstance(inner, nn.Module):
        return inner, "language_model."
    return model, ""


def _global_module_name(language_model: nn.Module, name: str) -> str:
    from protein_llm_nemo.models.parallel_weights import global_parameter_name

    return global_parameter_name(language_model, name)


# -- the adapter -------------------------------------------------------------------------------------
class LoRAAdapter(nn.Module):
    """`scaling * B(A(dropout(x)))` with A = `linear_in`, B = `linear_out`, sharded like the base layer."""

    def __init__(
        self,
        mode: Literal["column", "row"],
        in_features: int,
        out_features: int,
        config: LoRAConfig,
        tp_group: Any,
        tp_size: int,
        dtype: torch.dtype,
        device: torch.device,
        gated: bool = False,
    ) -> None:
        super().__init__()
        from megatron.core.tensor_parallel.layers import (
            set_defaults_if_not_set_tensor_model_parallel_attributes,
            set_tensor_model_parallel_attributes,
        )

        self.mode = mode
        self.enabled = True  # False: the wrapped linear is its base layer alone (a reference policy)
        self.rank = config.rank
        self.scaling = config.scaling
        self.tp_group = tp_group
        self.tp_size = tp_size
        self.gated = gated  # B of a SwiGLU linear_fc1: [gate; up] per TP rank
        in_local = in_features // tp_size if mode == "row" else in_features
        out_local = out_features // tp_size if mode == "column" else out_features
        self.linear_in = nn.Linear(in_local, config.rank, bias=False, device=device, dtype=dtype)
        self.linear_out = nn.Linear(config.rank, out_local, bias=False, device=device, dtype=dtype)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        if mode == "column":
            set_defaults_if_not_set_tensor_model_parallel_attributes(self.linear_in.weight)
            set_tensor_model_parallel_attributes(self.linear_out.weight, True, 0, 1)
        else:
            set_tensor_model_parallel_attributes(self.linear_in.weight, True, 1, 1)
            set_defaults_if_not_set_tensor_model_parallel_attributes(self.linear_out.weight)

    @torch.no_grad()
    def reset_parameters(self, config: LoRAConfig, global_name: str, tp_rank: int) -> None:
        """A from a generator keyed by (seed, global name) on the full matrix, then sliced; B = 0."""
        in_full = self.linear_in.in_features * (self.tp_size if self.mode == "row" else 1)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + zlib.crc32(global_name.encode()))
        full = torch.empty(config.rank, in_full, dtype=torch.float32)
        if config.init_method == "kaiming":  # PEFT's default for lora_A
            nn.init.kaiming_uniform_(full, a=math.sqrt(5), generator=generator)
        else:
            nn.init.normal_(full, std=1.0 / config.rank, generator=generator)
        if self.mode == "row":
            full = full.chunk(self.tp_size, dim=1)[tp_rank]
        self.linear_in.weight.copy_(full)
        self.linear_out.weight.zero_()

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.dropout, nn.Identity) or not self.training:
            return x
        if self.mode == "row" and self.tp_size > 1:
            # The input is sharded: each rank drops its own columns (megatron's model-parallel RNG).
            from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

            with get_cuda_rng_tracker().fork():
                return self.dropout(x)
        return self.dropout(x)  # replicated input: the default RNG, in lockstep over TP like megatron's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from megatron.core.tensor_parallel.mappings import (
            copy_to_tensor_model_parallel_region,
            reduce_from_tensor_model_parallel_region,
        )

        h = F.linear(self._dropout(x), self.linear_in.weight)
        if self.tp_size > 1:
            if self.mode == "column":
                h = copy_to_tensor_model_parallel_region(h, group=self.tp_group)
            else:
                h = reduce_from_tensor_model_parallel_region(h, group=self.tp_group)
        return F.linear(h, self.linear_out.weight) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """This rank's shard of `scaling * B @ A`, shaped like the base weight's shard (fp32)."""
        return (self.linear_out.weight.float() @ self.linear_in.weight.float()) * self.scaling

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None):
        from megatron.core.transformer.utils import make_sharded_tensors_for_checkpoint

        axis = {"linear_out.weight": 0} if self.mode == "column" else {"linear_in.weight": 1}
        kwargs: dict[str, Any] = {}
        params = inspect.signature(make_sharded_tensors_for_checkpoint).parameters
        if "tp_group" in params and metadata is not None and metadata.get("dp_cp_group") is not None:
            kwargs = {"tp_group": self.tp_group, "dp_cp_group": metadata["dp_cp_group"]}
        state = self.state_dict(prefix="", keep_vars=True)
        sharded = make_sharded_tensors_for_checkpoint(state, prefix, axis, sharded_offsets, **kwargs)
        if self.gated:
            from megatron.core.transformer.mlp import apply_swiglu_sharded_factory

            key = f"{prefix}linear_out.weight"
            extra: dict[str, Any] = {}
            factory_params = inspect.signature(apply_swiglu_sharded_factory).parameters
            if "singleton_local_shards" in factory_params:
                extra["singleton_local_shards"] = (metadata or {}).get("singleton_local_shards", False)
            if "tp_group" in factory_params and kwargs:  # megatron-core >= 0.17 takes the groups
                extra.update(tp_group=self.tp_group, dp_group=kwargs["dp_cp_group"])
            sharded[key] = apply_swiglu_sharded_factory(sharded[key], sharded_offsets, **extra)
        return sharded


# -- the wrapped linear ------------------------------------------------------------------------------
class LoRALinear(nn.Module):
    """Mixin placed before a megatron linear class: its output plus the adapter's, same (output, bias)."""

    adapter: LoRAAdapter
    _lora_base_class: type

    def _lora_adapter_input(self, input_: torch.Tensor) -> torch.Tensor:
        if self.adapter.mode == "row" and not getattr(self, "input_is_parallel", True):
            from megatron.core.tensor_parallel.mappings import scatter_to_tensor_model_parallel_region

            return scatter_to_tensor_model_parallel_region(input_, group=self.adapter.tp_group)
        return input_

    def forward(self, input_: torch.Tensor, *args: Any, **kwargs: Any):
        result = super().forward(input_, *args, **kwargs)
        if not self.adapter.enabled:
            return result
        x = self._lora_adapter_input(input_)
        # megatron linears return (output, bias); TE's LayerNorm linear also hands back its normed input
        if len(result) == 3:
            output, bias, x = result
        else:
            output, bias = result
            if isinstance(output, tuple):
                output, x = output
        delta = self.adapter(x)
        if self.adapter.mode == "column" and self.adapter.tp_size > 1:
            gather = kwargs.get("runtime_gather_output")
            if gather is None:
                gather = getattr(self, "gather_output", False)
            if gather:
                from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

                delta = gather_from_tensor_model_parallel_region(delta, group=self.adapter.tp_group)
        return output + delta.to(output.dtype), bias

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None):
        state = super().sharded_state_dict(prefix, sharded_offsets, metadata)
        state = {k: v for k, v in state.items() if not k.startswith(f"{prefix}adapter.")}
        state.update(self.adapter.sharded_state_dict(f"{prefix}adapter.", sharded_offsets, metadata))
        return state


_LORA_CLASSES: dict[type, type] = {}


def _lora_class(base: type) -> type:
    cls = _LORA_CLASSES.get(base)
    if cls is None:
        name = f"LoRA{base.__name__}"
        cls = type(name, (LoRALinear, base), {"__module__": __name__, "__qualname__": name})
        cls._lora_base_class = base
        _LORA_CLASSES[base] = cls
        globals().setdefault(name, cls)
    return cls


def _wrap(module: nn.Module, mode: Literal["column", "row"], name: str, config: LoRAConfig, global_name: str):
    from megatron.core import parallel_state

    if getattr(getattr(module, "config", None), "sequence_parallel", False):
        raise ValueError(f"LoRA on {name}: sequence_parallel is not supported; set sequence_parallel=False")
    weight = module.weight
    group = _tp_group(module)
    tp_size = dist.get_world_size(group) if dist.is_initialized() and group is not None else 1
    tp_rank = parallel_state.get_tensor_model_parallel_rank() if tp_size > 1 else 0
    out_local, in_local = weight.shape
    in_features = in_local * tp_size if mode == "row" else in_local
    out_features = out_local * tp_size if mode == "column" else out_local
    gated = name.endswith("linear_fc1") and getattr(module.config, "gated_linear_unit", False)
    adapter = LoRAAdapter(
        mode, in_features, out_features, config, group, tp_size, weight.dtype, weight.device, gated
    )
    adapter.reset_parameters(config, global_name, tp_rank)
    if hasattr(module, "return_layernorm_output"):  # TE LayerNorm linear: the adapter reads the normed input
        module._lora_saved_ln_flags = (
            module.return_layernorm_output,
            getattr(module, "return_layernorm_output_gathered", None),
        )
        module.return_layernorm_output = True
        if hasattr(module, "return_layernorm_output_gathered"):
            module.return_layernorm_output_gathered = True
    module.__class__ = _lora_class(type(module))
    module.adapter = adapter


def _unwrap(module: LoRALinear) -> None:
    del module.adapter
    flags = module.__dict__.pop("_lora_saved_ln_flags", None)
    if flags is not None:
        module.return_layernorm_output = flags[0]
        if flags[1] is not None:
            module.return_layernorm_output_gathered = flags[1]
    module.__class__ = module._lora_base_class


# -- public API ----------------------------------------------------------------------------------------
def apply_lora(model: nn.Module, config: LoRAConfig | None = None, freeze_base: bool = True) -> list[str]:
    """Wrap the target linears of `model`'s language model with TP-aware LoRA adapters, in place.

    `model`: a megatron GPTModel or a `ProteinLLMModel` (only its `language_model` is wrapped; the bridge's
    own linears never are). `freeze_base`: freeze every language-model weight that is not an adapter
    (bridge and boundary-token parameters keep their state). Returns the wrapped module names, as
    `model.named_modules()` spells them (local layer numbers on a pipeline stage; the patterns match global
    ones). Call after loading the base weights.
    """
    config = config or LoRAConfig()
    language_model, prefix = language_model_of(model)
    candidates: list[tuple[str, nn.Module, str]] = []
    linear_names: list[str] = []
    for name, module in language_model.named_modules():
        if any(part in _EXCLUDED_PARTS for part in name.split(".")):
            continue
        mode = parallel_mode(module)
        if mode is None:
            continue
        linear_names.append(name)
        if config.matches(_global_module_name(language_model, name)):  # layer patterns use global indices
            if isinstance(module, LoRALinear):
                raise ValueError(f"{prefix}{name} already has a LoRA adapter")
            candidates.append((name, module, mode))
    if not candidates:
        if not linear_names or _pipeline_size() > 1:
            return []  # a stage without layers, or whose layers the patterns leave out
        raise ValueError(
            f"LoRA target_modules {config.target_modules} match none of the model's linears, e.g. "
            f"{sorted({n.rsplit('.', 1)[-1] for n in linear_names})}"
        )
    if freeze_base:
        for param in language_model.parameters():
            param.requires_grad_(False)
    for name, module, mode in candidates:
        _wrap(module, mode, name, config, _global_module_name(language_model, name))
    return [prefix + name for name, _, _ in candidates]


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """(name, module) of every wrapped linear of `model`."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """The model without its adapters inside the block (the base model a LoRA run started from)."""
    modules = [module for _, module in lora_modules(model)]
    for module in modules:
        module.adapter.enabled = False
    try:
        yield
    finally:
        for module in modules:
            module.adapter.enabled = True


def lora_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    for name, module in lora_modules(model):
        for pname, param in module.adapter.named_parameters():
            yield f"{name}.adapter.{pname}", param


@torch.no_grad()
def merge_lora(model: nn.Module) -> list[str]:
    """Fold every adapter into its base weight (`W += scaling * B @ A` on each TP shard, no communication)
    and unwrap; returns the merged module names. The model is then a plain megatron model."""
    merged = []
    for name, module in list(lora_modules(model)):
        weight = module.weight
        weight.copy_((weight.float() + module.adapter.delta_weight()).to(weight.dtype))
        _unwrap(module)
        merged.append(name)
    return merged
