"""Rank bodies of the HF export checks (run through `protein_llm_nemo.testing.multiprocess.run_distributed`).

`export_run` builds each tiny megatron ProteinLLM at a TP/PP layout (gates opened, boundary-token table moved
off the LLM rows so both paths matter), returns its logits on the tiny batch, exports it as a HF folder
(and its LLM alone as plain Qwen3) and saves a megatron ProteinLLM checkpoint. `import_export_run` takes HF
ProteinLLM folders to megatron checkpoints at a layout and back to HF folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from protein_llm_nemo.conversion.checkpoints import save_protein_llm_checkpoint
from protein_llm_nemo.conversion.protein_llm_export import (
    export_language_model,
    export_protein_llm,
    export_protein_llm_checkpoint,
)
from protein_llm_nemo.conversion.protein_llm_import import import_protein_llm
from protein_llm_nemo.conversion.spec import ProteinLLMSpec
from protein_llm_nemo.models.lora import LoRAConfig, apply_lora, lora_parameters
from protein_llm_nemo.models.protein_llm import build_protein_llm
from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed, seed_everything
from protein_llm_nemo.testing.pipeline import pipeline_logits
from protein_llm_nemo.testing.tiny import (
    TINY_TOKEN_IDS,
    build_tiny_model,
    set_gates,
    tiny_arch,
    tiny_batch,
    tiny_bridge_config,
    to_portable,
)

__all__ = ["export_run", "import_export_run", "lora_export_run", "read_folder_tensors", "tiny_spec"]


def read_folder_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors files of a folder."""
    from safetensors import safe_open

    out = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not iterable
                out[key] = handle.get_tensor(key)
    return out


def tiny_spec(name: str):

    return ProteinLLMSpec(tiny_arch(), tiny_bridge_config(name), TINY_TOKEN_IDS)


def _init(tensor_model_parallel_size: int, pipeline_model_parallel_size: int, seed: int) -> None:

    initialize_distributed(
        ParallelConfig(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        ),
        seed=seed,
    )


def export_run(
    rank: int,
    world_size: int,
    bridges: list[str],
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    root: str,
    seed: int = 1234,
) -> dict[str, Any]:
    _init(tensor_model_parallel_size, pipeline_model_parallel_size, seed)
    results: dict[str, Any] = {}
    for name in bridges:
        spec = tiny_spec(name)
        model = build_tiny_model(spec.bridge_config, seed)
        set_gates(model, 0.5)
        if model.protein_token_embeddings is not None:
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                table = model.protein_token_embeddings.weight
                table.add_(torch.randn(table.shape, generator=generator).to(table.dtype))
        results[name] = pipeline_logits(model, tiny_batch(spec.bridge_config))
        base = Path(root)
        if spec.bridge_config.uses_encoder:
            export_protein_llm(model, spec, base / "hf" / name, tokenizer=None)
        export_language_model(model, spec.arch, base / "qwen3" / name, tokenizer=None)
        save_protein_llm_checkpoint(model, spec, base / "megatron" / name)
    return to_portable(results)


def import_export_run(
    rank: int,
    world_size: int,
    folders: dict[str, str],
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    root: str,
    seed: int = 1234,
) -> None:
    """HF ProteinLLM folder -> megatron checkpoint (this layout) -> HF folder, per bridge."""

    _init(tensor_model_parallel_size, pipeline_model_parallel_size, seed)
    for name, folder in folders.items():
        checkpoint = Path(root) / "megatron" / name
        import_protein_llm(folder, checkpoint)
        export_protein_llm_checkpoint(checkpoint, Path(root) / "hf" / name, tokenizer=False)


LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0}


def lora_export_run(rank: int, world_size: int, root: str, seed: int = 1234) -> dict[str, Any]:
    """TP=world_size `mlp` ProteinLLM with nonzero LoRA adapters: logits, a LoRA checkpoint, the export as base
    + PEFT adapter, the merged export from that checkpoint, then the merged export of the live model."""

    _init(world_size, 1, seed)
    spec = tiny_spec("mlp")
    spec.lora = dict(LORA)
    model = build_tiny_model(spec.bridge_config, seed)
    apply_lora(model, LoRAConfig(**LORA))
    generator = torch.Generator().manual_seed(seed)  # the same draws on every rank: replicas stay equal
    with torch.no_grad():
        for _, param in lora_parameters(model):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    logits = pipeline_logits(model, tiny_batch(spec.bridge_config))
    base = Path(root)
    save_protein_llm_checkpoint(model, spec, base / "megatron")
    export_protein_llm(model, spec, base / "adapter", tokenizer=None, lora="adapter")
    export_protein_llm_checkpoint(base / "megatron", base / "merged_from_checkpoint", tokenizer=False)
    export_protein_llm(model, spec, base / "merged", tokenizer=None, lora="merged")
    return to_portable({"logits": logits})


def tied_export_run(
    rank: int, world_size: int, name: str, pipeline_model_parallel_size: int, out: str, seed: int = 1
) -> Any:
    """A tiny ProteinLLM with tied embeddings at PP=`pipeline_model_parallel_size`: logits (last stage) and
    a live export (gated blocks and the output layer come from the last stage)."""
    import dataclasses

    _init(1, pipeline_model_parallel_size, seed)
    spec = tiny_spec(name)
    spec.arch = dataclasses.replace(spec.arch, tie_word_embeddings=True)
    seed_everything(seed)
    model = build_protein_llm(spec.arch, spec.bridge_config, protein_token_ids=TINY_TOKEN_IDS).eval()
    set_gates(model, 0.5)
    logits = pipeline_logits(model, tiny_batch(spec.bridge_config))
    export_protein_llm(model, spec, out, tokenizer=None)
    return to_portable(logits)
