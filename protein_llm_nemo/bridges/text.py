"""`text`: no encoder and no bridge module; the amino-acid sequence goes into the prompt as plain text.

Only the LLM (or its LoRA adapters) trains. `format_protein` is the prompt text of one protein.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from protein_llm_nemo.bridges import BridgeConfig, register_bridge


@register_bridge("text")
@dataclass
class TextBridgeConfig(BridgeConfig):
    uses_encoder: ClassVar[bool] = False
    splices: ClassVar[bool] = False

    num_slots: int = 0
    normalize_input: bool = False

    def build_module(self, layers: Any, hidden_size: int) -> None:
        return None

    @staticmethod
    def format_protein(sequence: str) -> str:
        """The reference's text pathway: the raw sequence inside the user turn."""
        return sequence
