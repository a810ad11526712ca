"""Micro-batches for the loop: which items each data-parallel rank trains on at each step, and their tensors.

Sampling is global: one seeded order over all items (`data.sampler.DistributedPackSampler` with one
"rank"), cut into global batches of `global_batch_size` items; data-parallel rank r takes the r-th slice and
splits it into micro-batches. The saved position (epoch, items consumed) therefore does not depend on the
data-parallel size: a run resumes at another DP size on exactly the next global batch.

SFT items are packs of formatted samples (`data.packing`, best-fit-decreasing, `seq_length` tokens) or,
without packing, single samples padded to `seq_length`. A packed micro-batch of `micro_batch_size` packs is
one row `[1, micro_batch_size * seq_length]` with per-sample boundaries, megatron `PackedSeqParams` (thd):
TransformerEngine attends per sample on GPU, `models.attention.PackedDotProductAttention` without TE.
Labels and loss masks come from the tokenizer's formatting (response tokens only, exact). Every producer
returns `microbatch.MicroBatch`es.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from protein_llm_nemo.data.formatting import FormattedExample
from protein_llm_nemo.data.packing import PackingConfig, build_pack, pack_examples
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.data.sampler import DistributedPackSampler
from protein_llm_nemo.tokenizer import IGNORE_INDEX, QWEN3_PAD_ID, collate_samples
from protein_llm_nemo.training.microbatch import MicroBatch

EmbedFn = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor] | None]


class GlobalBatchSampler:
    """Global batches of item indices; this rank's share split into micro-batches. Resumable."""

    def __init__(
        self,
        num_items: int,
        global_batch_size: int,
        micro_batch_size: int,
        dp_rank: int = 0,
        dp_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if global_batch_size % (micro_batch_size * dp_size):
            raise ValueError(
                f"global_batch_size ({global_batch_size}) must be a multiple of micro_batch_size "
                f"({micro_batch_size}) x data-parallel size ({dp_size})"
            )
        if num_items < global_batch_size:
            raise ValueError(
                f"{num_items} training items cannot fill one global batch of {global_batch_size}; "
                "lower data.global_batch_size or add data"
            )
        self.global_batch_size, self.micro_batch_size = global_batch_size, micro_batch_size
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.sampler = DistributedPackSampler(num_items, rank=0, world_size=1, seed=seed, shuffle=shuffle)
        self._iter: Iterator[int] = iter(self.sampler)

    @property
    def num_microbatches(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.dp_size)

    def next_global_batch(self) -> list[int]:
        return [next(self._iter) for _ in range(self.global_batch_size)]

    def next_microbatches(self) -> list[list[int]]:
        """This rank's micro-batches (lists of item indices) of the next global batch."""
        batch = self.next_global_batch()
        share = self.global_batch_size // self.dp_size
        mine = batch[self.dp_rank * share : (self.dp_rank + 1) * share]
        return [mine[i : i + self.micro_batch_size] for i in range(0, share, self.micro_batch_size)]

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self._iter = iter(self.sampler)


# -- SFT tensors ----------------------------------------------------------------------------------------
def packed_microbatch(
    packs: Sequence[Sequence[FormattedExample]], seq_length: int, pad_id: int
) -> MicroBatch:
    """`micro_batch_size` packs side by side as one `[1, mbs * seq_length]` row with `PackedSeqParams`."""
    from megatron.core.packed_seq_params import PackedSeqParams

    config = PackingConfig(max_tokens=seq_length, pad_id=pad_id)
    built = [build_pack(list(examples), config) for examples in packs]
    input_ids = torch.cat([p.input_ids for p in built], dim=1)
    labels = torch.cat([p.labels for p in built], dim=1)
    position_ids = torch.cat([p.position_ids for p in built], dim=1)
    cu: list[int] = [0]
    for i, pack in enumerate(built):
        cu += [c + i * seq_length for c in pack.cu_seqlens[1:].tolist()]
    cu_seqlens = torch.tensor(cu, dtype=torch.int32)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return MicroBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        labels=labels,
        loss_mask=(labels != IGNORE_INDEX).float(),
        # thd: TransformerEngine's fused attention on GPU, `PackedDotProductAttention` per sample otherwise.
        packed_seq_params=PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu_seqlens,
            cu_seqlens_kv=cu_seqlens,
            max_seqlen_q=longest,
            max_seqlen_kv=longest,
        ),
        sequences=[seq for p in built for seq in p.sequences],
        num_samples=sum(p.num_samples for p in built),
        real_tokens=sum(int(p.cu_seqlens[p.num_samples]) for p in built),
    )


