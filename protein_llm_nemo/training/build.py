"""Shared construction for `run_sft` / `run_ssl`: architecture, model, LoRA, DDP, optimizer, scheduler,
resume, metrics. Each function does one thing; the entry points call them in order."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from protein_llm_nemo.runtime import get_logger
from protein_llm_nemo.training.checkpoint import (
    load_checkpoint,
    load_model_weights,
    resolve_resume,
)
from protein_llm_nemo.training.config import (
    CheckpointConfig,
    LoggingConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
)
from protein_llm_nemo.training.ddp import wrap_ddp
from protein_llm_nemo.training.metrics import MetricsLogger
from protein_llm_nemo.training.optimizer import build_optimizer, param_group_summary
from protein_llm_nemo.training.scheduler import build_scheduler
from protein_llm_nemo.training.step import configure_model_for_training

logger = get_logger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_arch(config: ModelConfig):
    from protein_llm_nemo.models.qwen3 import Qwen3Arch, qwen3_preset

    if config.hf_path:
        from transformers import AutoConfig

        return Qwen3Arch.from_hf_config(AutoConfig.from_pretrained(config.hf_path))
    return qwen3_preset(config.preset)


def build_model(
    arch, bridge_config, model_config: ModelConfig, lora_config=None, load_language_model_from=None
):
    """This rank's ProteinLLM stage: LLM (frozen unless full fine-tuning), bridge, LoRA adapters."""
    from megatron.core import parallel_state

    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.models.qwen3 import transformer_config

    dtype = TORCH_DTYPES[model_config.params_dtype]
    language_config = transformer_config(
        arch,
        tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        params_dtype=dtype,
    )
    model = build_protein_llm(
        arch,
        bridge_config,
        language_config=language_config,
        freeze_language_model=model_config.freeze_language_model,
    )
    if load_language_model_from:
        model.load_language_model(load_language_model_from)
    if lora_config is not None:
        try:
            from protein_llm_nemo.models.lora import apply_lora
        except ImportError as exc:  # pragma: no cover - lora.py ships with this package
            raise RuntimeError("LoRA was requested but protein_llm_nemo.models.lora is unavailable") from exc
        wrapped = apply_lora(model, lora_config, freeze_base=model_config.freeze_language_model)
        logger.info("LoRA adapters on %d linears", len(wrapped))
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model


def export_header(arch, bridge_config, model, lora_config=None, encoder=None, source: str = ""):
    """The header that lets a training checkpoint be exported like any ProteinLLM checkpoint."""
    import dataclasses

    from megatron.core import parallel_state

    from protein_llm_nemo.conversion.megatron_io import CheckpointHeader, dtype_name
    from protein_llm_nemo.conversion.spec import ProteinLLMSpec

    spec = ProteinLLMSpec(
        arch,
        bridge_config,
        encoder=getattr(encoder, "name", None) or getattr(getattr(encoder, "config", None), "name", None),
        lora=dataclasses.asdict(lora_config) if lora_config is not None else None,
    )
    return CheckpointHeader(
        arch=arch,
        tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        params_dtype=dtype_name(model.config.params_dtype),
        source=source,
        extra=spec.header_extra(),
    )


def log_parameter_counts(model) -> dict[str, int]:
    counts = {
        group: sum(p.numel() for _, p in params)
        for group, params in model.named_parameter_groups(trainable_only=True).items()
    }
    logger.info(
        "trainable parameters: %s (total %d of %d)",
        {k: v for k, v in counts.items() if v},
        sum(counts.values()),
        model.num_parameters(),
    )
    return counts


