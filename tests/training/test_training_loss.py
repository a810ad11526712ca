"""The training loss path: the Qwen3 GPTModel's cross entropy over the real vocabulary on tensor-parallel
vocabulary shards in megatron's `[S, B, V/TP]` layout (padded rows take no probability mass and get no
gradient, IGNORE_INDEX positions are 0), equal to torch's cross entropy on the real rows; and the per-token
loss reduction megatron's schedules call."""

from __future__ import annotations

import dataclasses

import torch

from protein_llm_nemo.testing.multiprocess import run_distributed

REAL_VOCAB, PADDED_VOCAB = 1000, 1024  # padded to a multiple of 128 x TP at TP=2
SEQ, BATCH = 5, 2


def _body(rank: int, world_size: int) -> dict:
    import torch.nn.functional as F
    from megatron.core.models.gpt import GPTModel

    from protein_llm_nemo.models.qwen3 import build_qwen3_model, qwen3_preset
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
    from protein_llm_nemo.tokenizer import IGNORE_INDEX

    initialize_distributed(ParallelConfig(tensor_model_parallel_size=world_size))
    model = build_qwen3_model(dataclasses.replace(qwen3_preset("tiny"), vocab_size=REAL_VOCAB))
    generator = torch.Generator().manual_seed(0)
    full = torch.randn(SEQ, BATCH, PADDED_VOCAB, generator=generator)  # [S, B, V]
    full[..., REAL_VOCAB:] = 30.0  # padded rows with large logits: they would dominate a plain softmax
    labels = torch.randint(0, REAL_VOCAB, (BATCH, SEQ), generator=generator)
    labels[0, 0] = IGNORE_INDEX
    width = PADDED_VOCAB // world_size
    shard = full[..., rank * width : (rank + 1) * width].clone().requires_grad_(True)
    logits = shard * 1.0  # a non-leaf, like the output layer's; the loss works on it in place
    losses = model.compute_language_model_loss(labels, logits)  # [B, S]
    losses.sum().backward()
    keep = labels != IGNORE_INDEX
    expected = F.cross_entropy(
        full[..., :REAL_VOCAB].transpose(0, 1).reshape(-1, REAL_VOCAB),
        labels.clamp(min=0).reshape(-1),
        reduction="none",
    ).reshape(BATCH, SEQ)
    unmasked = GPTModel.compute_language_model_loss(model, labels, shard.detach().clone())
    global_ids = torch.arange(rank * width, (rank + 1) * width)
    padded = global_ids >= REAL_VOCAB
    return {
        "shape": tuple(losses.shape),
        "has_padded": bool(padded.any()),
        "max_diff": float((losses.detach()[keep] - expected[keep]).abs().max()),
        "ignored_zero": bool((losses.detach()[~keep] == 0).all()),
        "padded_grad_max": float(shard.grad[..., padded].abs().max()) if padded.any() else 0.0,
        "real_grad_max": float(shard.grad[..., ~padded].abs().max()),
        "unmasked_diff": float((unmasked[keep] - expected[keep]).abs().max()),
    }


def test_padded_vocab_rows_take_no_probability_mass_at_tp2():
    results = run_distributed(_body, world_size=2)
    for result in results:
        assert result["shape"] == (BATCH, SEQ)
        assert result["max_diff"] < 1e-5
        assert result["ignored_zero"]
        assert result["padded_grad_max"] == 0.0 and result["real_grad_max"] > 0.0
        assert result["unmasked_diff"] > 1.0  # megatron's plain loss: the padded rows swallow it
    assert [result["has_padded"] for result in results] == [False, True]  # the tail is on rank 1's shard


def test_summed_loss_returns_the_sum_and_the_token_count():
    from protein_llm_nemo.training.loss import loss_func_for

    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    total, count, report = loss_func_for(mask)(losses)
    assert float(total) == 9.0 and int(count) == 3 and count.dtype == torch.int
    assert report["loss_sum_and_tokens"].tolist() == [9.0, 3.0]