def padded_microbatch(rows: Sequence[Sequence[FormattedExample]], seq_length: int, pad_id: int) -> MicroBatch:
    """One sample per row, right-padded to `seq_length` (causal attention needs no mask: real tokens never
    attend to the padding after them). Empty rows (validation tail filler) are all padding."""
    examples = [ex for row in rows for ex in row]
    width = seq_length
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    if examples:
        chat = collate_samples([ex.sample for ex in examples], pad_id=pad_id, pad_to_multiple_of=seq_length)
        if chat.input_ids.shape[1] != seq_length:
            raise ValueError(f"a sample is longer than seq_length={seq_length}")
        filled = [i for i, row in enumerate(rows) if row]
        input_ids[filled], labels[filled], position_ids[filled] = (
            chat.input_ids,
            chat.labels,
            chat.position_ids,
        )
    return MicroBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        labels=labels,
        loss_mask=(labels != IGNORE_INDEX).float(),
        sequences=[seq for ex in examples for seq in ex.sequences],
        num_samples=len(examples),
        real_tokens=sum(len(ex) for ex in examples),
    )


class SFTBatches:
    """Formatted examples -> items (packs or single samples) -> each step's micro-batches for this rank."""

    def __init__(
        self,
        examples: Sequence[FormattedExample],
        seq_length: int,
        micro_batch_size: int,
        global_batch_size: int,
        packing: bool = True,
        dp_rank: int = 0,
        dp_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        embed: EmbedFn | None = None,
        pad_id: int = QWEN3_PAD_ID,
    ):
        self.examples = list(examples)
        self.seq_length, self.micro_batch_size = seq_length, micro_batch_size
        self.packing, self.pad_id = packing, pad_id
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.embed = embed
        # Every example is counted: kept (in a pack / row) or dropped by reason.
        self.counter = ReasonCounter()
        if packing:
            bins = pack_examples(
                self.examples, PackingConfig(max_tokens=seq_length, pad_id=pad_id), self.counter
            )
        else:
            bins = []
            for i, ex in enumerate(self.examples):
                self.counter.seen += 1
                if len(ex) > seq_length:
                    self.counter.drop("longer_than_seq_length")
                else:
                    self.counter.keep()
                    bins.append([i])
        self.counter.check("examples batched")
        self.items: list[list[int]] = bins
        self.sampler = (
            GlobalBatchSampler(
                len(bins), global_batch_size, micro_batch_size, dp_rank, dp_size, seed, shuffle
            )
            if global_batch_size
            else None
        )

    # -- shapes megatron's schedules need --------------------------------------------------------------
    @property
    def schedule_seq_length(self) -> int:
        return self.seq_length * self.micro_batch_size if self.packing else self.seq_length

    @property
    def schedule_micro_batch_size(self) -> int:
        return 1 if self.packing else self.micro_batch_size

    def tensors(self, item_indices: Sequence[int | None]) -> MicroBatch:
        """The micro-batch of these items (None: an all-padding filler item)."""
        groups = [[self.examples[i] for i in self.items[j]] if j is not None else [] for j in item_indices]
        if self.packing:
            batch = packed_microbatch(groups, self.seq_length, self.pad_id)
        else:
            batch = padded_microbatch(groups, self.seq_length, self.pad_id)
        if batch.sequences and self.embed is not None:
            embeddings, mask = self.embed(batch.sequences)
            batch = dataclasses.replace(batch, protein_embeddings=embeddings, protein_mask=mask)
        return batch

    def next_step(self) -> list[MicroBatch]:
        assert self.sampler is not None, "no global batch size: this is a validation set"
        return [self.tensors(mb) for mb in self.sampler.next_microbatches()]

    def all_microbatches(self, max_batches: int | None = None) -> list[MicroBatch]:
        """Validation: every item once, strided over DP ranks; the last micro-batch is filled with
        all-padding items (loss 0) so every micro-batch has the same shape (pipeline parallelism)."""
        mine = list(range(self.dp_rank, len(self.items), self.dp_size))
        batches: list[list[int | None]] = [
            list(mine[i : i + self.micro_batch_size]) for i in range(0, len(mine), self.micro_batch_size)
        ]
        if batches and len(batches[-1]) < self.micro_batch_size:
            batches[-1] += [None] * (self.micro_batch_size - len(batches[-1]))
        if max_batches is not None:
            batches = batches[:max_batches]
        return [self.tensors(mb) for mb in batches]

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if self.sampler is not None else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.sampler is not None:
            self.sampler.load_state_dict(state)


