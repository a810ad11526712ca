"""LoRA adapters as PEFT folders: the TP-aware megatron adapters of `models/lora.py` <-> HF Qwen3 LoRA.

    save_peft_adapter(model, arch, "out/adapter", config)   # for `peft.PeftModel.from_pretrained`
    load_peft_adapter(model, arch, "out/adapter")           # into an already LoRA-wrapped model

megatron fuses q, k, v into `linear_qkv` and gate, up into `linear_fc1`, with one adapter each; PEFT holds
one adapter per HF module. Export gives every HF module of a fused linear a copy of the shared A and splits
B's rows like the base weight (`conversion/mappings.py`); import accepts only adapters whose fused modules
share A, so the round trip is exact.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from protein_llm_nemo.conversion.mappings import DirectMapping, GatedMLPMapping, QKVMapping
from protein_llm_nemo.models.lora import LoRAConfig, language_model_of, lora_modules
from protein_llm_nemo.models.parallel_weights import global_parameter_name
from protein_llm_nemo.models.qwen3 import Qwen3Arch

__all__ = [
    "HF_TARGET_MODULES",
    "PEFT_PREFIX",
    "hf_lora_names",
    "load_hf_lora_state_dict",
    "load_peft_adapter",
    "lora_config_of",
    "lora_rank_and_scaling",
    "lora_state_dict_for_hf",
    "peft_adapter_config",
    "save_peft_adapter",
]

# megatron module -> the HF Qwen3 modules it fuses
HF_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "linear_qkv": ("q_proj", "k_proj", "v_proj"),
    "linear_proj": ("o_proj",),
    "linear_fc1": ("gate_proj", "up_proj"),
    "linear_fc2": ("down_proj",),
}
_HF_PARENT = {"linear_qkv": "self_attn", "linear_proj": "self_attn", "linear_fc1": "mlp", "linear_fc2": "mlp"}
_LAYER = re.compile(
    r"^decoder\.layers\.(\d+)\.(self_attention|mlp)\.(linear_qkv|linear_proj|linear_fc1|linear_fc2)$"
)
PEFT_PREFIX = "base_model.model."


def _pipeline_size() -> int:
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return 1
    return parallel_state.get_pipeline_model_parallel_world_size()


def _gather_tp(tensor: torch.Tensor, group: Any, tp_size: int) -> list[torch.Tensor]:
    if tp_size == 1:
        return [tensor.detach()]
    shards = [torch.empty_like(tensor) for _ in range(tp_size)]
    dist.all_gather(shards, tensor.detach().contiguous(), group=group)
    return shards


def hf_lora_names(global_module: str) -> tuple[str, str, tuple[str, ...]]:
    """`decoder.layers.3.mlp.linear_fc1` -> ("model.layers.3.mlp", "linear_fc1", ("gate_proj", "up_proj"))."""
    match = _LAYER.match(global_module)
    if match is None:
        raise ValueError(f"no HuggingFace Qwen3 module corresponds to the LoRA-wrapped {global_module!r}")
    layer, _, kind = match.groups()
    return f"model.layers.{layer}.{_HF_PARENT[kind]}", kind, HF_TARGET_MODULES[kind]


@torch.no_grad()
def lora_state_dict_for_hf(
    model: nn.Module, arch: Qwen3Arch, prefix: str = PEFT_PREFIX, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """This pipeline stage's adapters as full (TP-gathered) HF/PEFT tensors.

    Keys follow PEFT: `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`. The fused
    adapters split back into HF modules: A of `linear_qkv` / `linear_fc1` is shared, so q, k, v (gate, up)
    each get a copy; B's rows split by the QKV interleave / the [gate; up] halves. Collective over TP:
    every TP rank must call it; every rank gets the same dict.
    """
    language_model, _ = language_model_of(model)
    out: dict[str, torch.Tensor] = {}
    for name, module in lora_modules(language_model):
        adapter = module.adapter
        parent, kind, hf_modules = hf_lora_names(global_parameter_name(language_model, name))
        p = f"{prefix}{parent}."
        a_local, b_local = adapter.linear_in.weight.detach(), adapter.linear_out.weight.detach()
        if kind in ("linear_qkv", "linear_fc1"):  # column-parallel base: A replicated, B sharded by rows
            a = a_local
            b_shards = _gather_tp(b_local, adapter.tp_group, adapter.tp_size)
            mapping_cls = QKVMapping if kind == "linear_qkv" else GatedMLPMapping
            mapping = mapping_cls(name, *(f"{p}{m}.lora_B.weight" for m in hf_modules))
            tensors = mapping.to_hf(mapping.gather(b_shards), arch)
        else:  # row-parallel base: A sharded by columns, B replicated
            a = DirectMapping(name, "", "row").gather(_gather_tp(a_local, adapter.tp_group, adapter.tp_size))
            tensors = {f"{p}{hf_modules[0]}.lora_B.weight": b_local}
        for hf_module in hf_modules:  # PEFT holds one A per HF module: each gets a copy of the shared A
            tensors[f"{p}{hf_module}.lora_A.weight"] = a
        for key, tensor in tensors.items():  # own copies: nothing aliases the live parameters
            out[key] = tensor.to("cpu", dtype or tensor.dtype).contiguous().clone()
    return out


@torch.no_grad()
def load_hf_lora_state_dict(
    model: nn.Module, arch: Qwen3Arch, tensors: dict[str, torch.Tensor], prefix: str = PEFT_PREFIX
) -> int:
    """The inverse of `lora_state_dict_for_hf`: copy PEFT-named adapter tensors into this rank's adapters
    (the model must be LoRA-wrapped already, same rank). Returns the number of modules filled.

    A fused megatron adapter has one A for q, k, v (gate, up): the HF modules' A matrices must be equal,
    as in an adapter this module exported; independently trained PEFT adapters do not fuse exactly and
    are rejected. No communication: each rank takes its own shards.
    """
    from megatron.core import parallel_state

    language_model, _ = language_model_of(model)
    used: set[str] = set()
    filled = 0
    for name, module in lora_modules(language_model):
        adapter = module.adapter
        tp_rank = parallel_state.get_tensor_model_parallel_rank() if adapter.tp_size > 1 else 0
        parent, kind, hf_modules = hf_lora_names(global_parameter_name(language_model, name))
        p = f"{prefix}{parent}."
        keys = [f"{p}{m}.lora_{ab}.weight" for m in hf_modules for ab in "AB"]
        absent = [k for k in keys if k not in tensors]
        if absent:
            raise KeyError(f"the adapter has no tensor(s) {absent} for the LoRA-wrapped {name}")
        used.update(keys)
        a_list = [tensors[f"{p}{m}.lora_A.weight"] for m in hf_modules]
        if any(not torch.equal(a_list[0], other) for other in a_list[1:]):
            raise ValueError(
                f"{parent}: {', '.join(hf_modules)} have different lora_A matrices; megatron's fused "
                f"{kind} shares one A, so this adapter cannot be loaded exactly"
            )
        if kind in ("linear_qkv", "linear_fc1"):
            mapping_cls = QKVMapping if kind == "linear_qkv" else GatedMLPMapping
            mapping = mapping_cls(name, *(f"{p}{m}.lora_B.weight" for m in hf_modules))
            a = a_list[0]
            b = mapping.shard(mapping.to_megatron(tensors, arch), tp_rank, adapter.tp_size)
        else:
            a = DirectMapping(name, "", "row").shard(a_list[0], tp_rank, adapter.tp_size)
            b = tensors[f"{p}{hf_modules[0]}.lora_B.weight"]
        for param, value in ((adapter.linear_in.weight, a), (adapter.linear_out.weight, b)):
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"{name}: adapter shard {tuple(value.shape)} != parameter {tuple(param.shape)} "
                    "(another LoRA rank or architecture?)"
                )
            param.copy_(value)
        filled += 1
    unused = sorted(k for k in tensors if k not in used)
    if _pipeline_size() == 1 and unused:
        raise ValueError(f"the adapter holds {len(unused)} tensor(s) for modules without LoRA: {unused[:6]}")
    return filled


def load_peft_adapter(model: nn.Module, arch: Qwen3Arch, folder: str | Path) -> int:
    """Load a PEFT LoRA folder (`adapter_model.safetensors` + `adapter_config.json`) into the adapters of a
    LoRA-wrapped model whose rank and alpha match. Returns the number of modules filled."""
    from safetensors.torch import load_file

    folder = Path(folder)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    rank, scaling = lora_rank_and_scaling(model)
    file_scaling = adapter_config["lora_alpha"] / adapter_config["r"]
    if adapter_config["r"] != rank or not math.isclose(file_scaling, scaling):
        raise ValueError(
            f"{folder}: r={adapter_config['r']}, lora_alpha={adapter_config['lora_alpha']} do not match the "
            f"model's adapters (r={rank}, alpha/r={scaling})"
        )
    if adapter_config.get("use_rslora") or adapter_config.get("use_dora"):
        raise ValueError(f"{folder}: rsLoRA / DoRA adapters are not supported")
    return load_hf_lora_state_dict(model, arch, load_file(str(folder / "adapter_model.safetensors")))


def lora_rank_and_scaling(model: nn.Module) -> tuple[int, float]:
    """The one (rank, alpha / rank) of the model's adapters: a PEFT adapter folder has a single pair."""
    modules = [m for _, m in lora_modules(model)]
    if not modules:
        raise ValueError("the model has no LoRA adapters")
    ranks = {m.adapter.rank for m in modules}
    scalings = {m.adapter.scaling for m in modules}
    if len(ranks) != 1 or len(scalings) != 1:
        raise ValueError(f"adapters differ in rank/scaling ({ranks}, {scalings}); PEFT needs one of each")
    return ranks.pop(), scalings.pop()


