"""Which prompt groups train: a resumable prompt stream and dynamic sampling (DAPO).

A group whose rewards are all equal has zero advantage everywhere: no gradient, only cost. With dynamic
sampling on, each generation round draws `ceil(num_prompts_per_step x batch_multiplier)` prompts, keeps the
groups with non-zero reward variance, and rounds repeat until the step has `num_prompts_per_step` groups;
groups beyond that carry over to the next step (and into checkpoints), none is generated for nothing. After
`max_generation_rounds` rounds without enough groups the step fails with a clear error (the task is too
easy or too hard for the policy: every group scores alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.sampler import DistributedPackSampler
from protein_llm_nemo.training.grpo.rollout import Group

__all__ = ["DynamicSamplingError", "GroupSampler", "PromptStream", "SamplingStats"]


class DynamicSamplingError(RuntimeError):
    """Not enough groups with reward variance after the allowed generation rounds."""


class PromptStream:
    """An endless seeded order over the training records (reshuffled every epoch); its position is saved."""

    def __init__(self, records: Sequence[ProteinRecord], seed: int, shuffle: bool = True) -> None:
        if not records:
            raise ValueError("no training prompts")
        self.records = list(records)
        self.sampler = DistributedPackSampler(
            len(self.records), rank=0, world_size=1, seed=seed, shuffle=shuffle
        )
        self._order = iter(self.sampler)

    def take(self, count: int) -> list[ProteinRecord]:
        return [self.records[next(self._order)] for _ in range(count)]

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self._order = iter(self.sampler)


@dataclass
class SamplingStats:
    rounds: int = 0
    prompts_generated: int = 0
    zero_variance_groups: int = 0
    carried_in: int = 0

    @property
    def zero_variance_fraction(self) -> float:
        return self.zero_variance_groups / max(self.prompts_generated, 1)


@dataclass
class GroupSampler:
    """`next_step(generate_groups) -> (groups to train, stats)`; `generate_groups(records) -> list[Group]`."""

    prompts: PromptStream
    num_prompts_per_step: int
    dynamic: bool = True
    batch_multiplier: float = 2.0
    max_generation_rounds: int = 10
    carry: list[Group] = field(default_factory=list)

    def next_step(
        self, generate_groups: Callable[[list[ProteinRecord]], list[Group]]
    ) -> tuple[list[Group], SamplingStats]:
        stats = SamplingStats(carried_in=len(self.carry))
        kept = list(self.carry)
        draw = (
            math.ceil(self.num_prompts_per_step * self.batch_multiplier)
            if self.dynamic
            else self.num_prompts_per_step
        )
        while len(kept) < self.num_prompts_per_step:
            if stats.rounds >= self.max_generation_rounds:
                raise DynamicSamplingError(
                    f"dynamic sampling found {len(kept)} of {self.num_prompts_per_step} groups with reward variance "
                    f"in {stats.rounds} generation rounds ({stats.zero_variance_groups} of {stats.prompts_generated} "
                    "groups scored alike): the task is too easy or too hard for this policy; raise "
                    "grpo.max_generation_rounds / grpo.batch_multiplier / grpo.num_generations, or change the data"
                )
            groups = generate_groups(self.prompts.take(draw))
            stats.rounds += 1
            stats.prompts_generated += len(groups)
            for group in groups:
                if self.dynamic and group.zero_variance:
                    stats.zero_variance_groups += 1
                else:
                    kept.append(group)
        self.carry = kept[self.num_prompts_per_step :]
        return kept[: self.num_prompts_per_step], stats

    # -- checkpoints: the stream's position and the carried groups --------------------------------------
    def state_dict(self) -> dict:
        return {"prompts": self.prompts.state_dict(), "carry": [_group_to_dict(g) for g in self.carry]}

    def load_state_dict(self, state: dict) -> None:
        self.prompts.load_state_dict(state["prompts"])
        self.carry = [_group_from_dict(g) for g in state.get("carry", [])]


def _group_to_dict(group: Group) -> dict:
    return {
        "record": group.record.to_dict(),
        "prompt_ids": group.prompt_ids,
        "sequences": group.sequences,
        "completions": group.completions,
        "generation_logprobs": group.generation_logprobs,
        "stop_reasons": group.stop_reasons,
        "texts": group.texts,
        "rewards": group.rewards.tolist(),
        "components": {k: v.tolist() for k, v in group.components.items()},
        "format_ok": None if group.format_ok is None else group.format_ok.tolist(),
    }


def _group_from_dict(data: dict) -> Group:
    return Group(
        record=ProteinRecord.from_dict(data["record"]),
        prompt_ids=data["prompt_ids"],
        sequences=data["sequences"],
        completions=data["completions"],
        generation_logprobs=data["generation_logprobs"],
        stop_reasons=data["stop_reasons"],
        texts=data["texts"],
        rewards=torch.tensor(data["rewards"]),
        components={k: torch.tensor(v) for k, v in data["components"].items()},
        format_ok=None if data["format_ok"] is None else torch.tensor(data["format_ok"]),
    )
