"""Gradient routing between the policy's parameter groups (`lora`, `bridge`, `gates`, `protein_tokens`,
`language_model`): measured every step, and three ways to act on it.

The seeds found that with a bridge, GRPO's scalar reward sent its gradient to the bridge *or* to the LoRA
adapters, not both. `GradientRouter` plugs into `train_step` between the backward pass and the update:
- `per_group_clip`: each group's gradient norm clipped to `clip_grad` on its own (a large bridge gradient no
  longer shrinks the adapters' share under one global clip);
- `balance`: every trainable group's gradient scaled to the groups' mean norm before the update;
- `freeze_bridge_steps`: a two-stage schedule: the bridge and its gated blocks (`bridge`, `gates`, the
  groups on `optimizer.bridge_lr`) get no update for the first N steps (gradient zeroed and learning rate 0,
  so neither Adam's moments nor weight decay move them), then train at their own learning rate. The three
  protein-token rows train throughout (they are part of the prompt's embedding).
The norms before and after (after these and the global clip) are logged per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from protein_llm_nemo.models.parameter_groups import parameter_group
from protein_llm_nemo.training.optimizer import strip_wrapper_prefix

__all__ = ["BRIDGE_SIDE_GROUPS", "GradientRouter"]

BRIDGE_SIDE_GROUPS = ("bridge", "gates")


def _grads_by_group(model_chunks: Sequence[torch.nn.Module]) -> dict[str, list[torch.Tensor]]:
    grads: dict[str, list[torch.Tensor]] = {}
    for chunk in model_chunks:
        for name, param in chunk.named_parameters():
            if not param.requires_grad:
                continue
            grad = getattr(param, "main_grad", None)
            if grad is None:
                grad = param.grad
            if grad is not None:
                grads.setdefault(parameter_group(strip_wrapper_prefix(name)), []).append(grad)
    return grads


class GradientRouter:
    """`train_step`'s routing hook. `step` is the optimizer step about to be taken (0-based)."""

    def __init__(
        self,
        clip_grad: float,
        per_group_clip: bool = False,
        balance: bool = False,
        freeze_bridge_steps: int = 0,
    ):
        self.clip_grad, self.per_group_clip, self.balance = clip_grad, per_group_clip, balance
        self.freeze_bridge_steps = freeze_bridge_steps
        self.step = 0
        self._saved_lrs: list[tuple[dict, float]] = []

    @property
    def bridge_frozen(self) -> bool:
        return self.step < self.freeze_bridge_steps

    @torch.no_grad()
    def adjust(self, model_chunks: Sequence[torch.nn.Module], norms: dict[str, float]) -> dict[str, float]:
        """Scale each group's gradient (in place, before the optimizer reads it); returns the scale per group.
        `norms` are the groups' norms over the whole model (TP/PP-reduced), so every rank scales alike."""
        scales = dict.fromkeys(norms, 1.0)
        if self.bridge_frozen:
            for group in BRIDGE_SIDE_GROUPS:
                if group in scales:
                    scales[group] = 0.0
        live = {g: n for g, n in norms.items() if scales[g] > 0 and n > 0}
        if self.balance and len(live) > 1:
            target = sum(live.values()) / len(live)
            for group, norm in live.items():
                scales[group] *= target / norm
        if self.per_group_clip and self.clip_grad > 0:
            for group, norm in live.items():
                scaled = norm * scales[group]
                if scaled > self.clip_grad:
                    scales[group] *= self.clip_grad / (scaled + 1e-6)
        for group, grads in _grads_by_group(model_chunks).items():
            scale = scales.get(group, 1.0)
            if scale != 1.0:
                torch._foreach_mul_(grads, scale)
        return scales

    def before_update(self, optimizer: Any) -> None:
        """Learning rate 0 for the bridge-side groups while they are frozen (no weight decay, no moments)."""
        self._saved_lrs = []
        if not self.bridge_frozen:
            return
        for group in optimizer.param_groups:
            if group.get("lr_group") == "bridge":
                self._saved_lrs.append((group, group["lr"]))
                group["lr"] = 0.0

    def after_update(self, optimizer: Any) -> None:
        for group, lr in self._saved_lrs:
            group["lr"] = lr
        self._saved_lrs = []
        self.step += 1

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state.get("step", 0))
