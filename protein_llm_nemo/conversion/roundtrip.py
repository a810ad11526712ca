"""The conversion check: random HF Qwen3 -> Megatron (any TP x PP) -> logits vs `transformers` -> HF again."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from protein_llm_nemo.conversion.checkpoints import build_model_for_checkpoint
from protein_llm_nemo.conversion.hf_io import HFCheckpointReader
from protein_llm_nemo.conversion.qwen3_export import export_hf_checkpoint
from protein_llm_nemo.conversion.qwen3_import import import_hf_checkpoint
from protein_llm_nemo.models.forward import forward_logits
from protein_llm_nemo.models.qwen3 import Qwen3Arch, qwen3_preset
from protein_llm_nemo.runtime import ParallelConfig, get_logger, initialize_distributed

logger = get_logger(__name__)


@dataclass
class RoundtripConfig:
    preset: str = "tiny"
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    seed: int = 1234
    batch_size: int = 2
    seq_length: int = 24
    tolerance: float = 1e-4
    workdir: str | None = None
    keep: bool = False


def save_random_hf_qwen3(arch: Qwen3Arch, folder: Path, seed: int) -> torch.nn.Module:
    """A randomly initialised `transformers` Qwen3 saved with `save_pretrained` (safetensors).

    Norm weights are randomised too (they start at 1.0), so swapped or dropped norms cannot pass.
    """
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(arch.to_hf_config()).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(1.0, 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    return model


def hf_tensors_bit_exact(first: Path, second: Path) -> tuple[bool, list[str]]:
    """Same tensor names, dtypes and bytes in two HF folders; returns (equal, differences)."""
    a, b = HFCheckpointReader(first), HFCheckpointReader(second)
    a_keys, b_keys = set(a.keys()), set(b.keys())
    problems = [f"only in {first}: {k}" for k in sorted(a_keys - b_keys)]
    problems += [f"only in {second}: {k}" for k in sorted(b_keys - a_keys)]
    for key in sorted(a_keys & b_keys):
        x, y = a.get(key), b.get(key)
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
            problems.append(f"differs: {key}")
    return not problems, problems


def _broadcast_object(value):
    holder = [value]
    if dist.is_initialized():
        dist.broadcast_object_list(holder, src=0)
    return holder[0]


def run_roundtrip(config: RoundtripConfig) -> dict:
    """Run the whole check on every rank; rank 0 returns the result (other ranks return it too)."""
    arch = qwen3_preset(config.preset)
    parallel = ParallelConfig(config.tensor_model_parallel_size, config.pipeline_model_parallel_size)
    context = initialize_distributed(parallel, seed=config.seed)
    workdir = Path(
        _broadcast_object(
            config.workdir or (tempfile.mkdtemp(prefix="roundtrip-") if context.is_main else None)
        )
    )
    hf_in, megatron_ckpt, hf_out = workdir / "hf", workdir / "megatron", workdir / "hf_export"
    generator = torch.Generator().manual_seed(config.seed)
    tokens = torch.randint(0, arch.vocab_size, (config.batch_size, config.seq_length), generator=generator)

    hf_logits = torch.empty(config.batch_size, config.seq_length, arch.vocab_size)
    if context.is_main:
        hf_model = save_random_hf_qwen3(arch, hf_in, config.seed)
        with torch.no_grad():
            hf_logits = hf_model(tokens).logits.float()
        del hf_model
    if dist.is_initialized():
        dist.broadcast(hf_logits, src=0)

    import_hf_checkpoint(hf_in, megatron_ckpt, params_dtype=torch.float32)
    # A fresh model read back from disk: this checks what was saved, not what stayed in memory.
    model, _ = build_model_for_checkpoint(megatron_ckpt, parallel_output=False)
    model.eval()
    logits = forward_logits(model, tokens)
    diff = torch.zeros(())
    if logits is not None:
        diff = (logits[..., : arch.vocab_size].float() - hf_logits).abs().max()
    if dist.is_initialized():
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    del model

    export_hf_checkpoint(megatron_ckpt, hf_out)
    bit_exact, problems = (False, [])
    if context.is_main:
        bit_exact, problems = hf_tensors_bit_exact(hf_in, hf_out)
        for problem in problems[:10]:
            logger.error("round trip: %s", problem)
    bit_exact = bool(_broadcast_object(bit_exact))
    if dist.is_initialized():
        dist.barrier()
    if context.is_main and not config.keep and config.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "tp": config.tensor_model_parallel_size,
        "pp": config.pipeline_model_parallel_size,
        "max_abs_logit_diff": float(diff),
        "roundtrip_bit_exact": bit_exact,
    }


def roundtrip_passed(result: dict, tolerance: float) -> bool:
    return result["roundtrip_bit_exact"] and result["max_abs_logit_diff"] <= tolerance


def format_result(result: dict) -> str:
    return json.dumps(result)
