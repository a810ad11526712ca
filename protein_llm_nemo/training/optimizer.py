"""The megatron optimizer (`get_megatron_optimizer`) with ProteinLLM parameter groups.

Groups come from `ProteinLLMModel.named_parameter_groups()` / `parameter_group(name)`:
- `language_model`, `lora`, `protein_tokens`: `OptimizerConfig.lr` (reference 2e-4);
- `bridge`, `gates`: `OptimizerConfig.bridge_lr` (reference 1e-3);
- no weight decay on norms, biases (1-D or `*.bias`) and the tanh gates.

Expressed with megatron's own `config_overrides` ({ParamKey: ParamGroupOverride}): each parameter is
tagged with two boolean attributes and matched by `ParamKey(attr=...)`, so the same param groups (and the
same optimizer `sharded_state_dict`) appear on every rank and the scheduler anneals each group between its
own max_lr and min_lr.
"""

from __future__ import annotations

import torch

from protein_llm_nemo.models.parameter_groups import parameter_group
from protein_llm_nemo.training.config import OptimizerConfig

BRIDGE_LR_ATTR = "protein_llm_bridge_lr"
NO_WD_ATTR = "protein_llm_no_weight_decay"
BRIDGE_LR_GROUPS = ("bridge", "gates")


def strip_wrapper_prefix(name: str) -> str:
    while name.startswith("module."):
        name = name[len("module.") :]
    return name


def no_weight_decay(name: str, param: torch.nn.Parameter) -> bool:
    return param.dim() <= 1 or name.endswith(".bias") or parameter_group(name) == "gates"


def tag_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Mark parameters for the overrides; returns the number of trainable tensors per group."""
    counts: dict[str, int] = {}
    for raw_name, param in model.named_parameters():
        name = strip_wrapper_prefix(raw_name)
        group = parameter_group(name)
        setattr(param, BRIDGE_LR_ATTR, group in BRIDGE_LR_GROUPS)
        setattr(param, NO_WD_ATTR, no_weight_decay(name, param))
        if param.requires_grad:
            counts[group] = counts.get(group, 0) + 1
    return counts


def megatron_optimizer_config(config: OptimizerConfig, params_dtype: torch.dtype):
    from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig

    return MegatronOptimizerConfig(
        optimizer=config.optimizer,
        lr=config.lr,
        min_lr=config.lr * config.min_lr_ratio,
        weight_decay=config.weight_decay,
        adam_beta1=config.betas[0],
        adam_beta2=config.betas[1],
        adam_eps=config.eps,
        clip_grad=0.0,  # clipping runs in step.clip_gradients (megatron's asserts CUDA tensors)
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        params_dtype=params_dtype,
        use_distributed_optimizer=config.use_distributed_optimizer,
        decoupled_weight_decay=True,  # AdamW
    )


def config_overrides(config: OptimizerConfig) -> dict:
    from megatron.core.optimizer import ParamKey

    return {
        ParamKey(attr=BRIDGE_LR_ATTR): {
            "max_lr": config.bridge_lr,
            "min_lr": config.bridge_lr * config.min_lr_ratio,
            # megatron tells param groups apart (e.g. when loading an optimizer checkpoint) only by
            # (wd_mult, lr_mult, is_expert_parallel, is_decoupled_lr): the bridge groups' own lr is a
            # decoupled lr, and without the flag they would collide with the main groups.
            "is_decoupled_lr": True,
            "lr_group": "bridge",  # read by logging; megatron keeps extra keys in the param group
        },
        ParamKey(attr=NO_WD_ATTR): {"wd_mult": 0.0},
    }


def build_optimizer(model_chunks: list[torch.nn.Module], config: OptimizerConfig, params_dtype: torch.dtype):
    """A megatron optimizer over the trainable parameters of DDP-wrapped `model_chunks`."""
    from megatron.core.optimizer import get_megatron_optimizer

    for chunk in model_chunks:
        tag_parameters(chunk)
    return get_megatron_optimizer(
        megatron_optimizer_config(config, params_dtype),
        model_chunks,
        config_overrides=config_overrides(config),
        use_gloo_process_groups=False,
    )


def param_group_summary(optimizer) -> list[dict]:
    """(max_lr, min_lr, wd_mult, number of parameters) of each optimizer param group."""
    out = []
    for group in optimizer.param_groups:
        out.append(
            {
                "max_lr": group.get("max_lr"),
                "min_lr": group.get("min_lr"),
                "wd_mult": group.get("wd_mult", 1.0),
                "num_params": sum(p.numel() for p in group["params"]),
            }
        )
    return out
