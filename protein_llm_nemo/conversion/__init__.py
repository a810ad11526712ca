"""Checkpoint conversion between HuggingFace folders (Qwen3, ProteinLLM) and megatron-core dist checkpoints.

Modules, one concern each: `hf_io` (safetensors folders), `hf_metadata` (`config.json` and
`generation_config.json` of exported folders), `megatron_io` (dist checkpoint folders and their
header), `mappings` (Qwen3 weight mappings), `qwen3_import` / `qwen3_export` (plain Qwen3), `spec` (what
describes a ProteinLLM besides its weights), `checkpoints` (megatron checkpoints <-> live models),
`protein_llm_import` / `protein_llm_export` (ProteinLLM folders), `peft_adapter` (LoRA as PEFT folders),
`roundtrip` (the conversion check) and `cli`.
"""

from protein_llm_nemo.conversion.checkpoints import (
    build_model_for_checkpoint,
    load_protein_llm_checkpoint,
    save_protein_llm_checkpoint,
)
from protein_llm_nemo.conversion.hf_io import CheckpointError, HFCheckpointReader, HFCheckpointWriter
from protein_llm_nemo.conversion.megatron_io import CheckpointHeader
from protein_llm_nemo.conversion.protein_llm_export import (
    export_language_model,
    export_protein_llm,
    export_protein_llm_checkpoint,
)
from protein_llm_nemo.conversion.protein_llm_import import import_protein_llm
from protein_llm_nemo.conversion.qwen3_export import export_hf_checkpoint
from protein_llm_nemo.conversion.qwen3_import import import_hf_checkpoint, load_hf_weights
from protein_llm_nemo.conversion.spec import ProteinLLMSpec

__all__ = [
    "CheckpointError",
    "CheckpointHeader",
    "HFCheckpointReader",
    "HFCheckpointWriter",
    "ProteinLLMSpec",
    "build_model_for_checkpoint",
    "export_hf_checkpoint",
    "export_language_model",
    "export_protein_llm",
    "export_protein_llm_checkpoint",
    "import_hf_checkpoint",
    "import_protein_llm",
    "load_hf_weights",
    "load_protein_llm_checkpoint",
    "save_protein_llm_checkpoint",
]