def nothing_to_train(model) -> str:
    """Why `model` has no trainable parameter, in config keys (the message of the 0-trainable error)."""
    every = model.named_parameter_groups(trainable_only=False)
    bridge = getattr(getattr(model, "bridge_config", None), "name", "?")
    why = []
    if every["bridge"] or every["gates"] or every["protein_tokens"]:
        why.append(f"the {bridge!r} bridge is frozen (bridge.freeze=True)")
    else:
        why.append(f"the {bridge!r} bridge has no weights of its own")
    why.append("the language model is frozen (model.freeze_language_model=True)")
    why.append("there is no LoRA (lora=None)" if not every["lora"] else "the LoRA adapters are frozen")
    return (
        f"nothing to train: 0 trainable parameters: {', '.join(why)}; set model.freeze_language_model=False "
        "(full fine-tuning) or lora.rank=8 (LoRA)"
        + (", or bridge.freeze=False" if "bridge.freeze" in why[0] else "")
    )


def check_trainable(model) -> int:
    """The number of trainable parameters of the whole model (every rank holds a stage or a shard: summed
    over ranks); a ValueError naming the config when it is 0. Every rank calls it."""
    from protein_llm_nemo.runtime.distributed import dist

    count = model.num_parameters(trainable_only=True)
    if dist.is_initialized() and dist.get_world_size() > 1:
        total = torch.tensor([count], dtype=torch.long, device=device())
        dist.all_reduce(total)
        count = int(total.item())
    if count == 0:
        raise ValueError(nothing_to_train(model))
    return count


def build_training(
    model, optimizer_config: OptimizerConfig, scheduler_config: SchedulerConfig, train: TrainConfig
):
    """DDP wrapper, megatron optimizer (param groups), scheduler; hooks set on the config. A model with
    nothing to train is refused first (it would run, log a flat loss and save unchanged weights)."""
    check_trainable(model)
    dtype = model.config.params_dtype
    if optimizer_config.use_distributed_optimizer and not torch.cuda.is_available():
        raise ValueError(
            "optimizer.use_distributed_optimizer needs CUDA (megatron's DistributedOptimizer accepts only "
            "CUDA tensors); set it to False on CPU"
        )
    ddp = wrap_ddp(model, use_distributed_optimizer=optimizer_config.use_distributed_optimizer)
    optimizer = build_optimizer([ddp], optimizer_config, dtype)
    logger.info("optimizer param groups: %s", param_group_summary(optimizer))
    scheduler = build_scheduler(optimizer, scheduler_config, optimizer_config, train.max_steps)
    configure_model_for_training([ddp], optimizer)
    return [ddp], optimizer, scheduler


def restore(checkpoint: CheckpointConfig, model_chunks, optimizer, scheduler, data) -> int:
    """Resume (model, optimizer, scheduler, data position, RNG) or start from given model weights.
    Returns the step to start from."""
    path = resolve_resume(checkpoint.dir, checkpoint.resume_from, checkpoint.auto_resume)
    if path is not None:
        state = load_checkpoint(path, model_chunks, optimizer, scheduler)
        data.load_state_dict(state["data"])
        logger.info("resumed from %s at step %d", path, state["step"])
        return int(state["step"])
    if checkpoint.load_model_from:
        load_model_weights(checkpoint.load_model_from, model_chunks)
        logger.info("model weights from %s", checkpoint.load_model_from)
    return 0


def build_metrics(
    logging: LoggingConfig, checkpoint: CheckpointConfig, train: TrainConfig, start_step: int, run_config: Any
):
    from protein_llm_nemo.runtime.distributed import dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    log_dir = logging.log_dir or (str(Path(checkpoint.dir) / "logs") if checkpoint.dir else None)
    return MetricsLogger(
        log_dir,
        enabled=rank == 0,
        total_steps=train.max_steps,
        start_step=start_step,
        tensorboard=logging.tensorboard,
        wandb_project=logging.wandb_project,
        wandb_run_name=logging.wandb_run_name,
        progress_bar=train.progress_bar,
        run_config=_plain(run_config),
    )


def _plain(config: Any) -> dict:
    try:
        return dataclasses.asdict(config)
    except TypeError:
        return {}


def device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
