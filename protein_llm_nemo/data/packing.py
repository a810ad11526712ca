"""Packing formatted samples into fixed token budgets, with per-sample boundaries for megatron-core.

A pack is one row of ``max_tokens`` tokens holding several samples back to back. ``cu_seqlens`` (int32,
cumulative sample lengths starting at 0) delimits them; `PackedBatch.packed_seq_params()` returns
megatron-core's ``PackedSeqParams(qkv_format="thd", ...)`` so attention never crosses samples. Tail padding
is its own segment (loss 0), so ``cu_seqlens[-1] == max_tokens``. Labels and loss masks are built per sample
before concatenation: the last token of a sample never predicts the next sample's first token.

Bin assignment is best-fit-decreasing (deterministic: ties broken by sample index). `token_budget_batches`
is the padded fallback (and the reference's batching, for the waste comparison).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.tokenizer import IGNORE_INDEX, QWEN3_PAD_ID

if TYPE_CHECKING:
    import torch

    from protein_llm_nemo.data.formatting import FormattedExample


@dataclass
class PackingConfig:
    max_tokens: int = 8192
    pad_id: int = QWEN3_PAD_ID

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")


def best_fit_decreasing(
    lengths: Sequence[int], max_tokens: int, counter: ReasonCounter | None = None
) -> list[list[int]]:
    """Indices grouped into bins of total length <= max_tokens. Longer samples are skipped; with a `counter`,
    every sample is counted: kept (packed) or dropped (``longer_than_pack``)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    free: list[tuple[int, int]] = []  # (remaining capacity, bin id), sorted
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        if counter is not None:
            counter.seen += 1
        if n > max_tokens:
            if counter is not None:
                counter.drop("longer_than_pack")
            continue
        if counter is not None:
            counter.keep()
        pos = bisect.bisect_left(free, (n, -1))
        if pos < len(free):
            remaining, b = free.pop(pos)
            bins[b].append(i)
            if remaining - n > 0:
                bisect.insort(free, (remaining - n, b))
        else:
            bins.append([i])
            if max_tokens - n > 0:
                bisect.insort(free, (max_tokens - n, len(bins) - 1))
    for b in bins:
        b.sort()
    return bins


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Padded fallback: consecutive samples while ``batch_size * longest <= max_tokens`` (the reference's scheme)."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if n > max_tokens:
            continue
        if current and (len(current) + 1) * max(longest, n) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


@dataclass
class PackedBatch:
    """``[1, max_tokens]`` tensors of one pack plus its boundaries and proteins (slot order)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor  # int32 [num_segments + 1], includes the tail pad segment
    num_samples: int
    record_ids: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)

    @property
    def max_seqlen(self) -> int:
        return int((self.cu_seqlens[1:] - self.cu_seqlens[:-1]).max())

    @property
    def num_pad_tokens(self) -> int:
        return int(self.input_ids.shape[-1] - self.cu_seqlens[self.num_samples])

    def packed_seq_params(self):
        """megatron-core ``PackedSeqParams`` for the ``thd`` format (no attention across samples)."""
        from megatron.core.packed_seq_params import PackedSeqParams

        return PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=self.cu_seqlens,
            cu_seqlens_kv=self.cu_seqlens,
            max_seqlen_q=self.max_seqlen,
            max_seqlen_kv=self.max_seqlen,
        )

    def attention_mask(self) -> torch.Tensor:
        """Block-diagonal causal mask ``[1, 1, T, T]``, megatron convention (True = masked out), for
        attention implementations without ``thd`` support (CPU tests)."""
        import torch

        total = self.input_ids.shape[-1]
        segment = torch.zeros(total, dtype=torch.long)
        for s, (a, b) in enumerate(
            zip(self.cu_seqlens[:-1].tolist(), self.cu_seqlens[1:].tolist(), strict=True)
        ):
            segment[a:b] = s
        same = segment[:, None] == segment[None, :]
        causal = torch.ones(total, total, dtype=torch.bool).tril()
        return ~(same & causal)[None, None]


def build_pack(examples: Sequence[FormattedExample], config: PackingConfig) -> PackedBatch:
    import numpy as np
    import torch

    total = config.max_tokens
    lengths = np.fromiter((len(ex) for ex in examples), dtype=np.int64, count=len(examples))
    real = int(lengths.sum())
    if real > total:
        raise ValueError(f"pack of {real} tokens exceeds max_tokens={total}")
    # Whole-row arrays at once: list concatenation runs in C, one conversion per array, no per-token Python.
    id_list: list[int] = []
    mask_list: list[int] = []
    for ex in examples:
        id_list += ex.sample.input_ids
        mask_list += ex.sample.loss_mask
    ids = np.full(total, config.pad_id, dtype=np.int64)
    ids[:real] = id_list
    mask = np.zeros(total, dtype=np.int64)
    mask[:real] = mask_list
    starts = np.concatenate(([0], np.cumsum(lengths)))
    cu = starts if real == total else np.append(starts, total)  # the tail pad is its own segment
    # Position restarts at every segment; labels[t] = ids[t + 1] where mask[t + 1], never across a boundary.
    positions = np.arange(total, dtype=np.int64) - np.repeat(cu[:-1], np.diff(cu))
    labels = np.full(total, IGNORE_INDEX, dtype=np.int64)
    predicts = mask[1:] == 1
    predicts[cu[1:-1] - 1] = False  # a segment's last token does not predict the next one's first
    labels[:-1][predicts] = ids[1:][predicts]
    return PackedBatch(
        input_ids=torch.from_numpy(ids)[None],
        labels=torch.from_numpy(labels)[None],
        loss_mask=torch.from_numpy(mask)[None],
        position_ids=torch.from_numpy(positions)[None],
        cu_seqlens=torch.from_numpy(cu.astype(np.int32)),
        num_samples=len(examples),
        record_ids=[ex.record_id for ex in examples],
        sequences=[seq for ex in examples for seq in ex.sequences],
    )


def pack_examples(
    examples: Sequence[FormattedExample], config: PackingConfig, counter: ReasonCounter | None = None
) -> list[list[int]]:
    """Bins of example indices (best-fit-decreasing); build each with `build_pack`."""
    return best_fit_decreasing([len(ex) for ex in examples], config.max_tokens, counter)


def padding_stats(
    lengths: Sequence[int], batches: Sequence[Sequence[int]], max_tokens: int, packed: bool
) -> dict:
    """Real vs pad tokens: packs are ``max_tokens`` wide, padded batches ``len(batch) * longest``."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    slots = len(batches) * max_tokens if packed else padded
    return {
        "batches": len(batches),
        "samples": sum(len(b) for b in batches),
        "real_tokens": real,
        "pad_tokens": slots - real,
        "pad_fraction": round((slots - real) / slots, 4) if slots else 0.0,
    }
