"""Micro-batch construction: global sampling independent of the data-parallel size, resumable position,
packed rows with exact per-sample boundaries and response-only targets."""

from __future__ import annotations

import dataclasses
import inspect

import torch

from protein_llm_nemo.data.formatting import FormattedExample
from protein_llm_nemo.models.protein_llm import ProteinLLMModel
from protein_llm_nemo.tokenizer import IGNORE_INDEX, FormattedSample
from protein_llm_nemo.training.batches import GlobalBatchSampler, SFTBatches, packed_microbatch
from protein_llm_nemo.training.microbatch import MicroBatch


def _example(i: int, length: int, response: int) -> FormattedExample:
    ids = [100 + i * 10 + t for t in range(length)]
    mask = [0] * (length - response) + [1] * response
    return FormattedExample(f"r{i}", FormattedSample(ids, mask), sequences=[f"SEQ{i}"])


def test_global_batches_do_not_depend_on_data_parallel_size():
    one = GlobalBatchSampler(20, global_batch_size=4, micro_batch_size=1, seed=3)
    two = [GlobalBatchSampler(20, 4, 1, dp_rank=r, dp_size=2, seed=3) for r in range(2)]
    for _ in range(7):  # crosses an epoch boundary (20 items / 4 per step)
        expected = one.next_microbatches()
        got = [mb for sampler in two for mb in sampler.next_microbatches()]
        assert sorted(sum(got, [])) == sorted(sum(expected, []))
        assert sum(expected, []) == sum(got, [])  # rank 0 takes the first half, rank 1 the second


def test_position_resumes_at_another_data_parallel_size():
    reference = GlobalBatchSampler(12, 4, 2, seed=1)
    batches = [reference.next_global_batch() for _ in range(5)]
    first = GlobalBatchSampler(12, 4, 2, seed=1)
    for _ in range(2):
        first.next_global_batch()
    resumed = GlobalBatchSampler(12, 4, 1, dp_rank=1, dp_size=2, seed=1)
    resumed.load_state_dict(first.state_dict())
    for step in range(2, 5):
        assert resumed.next_microbatches() == [[i] for i in batches[step][2:]]


def test_packed_microbatch_rows_targets_and_mask():
    packs = [[_example(0, 5, 2), _example(1, 4, 3)], [_example(2, 6, 1)]]
    batch = packed_microbatch(packs, seq_length=10, pad_id=0)
    assert batch.input_ids.shape == (1, 20)
    labels = batch.labels[0].tolist()
    # sample 0 (positions 0-4): targets are its last 2 tokens, predicted from positions 2 and 3
    assert labels[:5] == [IGNORE_INDEX, IGNORE_INDEX, 103, 104, IGNORE_INDEX]
    # sample 1 (positions 5-8): 3 response tokens; its last token never predicts the next sample
    assert labels[5:9] == [111, 112, 113, IGNORE_INDEX]
    assert labels[9] == IGNORE_INDEX  # tail padding of pack 0
    assert labels[10:16] == [IGNORE_INDEX] * 4 + [125, IGNORE_INDEX]
    assert torch.equal(batch.loss_mask.bool(), batch.labels != IGNORE_INDEX)
    assert batch.position_ids[0, :9].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    params = batch.packed_seq_params  # per-sample attention: samples and each pack's tail pad
    assert params.qkv_format == "thd" and batch.attention_mask is None
    assert params.cu_seqlens_q.tolist() == [0, 5, 9, 10, 16, 20] and params.cu_seqlens_q.dtype == torch.int32
    assert params.cu_seqlens_kv is params.cu_seqlens_q and params.max_seqlen_q == 6
    assert batch.sequences == ["SEQ0", "SEQ1", "SEQ2"]
    assert batch.real_tokens == 15 and batch.num_samples == 3
    # flamingo's per-sample protein context comes from the same boundaries (the model derives segment ids)
    segments = ProteinLLMModel.segment_ids_from_packed(params, batch.input_ids)
    assert segments[0].tolist()[:11] == [0] * 5 + [1] * 4 + [2] + [3] and batch.segment_ids is None


def test_sft_batches_pack_every_example_once_and_count_drops():
    examples = [_example(i, 3 + i % 5, 1) for i in range(10)] + [_example(99, 40, 2)]
    data = SFTBatches(examples, seq_length=12, micro_batch_size=1, global_batch_size=2)
    packed = sorted(i for item in data.items for i in item)
    assert packed == list(range(10))  # the 40-token example does not fit and is counted, not silently lost
    assert data.counter.to_dict()["dropped"] == {"longer_than_pack": 1}
    valid = SFTBatches(examples[:10], seq_length=12, micro_batch_size=2, global_batch_size=0)
    microbatches = valid.all_microbatches()
    assert sum(mb.num_samples for mb in microbatches) == 10
    assert all(mb.input_ids.shape == (1, 24) for mb in microbatches)  # filler keeps shapes equal


@dataclasses.dataclass(kw_only=True)
class _WithAdvantages(MicroBatch):  # how a later stage (GRPO) extends the micro-batch
    advantages: torch.Tensor


def test_microbatch_moves_every_tensor_and_keeps_shared_ones_shared():
    batch = packed_microbatch([[_example(0, 5, 2)], [_example(1, 4, 3)]], seq_length=8, pad_id=0)
    moved = batch.to("meta")  # a device without data: every tensor field must have moved
    for name in ("input_ids", "position_ids", "labels", "loss_mask"):
        assert getattr(moved, name).is_meta and not getattr(batch, name).is_meta
    params = moved.packed_seq_params
    assert params.cu_seqlens_q.is_meta and params.cu_seqlens_q is params.cu_seqlens_kv
    assert params.max_seqlen_q == batch.packed_seq_params.max_seqlen_q and params.qkv_format == "thd"
    assert not batch.packed_seq_params.cu_seqlens_q.is_meta  # the CPU batch is left as it was
    assert (moved.sequences, moved.num_samples, moved.real_tokens) == (["SEQ0", "SEQ1"], 2, 9)
    assert batch.to("cpu") is batch
    fields = {item.name: getattr(batch, item.name) for item in dataclasses.fields(batch)}
    extended = _WithAdvantages(**fields, advantages=torch.ones(2)).to("meta")
    assert type(extended) is _WithAdvantages and extended.advantages.is_meta and extended.input_ids.is_meta


def test_microbatch_model_inputs_are_protein_llm_forward_arguments():
    batch = packed_microbatch([[_example(0, 5, 2)]], seq_length=8, pad_id=0)
    accepted = set(inspect.signature(ProteinLLMModel.forward).parameters)
    assert set(batch.model_inputs()) <= accepted
    assert {"labels", "loss_mask"} <= set(batch.model_inputs())
    assert not {"labels", "loss_mask"} & set(batch.model_inputs(targets=False))
