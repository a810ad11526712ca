"""What an exported HF folder says besides its weights: a complete `config.json` and `generation_config.json`.

Qwen3 folders must load in `transformers` (4.x and 5.x) and in vLLM as they are:

- `architectures: ["Qwen3ForCausalLM"]`: vLLM picks its model class from it and refuses a config without
  one ("No model architectures are specified", vllm-project/vllm
  vllm/model_executor/models/registry.py, `inspect_model_cls`).
- `torch_dtype` next to transformers 5's `dtype`: vLLM's `_find_dtype` (vllm-project/vllm vllm/config.py)
  reads `config.torch_dtype`.
- `rope_theta` at the top level next to transformers 5's `rope_parameters`: vLLM's Qwen3 layers read
  `getattr(config, "rope_theta", 1000000)` (vllm-project/vllm vllm/model_executor/models/qwen3.py,
  `Qwen3DecoderLayer`), and transformers 4.x's `Qwen3Config` defaults to 10,000 without it, so a 2507 model
  (5,000,000) or any non-default base would silently run with the wrong rotary base.
- `bos_token_id` / `eos_token_id` (`Qwen3Arch.to_hf_config`), as Qwen3's own config.json.

`generation_config.json` lists `<|im_end|>` (151645) and `<|endoftext|>` (151643) as eos, as Qwen3's releases
do, so a plain `model.generate` stops at the end of the assistant turn instead of running on to
`max_new_tokens`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from protein_llm_nemo.conversion.megatron_io import dtype_name
from protein_llm_nemo.models.dist_checkpoint import read_json_file
from protein_llm_nemo.models.qwen3 import Qwen3Arch
from protein_llm_nemo.tokenizer.special_tokens import QWEN3_EOS_ID, QWEN3_PAD_ID

__all__ = [
    "GENERATION_CONFIG",
    "GENERATION_EOS_IDS",
    "PROTEIN_LLM_ARCHITECTURE",
    "QWEN3_ARCHITECTURE",
    "write_generation_config",
    "write_qwen3_config",
]

QWEN3_ARCHITECTURE = "Qwen3ForCausalLM"
PROTEIN_LLM_ARCHITECTURE = "ProteinLLMForCausalLM"
GENERATION_CONFIG = "generation_config.json"
# <|im_end|> closes an assistant turn (what chat generation must stop at), <|endoftext|> a document.
GENERATION_EOS_IDS = (QWEN3_EOS_ID, QWEN3_PAD_ID)


def write_qwen3_config(folder: str | os.PathLike, arch: Qwen3Arch, dtype: torch.dtype) -> dict[str, Any]:
    """Write the `config.json` of a plain Qwen3 folder (module docstring: what it adds); returns it."""
    folder = Path(folder)
    config = arch.to_hf_config(torch_dtype=dtype)
    config.architectures = [QWEN3_ARCHITECTURE]
    config.save_pretrained(str(folder))
    path = folder / "config.json"
    values = read_json_file(path)
    values.update(rope_theta=float(arch.rope_theta), torch_dtype=dtype_name(dtype), dtype=dtype_name(dtype))
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return values


def write_generation_config(folder: str | os.PathLike, vocab_size: int) -> dict[str, Any] | None:
    """Write (or complete) `generation_config.json` so that `generate` stops at Qwen3's eos tokens.

    A file already in `folder` (the source model's, copied from the checkpoint's `hf_assets`) keeps its
    sampling settings; its eos list gains the ids it lacks. A vocabulary without Qwen3's special tokens
    (the CPU test models) gets no eos ids, and no file unless one was there. Returns what was written."""
    path = Path(folder) / GENERATION_CONFIG
    values: dict[str, Any] = read_json_file(path) if path.is_file() else {}
    if not isinstance(values, dict):
        values = {}
    ids = [i for i in GENERATION_EOS_IDS if i < vocab_size]
    if not ids and not values:
        return None
    if ids:
        eos = values.get("eos_token_id")
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        values["eos_token_id"] = eos + [i for i in ids if i not in eos]
        values.setdefault("bos_token_id", QWEN3_PAD_ID)
        values.setdefault("pad_token_id", QWEN3_PAD_ID)
    # Not derived from the model config any more: transformers may rebuild such a file from config.json.
    values.pop("_from_model_config", None)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return values
