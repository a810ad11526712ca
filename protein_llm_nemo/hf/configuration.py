"""`ProteinLLMConfig`: the HF config of an exported ProteinLLM (Qwen3 text config + bridge + encoder)."""

from __future__ import annotations

import sys
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

__all__ = ["ProteinLLMConfig"]


class ProteinLLMConfig(PreTrainedConfig):
    """Config of `ProteinLLMForCausalLM`.

    text_config:        the Qwen3 config of `language_model`.
    bridge:             a registered bridge name (`text` | `mlp` | `perceiver` | `flamingo` | a plug-in's).
    bridge_config:      `BridgeConfig.to_dict()`: every field, and the module that registers the bridge.
    encoder:            registered encoder name (`esmc-300m`, ...) or a local path/hub id of its weights;
                        None for the text bridge (or when embeddings always come precomputed).
    encoder_config:     `EncoderConfig` field overrides applied on top of the registered one (e.g. weights).
    encoder_dim:        width of the encoder's per-residue embeddings.
    num_slots:          `<|protein_embed|>` tokens per protein in a prompt.
    protein_token_ids:  ids of `<|protein_start|>`, `<|protein_embed|>`, `<|protein_end|>`.
    """

    model_type = "protein_llm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3")}

    text_config: dict | PreTrainedConfig | None = None
    bridge: str = "mlp"
    bridge_config: dict | None = None
    encoder: str | None = None
    encoder_config: dict | None = None
    encoder_dim: int = 0
    num_slots: int = 0
    protein_token_ids: list[int] | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.bridge_config = dict(self.bridge_config or {"name": self.bridge})
        if self.bridge_config.get("name", self.bridge) != self.bridge:
            raise ValueError(
                f"bridge_config is for {self.bridge_config.get('name')!r} but bridge is {self.bridge!r}"
            )
        self.bridge_config["name"] = self.bridge
        spec = self.bridge_spec  # validates the name and the fields
        if self.protein_token_ids is None:
            from protein_llm_nemo.tokenizer import PROTEIN_TOKEN_IDS

            self.protein_token_ids = list(PROTEIN_TOKEN_IDS.all)
        self.protein_token_ids = [int(i) for i in self.protein_token_ids]
        if len(self.protein_token_ids) != 3:
            raise ValueError(
                f"protein_token_ids needs 3 ids (start, embed, end), got {self.protein_token_ids}"
            )
        if spec.uses_encoder:
            self.encoder_dim = int(self.encoder_dim or spec.encoder_dim)
            self.num_slots = int(self.num_slots or spec.num_slots)
        # The Qwen3 tie flag lives in text_config; the wrapper itself ties nothing.
        self.tie_word_embeddings = False

    @property
    def bridge_spec(self) -> Any:
        """The registered `BridgeConfig` these fields describe (the bridge's facts and its HF twin)."""
        from protein_llm_nemo.bridges import BridgeConfig

        return BridgeConfig.from_dict(self.bridge_config)

    @property
    def uses_encoder(self) -> bool:
        return self.bridge_spec.uses_encoder

    @property
    def splices(self) -> bool:
        return self.bridge_spec.splices

    @property
    def cross_attention(self) -> bool:
        return self.bridge_spec.cross_attention

    def cross_attention_layers(self) -> list[int]:
        """0-based decoder layers preceded by a cross-attention block (the bridge's rule)."""
        return self.bridge_spec.cross_attention_layers(self.text_config.num_hidden_layers)


# Registered here too: when this module's own import of transformers loaded the Auto module first, the
# import hook had to wait for this module to finish (see `_registration`).
from protein_llm_nemo.hf import _registration  # noqa: E402

if _registration._CONFIG in sys.modules:
    _registration.register_config()