def lora_config_of(model: nn.Module, fields: dict[str, Any] | None = None) -> LoRAConfig:
    """The `LoRAConfig` to describe the model's adapters with: `fields` (a checkpoint header's), else one
    read off the adapters themselves."""
    if fields:
        return LoRAConfig(**fields)
    rank, scaling = lora_rank_and_scaling(model)
    return LoRAConfig(rank=rank, alpha=scaling * rank)


def peft_adapter_config(
    config: LoRAConfig,
    arch: Qwen3Arch,
    base_model_name_or_path: str | None = None,
    wrapped_modules: list[str] | None = None,
) -> dict[str, Any]:
    """The `adapter_config.json` of a PEFT LoRA adapter for the HF Qwen3 of `arch`.

    `wrapped_modules`: global megatron names of the wrapped linears (`decoder.layers.0.mlp.linear_fc1`);
    without them every layer is assumed to carry the adapters that `config.target_modules` names.
    """
    if wrapped_modules is None:
        kinds = [k for k in HF_TARGET_MODULES if config.matches(k)]
        if not kinds:
            raise ValueError(
                f"target_modules {config.target_modules} name no Qwen3 linear {list(HF_TARGET_MODULES)}; "
                "pass wrapped_modules"
            )
        wrapped_modules = [
            f"decoder.layers.{i}.{'mlp' if k.startswith('linear_fc') else 'self_attention'}.{k}"
            for i in range(arch.num_hidden_layers)
            for k in kinds
        ]
    full_names: list[str] = []
    per_layer: dict[str, set[str]] = {}
    for name in wrapped_modules:
        parent, _, hf_modules = hf_lora_names(name)
        full_names += [f"{parent}.{m}" for m in hf_modules]
        per_layer.setdefault(parent.split(".")[2], set()).update(hf_modules)
    uniform = (
        len(per_layer) == arch.num_hidden_layers and len({frozenset(s) for s in per_layer.values()}) == 1
    )
    order = [m for ms in HF_TARGET_MODULES.values() for m in ms]
    if uniform:
        targets = [m for m in order if m in next(iter(per_layer.values()))]
    else:
        targets = sorted(set(full_names))
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": True,
        "revision": None,
    }


