"""What describes a ProteinLLM besides its weights, and how it is written down on each side.

`ProteinLLMSpec` (architecture, bridge config, boundary-token ids, encoder, LoRA) travels in a megatron
checkpoint's header (`header_extra` / `from_header`) and becomes the HF `ProteinLLMConfig`
(`hf_protein_llm_config` / `from_hf_config`).

HF names of a ProteinLLM: `language_model.` + the Qwen3 names; `bridge.*` and
`protein_token_embeddings.weight` as in megatron; flamingo's gated block in front of decoder layer `i` is
`gated_cross_attention.{i}.*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from protein_llm_nemo.conversion.hf_metadata import PROTEIN_LLM_ARCHITECTURE
from protein_llm_nemo.conversion.megatron_io import CHECKPOINT_HEADER, CheckpointError, CheckpointHeader
from protein_llm_nemo.models.qwen3 import Qwen3Arch

__all__ = [
    "GATED_BLOCK",
    "PROTEIN_LLM_HEADER_KEY",
    "ProteinLLMSpec",
    "hf_protein_llm_config",
    "hf_protein_llm_shapes",
]

PROTEIN_LLM_HEADER_KEY = "protein_llm"
# flamingo's gated cross-attention blocks: a decoder layer's submodule in megatron, `{GATED_BLOCK}.{i}` in HF
GATED_BLOCK = "gated_cross_attention"


@dataclass
class ProteinLLMSpec:
    """Architecture + bridge config + protein token ids + encoder reference (the checkpoint header's extra).

    `protein_token_ids`: a `ProteinTokenIds` or its three ids (default: the Qwen3 tokenizer's).
    `lora`: the `LoRAConfig` fields when the checkpoint holds adapters.
    """

    arch: Qwen3Arch
    bridge_config: Any
    protein_token_ids: Any = None
    encoder: str | None = None
    encoder_config: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from protein_llm_nemo.tokenizer import PROTEIN_TOKEN_IDS, ProteinTokenIds

        ids = self.protein_token_ids or PROTEIN_TOKEN_IDS
        self.protein_token_ids = ids if isinstance(ids, ProteinTokenIds) else ProteinTokenIds(*ids)
        self.encoder_config = dict(self.encoder_config or {})
        self.lora = dict(self.lora) if self.lora else None

    def header_extra(self) -> dict[str, Any]:
        return {
            PROTEIN_LLM_HEADER_KEY: {
                "bridge": self.bridge_config.to_dict(),
                "protein_token_ids": list(self.protein_token_ids.all),
                "encoder": self.encoder,
                "encoder_config": self.encoder_config,
                "lora": self.lora,
            }
        }

    @classmethod
    def from_header(cls, header: CheckpointHeader) -> ProteinLLMSpec | None:
        """The spec of a ProteinLLM checkpoint; None for a plain Qwen3 one. A malformed entry is a
        `CheckpointError` (the caller adds the checkpoint's path)."""
        extra = header.extra.get(PROTEIN_LLM_HEADER_KEY)
        if extra is None:
            return None
        try:
            return cls(
                header.arch,
                _bridge_config_from_dict(extra["bridge"]),
                extra.get("protein_token_ids"),
                extra.get("encoder"),
                extra.get("encoder_config"),
                extra.get("lora"),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{CHECKPOINT_HEADER}: malformed {PROTEIN_LLM_HEADER_KEY!r} entry ({type(error).__name__}: {error})"
            ) from error

    @classmethod
    def from_hf_config(cls, config: Any) -> ProteinLLMSpec:
        return cls(
            Qwen3Arch.from_hf_config(config.text_config),
            _bridge_config_from_dict(config.bridge_config),
            config.protein_token_ids,
            config.encoder,
            config.encoder_config,
        )


def _bridge_config_from_dict(values: dict[str, Any]) -> Any:
    from protein_llm_nemo.bridges import BridgeConfig

    return BridgeConfig.from_dict(values)


def hf_protein_llm_config(spec: ProteinLLMSpec, dtype: torch.dtype = torch.float32) -> Any:
    """The HF `ProteinLLMConfig` of a spec (its tensors stored in `dtype`)."""
    from protein_llm_nemo.hf.configuration import ProteinLLMConfig

    text = spec.arch.to_hf_config(torch_dtype=dtype)
    config = ProteinLLMConfig(
        text_config=text,
        bridge=spec.bridge_config.name,
        bridge_config=spec.bridge_config.to_dict(),
        encoder=spec.encoder,
        encoder_config=spec.encoder_config or None,
        protein_token_ids=list(spec.protein_token_ids.all),
    )
    config.architectures = [PROTEIN_LLM_ARCHITECTURE]
    config.dtype = dtype
    return config


def hf_protein_llm_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of the HF model of a `ProteinLLMConfig` (built on the meta device)."""
    from protein_llm_nemo.hf.modeling import ProteinLLMForCausalLM

    with torch.device("meta"):
        model = ProteinLLMForCausalLM(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}
