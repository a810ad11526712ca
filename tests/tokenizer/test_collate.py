"""Tests for protein_llm_nemo.tokenizer.collate: the loss mask stays exact token by token under left and right
padding, and labels are the shifted next-token targets."""

from __future__ import annotations

import pytest
import torch

from protein_llm_nemo.tokenizer import (
    IGNORE_INDEX,
    PROTEIN_TOKEN_IDS,
    QWEN3_PAD_ID,
    FormattedSample,
    collate_samples,
)

from .conftest import CONVERSATIONS, mask_runs


@pytest.fixture(scope="module")
def samples(fmt) -> list[FormattedSample]:
    return [
        fmt.format(CONVERSATIONS[n])
        for n in ("single_protein", "multi_turn", "final_answer_leading_newlines")
    ]


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_collate_masks_exact_token_by_token(tok, fmt, samples, padding_side):
    batch = fmt.collate(samples, padding_side=padding_side)
    width = max(len(s) for s in samples)
    assert batch.input_ids.shape == batch.loss_mask.shape == batch.labels.shape == (len(samples), width)
    for b, s in enumerate(samples):
        n, pad = len(s), width - len(s)
        real = slice(pad, width) if padding_side == "left" else slice(0, n)
        padded = slice(0, pad) if padding_side == "left" else slice(n, width)
        assert batch.input_ids[b, real].tolist() == s.input_ids
        assert batch.loss_mask[b, real].tolist() == s.loss_mask  # token by token, no shift from padding
        assert batch.attention_mask[b, real].tolist() == [1] * n
        assert batch.position_ids[b, real].tolist() == list(range(n))
        assert batch.input_ids[b, padded].tolist() == [QWEN3_PAD_ID] * pad
        assert batch.attention_mask[b, padded].sum() == 0 and batch.loss_mask[b, padded].sum() == 0
        assert (batch.labels[b, padded] == IGNORE_INDEX).all()
        # The trained tokens of the padded row decode to exactly the assistant responses (no prompt leak).
        row_ids = batch.input_ids[b].tolist()
        row_mask = batch.loss_mask[b].tolist()
        assert [tok.decode(r) for r in mask_runs(row_ids, row_mask)] == [
            tok.decode(r) for r in mask_runs(s.input_ids, s.loss_mask)
        ]
        assert int(batch.loss_mask[b].sum()) == s.num_loss_tokens
    # Labels are next-token targets over the padded batch: labels[t] = ids[t+1] where loss_mask[t+1].
    expect = torch.full_like(batch.input_ids, IGNORE_INDEX)
    nxt = batch.loss_mask[:, 1:].bool()
    expect[:, :-1][nxt] = batch.input_ids[:, 1:][nxt]
    assert torch.equal(batch.labels, expect)
    assert (batch.labels[:, -1] == IGNORE_INDEX).all()
    # HF-style unshifted labels shift into the same targets.
    hf = batch.hf_labels()
    assert torch.equal(hf[:, 1:], batch.labels[:, :-1])


def test_collate_left_and_right_train_the_same_targets(fmt, samples):
    left, right = fmt.collate(samples, "left"), fmt.collate(samples, "right")
    for b in range(len(samples)):
        lt = left.labels[b][left.labels[b] != IGNORE_INDEX].tolist()
        rt = right.labels[b][right.labels[b] != IGNORE_INDEX].tolist()
        assert lt == rt and len(lt) == samples[b].num_loss_tokens
        # Each target's context token: the prediction at a position feeds from the same prefix both ways.
        lpos = (left.labels[b] != IGNORE_INDEX).nonzero().flatten() - (left.attention_mask[b] == 0).sum()
        rpos = (right.labels[b] != IGNORE_INDEX).nonzero().flatten()
        assert torch.equal(lpos, rpos)


def test_collate_pad_to_multiple_and_errors(fmt, samples):
    batch = fmt.collate(samples, "right", pad_to_multiple_of=64)
    assert batch.input_ids.shape[1] % 64 == 0 and batch.input_ids.shape[1] >= max(len(s) for s in samples)
    assert batch.loss_mask.sum() == sum(s.num_loss_tokens for s in samples)
    with pytest.raises(ValueError, match="padding_side"):
        fmt.collate(samples, "middle")
    with pytest.raises(ValueError, match="empty list"):
        collate_samples([])
    bad = FormattedSample([1, PROTEIN_TOKEN_IDS.embed, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="protein tokens under the loss mask"):
        collate_samples([bad])
    with pytest.raises(ValueError, match="differ"):
        FormattedSample([1, 2], [0])
