"""GRPO micro-batches: the training groups' samples as padded token rows with their per-token advantages,
old / reference / generation log-probs and the response mask.

A sample's row is its prompt followed by its completion: `input_ids = tokens[:-1]`, `labels = tokens[1:]`,
so position t holds the log-prob of token t+1; the mask is 1 on the completion's tokens (the eos included),
0 on the prompt, the padding, and every token of an overlong (length-cut) sample, which still counts in its
group's baseline. Data-parallel rank r trains samples r, r + DP, ... of the step's samples (a fixed order, so
the split does not depend on anything but the layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protein_llm_nemo.tokenizer import IGNORE_INDEX
from protein_llm_nemo.training.grpo.rollout import Group
from protein_llm_nemo.training.microbatch import MicroBatch

__all__ = ["GRPOMicroBatch", "TrainSample", "build_microbatches", "flatten_groups"]


@dataclass(kw_only=True)
class GRPOMicroBatch(MicroBatch):
    """`MicroBatch` plus GRPO's per-token tensors (`[B, S]`, aligned with `labels`).

    advantages           the sample's advantage on each of its tokens (0 elsewhere).
    old_logprobs         the policy's log-probs before this step's update; None: the update's own forward, detached.
    ref_logprobs         the reference policy's, for the KL term (None with beta = 0).
    generation_logprobs  what the generator reported (importance-sampling correction, mismatch metrics).
    sample_ids           each token's sample index within the micro-batch (per-sample loss aggregations).
    """

    advantages: torch.Tensor
    generation_logprobs: torch.Tensor
    sample_ids: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None


@dataclass
class TrainSample:
    """One completion to train on."""

    prompt_ids: list[int]
    completion: list[int]
    generation_logprobs: list[float]
    advantage: float
    trains: bool  # False: overlong-filtered (kept for the baseline, out of the loss)
    sequences: list[str]


def flatten_groups(
    groups: Sequence[Group], advantages: Sequence[torch.Tensor], overlong_filtering: bool
) -> list[TrainSample]:
    """The groups' samples in (group, sample) order with their advantages."""
    samples = []
    for group, group_advantages in zip(groups, advantages, strict=True):
        truncated = group.truncated
        for j in range(group.size):
            samples.append(
                TrainSample(
                    prompt_ids=group.prompt_ids,
                    completion=group.completions[j],
                    generation_logprobs=group.generation_logprobs[j],
                    advantage=float(group_advantages[j]),
                    trains=not (overlong_filtering and bool(truncated[j])),
                    sequences=group.sequences,
                )
            )
    return samples


def build_microbatches(
    samples: Sequence[TrainSample],
    micro_batch_size: int,
    pad_id: int,
    embed=None,
    seq_length: int | None = None,
) -> list[GRPOMicroBatch]:
    """Padded micro-batches of `micro_batch_size` samples (every micro-batch padded to `seq_length`, or to
    the step's longest sample, so megatron's pipeline schedule sees one shape)."""
    rows = [s.prompt_ids + s.completion for s in samples]
    width = seq_length or max(len(r) for r in rows) - 1
    if max(len(r) for r in rows) - 1 > width:
        raise ValueError(f"a sample of {max(len(r) for r in rows)} tokens does not fit seq_length={width}")
    batches = []
    for start in range(0, len(samples), micro_batch_size):
        part = samples[start : start + micro_batch_size]
        size = len(part)
        input_ids = torch.full((size, width), pad_id, dtype=torch.long)
        labels = torch.full((size, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(size, width)
        advantages = torch.zeros(size, width)
        generation = torch.zeros(size, width)
        sample_ids = torch.arange(size)[:, None].expand(size, width).contiguous()
        sequences: list[str] = []
        real = 0
        for row, sample in enumerate(part):
            tokens = sample.prompt_ids + sample.completion
            n = len(tokens) - 1
            input_ids[row, :n] = torch.tensor(tokens[:-1])
            labels[row, :n] = torch.tensor(tokens[1:])
            first = len(sample.prompt_ids) - 1  # the position that predicts the first completion token
            span = slice(first, first + len(sample.completion))
            if sample.trains:
                mask[row, span] = 1.0
            advantages[row, span] = sample.advantage
            generation[row, span] = torch.tensor(sample.generation_logprobs, dtype=torch.float32)
            sequences += sample.sequences
            real += len(tokens)
        embeddings = protein_mask = None
        if sequences and embed is not None:
            embeddings, protein_mask = embed(sequences)
        batches.append(
            GRPOMicroBatch(
                input_ids=input_ids,
                position_ids=torch.arange(width).unsqueeze(0).expand(size, width).contiguous(),
                labels=labels,
                loss_mask=mask,
                protein_embeddings=embeddings,
                protein_mask=protein_mask,
                sequences=sequences,
                num_samples=size,
                real_tokens=real,
                advantages=advantages,
                generation_logprobs=generation,
                sample_ids=sample_ids,
            )
        )
    return batches
