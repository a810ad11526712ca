"""What generation returns: per sample, its prompt, the generated tokens, their log-probabilities, and why it
stopped; and the data-parallel gather of every rank's share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

__all__ = ["STOP_REASONS", "Rollouts", "Sample"]

StopReason = Literal["eos", "stop", "length"]
STOP_REASONS: tuple[str, ...] = ("eos", "stop", "length")


@dataclass
class Sample:
    """One completion.

    prompt_index:   the prompt's position in the `generate` call's list;
    sample_index:   which of the prompt's `n` samples (0..n-1);
    prompt_length:  tokens of the prompt;
    token_ids:      generated tokens (the eos / stop token included when one ended the sample);
    logprobs:       the model's log-probability of each generated token (raw logits, real vocabulary);
    stop_reason:    `eos` (end of turn), `stop` (a stop token) or `length` (max_new_tokens reached).
    """

    prompt_index: int
    sample_index: int
    prompt_length: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_reason: StopReason = "length"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class Rollouts:
    """The samples of one `generate` call, in (prompt_index, sample_index) order."""

    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def num_generated_tokens(self) -> int:
        return sum(s.num_tokens for s in self.samples)

    def stop_reasons(self) -> dict[str, int]:
        return {reason: sum(s.stop_reason == reason for s in self.samples) for reason in STOP_REASONS}

    def padded(self, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated ids `[N, T_max]` right-padded with `pad_id`, and log-probabilities `[N, T_max]` (0 at pads)."""
        width = max((s.num_tokens for s in self.samples), default=0)
        ids = torch.full((len(self.samples), width), pad_id, dtype=torch.long)
        logprobs = torch.zeros(len(self.samples), width, dtype=torch.float32)
        for row, sample in enumerate(self.samples):
            ids[row, : sample.num_tokens] = torch.tensor(sample.token_ids, dtype=torch.long)
            logprobs[row, : sample.num_tokens] = torch.tensor(sample.logprobs, dtype=torch.float32)
        return ids, logprobs

    def gather_data_parallel(self) -> Rollouts:
        """Every data-parallel rank's share joined (each rank generated a disjoint slice of the prompts)."""
        import torch.distributed as dist
        from megatron.core import parallel_state

        if not dist.is_initialized() or parallel_state.get_data_parallel_world_size() == 1:
            return self
        shares: list[list[Sample] | None] = [None] * parallel_state.get_data_parallel_world_size()
        dist.all_gather_object(shares, self.samples, group=parallel_state.get_data_parallel_group())
        samples = [s for share in shares for s in share or []]
        return Rollouts(sorted(samples, key=lambda s: (s.prompt_index, s.sample_index)))
