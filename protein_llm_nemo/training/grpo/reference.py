"""The reference policy of GRPO's KL term, without a second copy of the LLM where it can be avoided.

- LoRA runs: the same model with its adapters disabled (the base LLM the run started from) and the bridge,
  gated blocks and protein-token rows as they were at the start (a copy of those small tensors).
- Full fine-tuning: a copy of every trainable tensor as it was at the start, kept on the CPU
  (`offload=True`, NeMo-RL's state swap) or on the device, swapped in for the reference pass.

    reference = ReferencePolicy(model)          # at the start of GRPO, after loading the SFT checkpoint
    with reference.active():                    # the reference's log-probs
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from protein_llm_nemo.models.lora import adapters_disabled, lora_modules
from protein_llm_nemo.models.parameter_groups import parameter_group

__all__ = ["ReferencePolicy"]


class ReferencePolicy:
    def __init__(self, model: nn.Module, offload: bool = True) -> None:
        self.model = model
        self.uses_lora = any(True for _ in lora_modules(model))
        device = torch.device("cpu") if offload else None
        self.saved: dict[str, torch.Tensor] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad or parameter_group(name) == "lora":
                continue  # frozen tensors never change; LoRA is switched off instead of copied
            self.saved[name] = param.detach().to(device or param.device, copy=True)

    @property
    def num_saved(self) -> int:
        return sum(t.numel() for t in self.saved.values())

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The model is the reference policy inside the block (its current weights are restored after)."""
        params = dict(self.model.named_parameters())
        current = {}
        with torch.no_grad():
            for name, saved in self.saved.items():
                param = params[name]
                current[name] = param.detach().clone()
                param.copy_(saved.to(param.device))
        try:
            if self.uses_lora:
                with adapters_disabled(self.model):
                    yield
            else:
                yield
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)
