"""Parameter groups of a ProteinLLM, by parameter name, and the freezing / counting built on them.

| group            | what                                                                        |
|------------------|-----------------------------------------------------------------------------|
| `language_model` | the Qwen3 weights                                                           |
| `lora`           | the adapters `models.lora.apply_lora` adds to the language model            |
| `bridge`         | the bridge module and the weights of its cross-attention blocks             |
| `gates`          | the tanh gates of the cross-attention blocks                                |
| `protein_tokens` | the trainable table of the three protein boundary tokens                    |

The optimizer gives each group its learning rate, the training step logs each group's grad norm.
"""

from __future__ import annotations

from torch import nn

from protein_llm_nemo.bridges.blocks.gated_cross_attention import GATE_PARAMETER_NAMES

__all__ = ["PARAMETER_GROUPS", "ParameterGroups", "parameter_group"]

PARAMETER_GROUPS = ("language_model", "lora", "bridge", "gates", "protein_tokens")


def parameter_group(name: str) -> str:
    """The parameter group of a `ProteinLLMModel` parameter name."""
    parts = name.split(".")
    if any("lora" in part or "adapter" in part for part in parts):
        return "lora"
    if parts[0] == "protein_token_embeddings":
        return "protein_tokens"
    if "gated_cross_attention" in parts:
        return "gates" if parts[-1] in GATE_PARAMETER_NAMES else "bridge"
    if parts[0] == "bridge":
        return "bridge"
    return "language_model"


class ParameterGroups:
    """Mixin for an `nn.Module` whose parameter names follow `parameter_group`."""

    def named_parameter_groups(
        self, trainable_only: bool = True
    ) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Parameters by group name (every group present, possibly empty) for per-group LR and grad norms."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in PARAMETER_GROUPS}
        for name, param in self.named_parameters():
            if trainable_only and not param.requires_grad:
                continue
            groups[parameter_group(name)].append((name, param))
        return groups

    def set_trainable(self, group: str, trainable: bool) -> None:
        if group not in PARAMETER_GROUPS:
            raise ValueError(f"unknown parameter group {group!r}; choose one of {PARAMETER_GROUPS}")
        for name, param in self.named_parameters():
            if parameter_group(name) == group:
                param.requires_grad_(trainable)

    def freeze(
        self,
        language_model: bool | None = None,
        bridge: bool | None = None,
        protein_tokens: bool | None = None,
        gates: bool | None = None,
    ) -> None:
        """Freeze (True) or unfreeze (False) groups; None leaves a group as it is. `bridge` covers the
        bridge module and the gated blocks' weights; `gates` follows `bridge` unless given."""
        if gates is None:
            gates = bridge
        for group, frozen in (
            ("language_model", language_model),
            ("bridge", bridge),
            ("gates", gates),
            ("protein_tokens", protein_tokens),
        ):
            if frozen is not None:
                self.set_trainable(group, not frozen)

    def num_parameters(self, group: str | None = None, trainable_only: bool = False) -> int:
        groups = self.named_parameter_groups(trainable_only=trainable_only)
        selected = groups[group] if group is not None else [p for items in groups.values() for p in items]
        return sum(param.numel() for _, param in selected)