def encoder_embed_fn(encoder: Any, device: torch.device, dtype: torch.dtype) -> EmbedFn:
    """`sequences -> (embeddings, mask)` through a live encoder or an embedding cache (frozen: no grad)."""

    def embed(sequences: list[str]):
        with torch.no_grad():
            embeddings, mask = encoder.encode(sequences)
        return embeddings.to(device=device, dtype=dtype), mask.to(device)

    return embed


# -- SSL text ---------------------------------------------------------------------------------------------
class TextBatches:
    """Fixed-length samples of a megatron `GPTDataset` (continued pre-training): every non-pad token is a
    target. Sampling order is the dataset's own (it shuffles documents and samples with its seed)."""

    def __init__(
        self,
        dataset: Any,
        seq_length: int,
        micro_batch_size: int,
        global_batch_size: int,
        dp_rank: int = 0,
        dp_size: int = 1,
    ):
        self.dataset = dataset
        self.seq_length, self.micro_batch_size = seq_length, micro_batch_size
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.sampler = (
            GlobalBatchSampler(
                len(dataset), global_batch_size, micro_batch_size, dp_rank, dp_size, shuffle=False
            )
            if global_batch_size
            else None
        )

    schedule_micro_batch_size = property(lambda self: self.micro_batch_size)
    schedule_seq_length = property(lambda self: self.seq_length)

    def tensors(self, indices: Sequence[int]) -> MicroBatch:
        samples = [self.dataset[i] for i in indices]
        loss_mask = torch.stack([s["loss_mask"] for s in samples]).float()
        labels = torch.stack([s["labels"] for s in samples])
        return MicroBatch(
            input_ids=torch.stack([s["tokens"] for s in samples]),
            position_ids=torch.stack([s["position_ids"] for s in samples]),
            labels=torch.where(loss_mask.bool(), labels, torch.full_like(labels, IGNORE_INDEX)),
            loss_mask=loss_mask,
            num_samples=len(samples),
            real_tokens=int(loss_mask.sum()),
        )

    def next_step(self) -> list[MicroBatch]:
        assert self.sampler is not None, "no global batch size: this is a validation set"
        return [self.tensors(mb) for mb in self.sampler.next_microbatches()]

    def all_microbatches(self, max_batches: int | None = None) -> list[MicroBatch]:
        mine = list(range(self.dp_rank, len(self.dataset), self.dp_size))
        batches = [mine[i : i + self.micro_batch_size] for i in range(0, len(mine), self.micro_batch_size)]
        batches = [b for b in batches if len(b) == self.micro_batch_size] or batches
        if max_batches is not None:
            batches = batches[:max_batches]
        return [self.tensors(b) for b in batches]

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if self.sampler is not None else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.sampler is not None:
            self.sampler.load_state_dict(state)