def save_peft_adapter(
    model: nn.Module,
    arch: Qwen3Arch,
    folder: str | Path,
    config: LoRAConfig,
    base_model_name_or_path: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `adapter_model.safetensors` + `adapter_config.json` that `peft.PeftModel.from_pretrained` loads
    onto the HF Qwen3. Collective over all ranks (TP gather, PP gather to global rank 0, which writes)."""
    from megatron.core import parallel_state
    from safetensors.torch import save_file

    rank, scaling = lora_rank_and_scaling(model)
    if rank != config.rank or not math.isclose(scaling, config.scaling):
        raise ValueError(
            f"the model's adapters have r={rank}, alpha/r={scaling}; config says r={config.rank}, "
            f"alpha/r={config.scaling}"
        )
    tensors = lora_state_dict_for_hf(model, arch, dtype=dtype)
    language_model, _ = language_model_of(model)
    wrapped = [global_parameter_name(language_model, n) for n, _ in lora_modules(language_model)]
    if dist.is_initialized() and parallel_state.get_pipeline_model_parallel_world_size() > 1:
        stages: list[Any] = [None] * parallel_state.get_pipeline_model_parallel_world_size()
        dist.all_gather_object(
            stages, (tensors, wrapped), group=parallel_state.get_pipeline_model_parallel_group()
        )
        tensors, wrapped = {}, []
        for stage_tensors, stage_wrapped in stages:
            tensors.update(stage_tensors)
            wrapped += stage_wrapped
    folder = Path(folder)
    if not dist.is_initialized() or dist.get_rank() == 0:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        adapter_config = peft_adapter_config(config, arch, base_model_name_or_path, wrapped)
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    if dist.is_initialized():
        dist.barrier()
    return folder
