"""Tests for protein_llm_nemo.tokenizer.protein_slots: placeholder text and slot positions in token ids."""

from __future__ import annotations

import pytest
import torch

from protein_llm_nemo.tokenizer import (
    PROTEIN_TOKEN_IDS,
    ProteinSpan,
    build_protein_user_text,
    find_protein_slots,
    protein_placeholder,
    protein_slot_index,
)

from .conftest import CONVERSATIONS


def test_placeholder_text():
    assert protein_placeholder(3) == "<|protein_start|>" + "<|protein_embed|>" * 3 + "<|protein_end|>"
    assert build_protein_user_text("Describe it.", 2) == "Describe it.\n\n" + protein_placeholder(2)
    assert build_protein_user_text("Compare.", 1, 2) == "Compare.\n\n" + protein_placeholder(
        1
    ) + "\n" + protein_placeholder(1)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="positive int"):
            protein_placeholder(bad)
    with pytest.raises(ValueError, match="already contains protein tokens"):
        build_protein_user_text("x " + protein_placeholder(1), 2)


def test_find_protein_slots_in_formatted_sample(fmt):
    sample = fmt.format(CONVERSATIONS["explicit_system_two_proteins"])
    spans = find_protein_slots(sample.input_ids, num_slots=4)
    assert len(spans) == 2 and all(s.num_slots == 4 for s in spans)
    for s in spans:
        assert (
            sample.input_ids[s.start] == PROTEIN_TOKEN_IDS.start
            and sample.input_ids[s.end] == PROTEIN_TOKEN_IDS.end
        )
        assert [sample.input_ids[p] for p in s.slot_positions] == [PROTEIN_TOKEN_IDS.embed] * 4
        assert all(sample.loss_mask[p] == 0 for p in range(s.start, s.end + 1))
    embeds = [p for p, t in enumerate(sample.input_ids) if t == PROTEIN_TOKEN_IDS.embed]
    assert [p for s in spans for p in s.slot_positions] == embeds
    # Tensor input gives the same answer; so does a row of a left-padded batch, shifted by the padding.
    assert find_protein_slots(torch.tensor(sample.input_ids)) == spans
    short = fmt.format([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    batch = fmt.collate([sample, short], padding_side="left")
    shift = int((batch.attention_mask[0] == 0).sum())
    assert shift > 0  # the default system prompt of `short` makes it the longer row
    assert find_protein_slots(batch.input_ids[0]) == [
        ProteinSpan(s.start + shift, s.end + shift) for s in spans
    ]
    assert find_protein_slots(batch.input_ids[1]) == []
    with pytest.raises(ValueError, match="has 4 slots, expected 32"):
        find_protein_slots(sample.input_ids, num_slots=32)


S, E, X = PROTEIN_TOKEN_IDS.start, PROTEIN_TOKEN_IDS.embed, PROTEIN_TOKEN_IDS.end


@pytest.mark.parametrize(
    ("ids", "pattern"),
    [
        ([1, S, E, S, E, X, X], "nested"),
        ([1, S, E, E], "never closed"),
        ([1, E, 2], "outside a protein group"),
        ([1, X], "without a"),
        ([S, X], "no <\\|protein_embed\\|> slots"),
        ([S, E, 7, E, X], "inside the protein group"),
        ([[S, E, X]], "1-D"),
    ],
)
def test_find_protein_slots_malformed(ids, pattern):
    with pytest.raises(ValueError, match=pattern):
        find_protein_slots(ids)


def test_protein_slot_index_for_splicing(fmt):
    two = fmt.format(CONVERSATIONS["explicit_system_two_proteins"])  # 2 proteins x 4 slots
    one = fmt.format_instruction("Describe.", "A kinase.", num_slots=4)
    batch = fmt.collate([two, one], padding_side="left")
    rows, cols = protein_slot_index(batch.input_ids, num_slots=4)
    assert rows.tolist() == [0] * 8 + [1] * 4
    assert (batch.input_ids[rows, cols] == PROTEIN_TOKEN_IDS.embed).all()
    assert int((batch.input_ids == PROTEIN_TOKEN_IDS.embed).sum()) == 12
    # Splicing [num_proteins, num_slots, hidden] bridge output lands protein p's slot k where expected.
    hidden = torch.zeros(*batch.input_ids.shape, 2)
    bridge_out = torch.arange(3 * 4 * 2, dtype=torch.float).reshape(3, 4, 2)
    hidden[rows, cols] = bridge_out.reshape(-1, 2)
    second = find_protein_slots(batch.input_ids[0])[1]
    assert torch.equal(hidden[0, list(second.slot_positions)], bridge_out[1])
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        protein_slot_index(batch.input_ids[0])


def test_find_protein_slots_valid_minimal():
    assert find_protein_slots([5, S, E, E, X, 6, S, E, X]) == [ProteinSpan(1, 4), ProteinSpan(6, 8)]
    assert list(ProteinSpan(6, 8).slot_positions) == [7]


def _random_rows(generator: torch.Generator, num_slots: int) -> torch.Tensor:
    """Rows of text tokens with 0-3 well-formed protein groups each, right-padded with token 0."""
    S, E, X = PROTEIN_TOKEN_IDS.start, PROTEIN_TOKEN_IDS.embed, PROTEIN_TOKEN_IDS.end
    rows = []
    for _ in range(5):
        row: list[int] = []
        for _ in range(int(torch.randint(0, 4, (1,), generator=generator))):
            row += torch.randint(10, 99, (int(torch.randint(0, 4, (1,), generator=generator)),)).tolist()
            row += [S] + [E] * num_slots + [X]
        rows.append(row + [7])
    width = max(map(len, rows)) + 2
    return torch.tensor([row + [0] * (width - len(row)) for row in rows])


@pytest.mark.parametrize("num_slots", [1, 3])
def test_vectorised_slot_index_equals_the_scan_and_still_diagnoses_malformed_rows(num_slots):
    generator = torch.Generator().manual_seed(num_slots)
    for _ in range(20):
        ids = _random_rows(generator, num_slots)
        fast = protein_slot_index(ids, PROTEIN_TOKEN_IDS, num_slots)
        scan = protein_slot_index(ids, PROTEIN_TOKEN_IDS)  # no slot count: the per-row scan
        assert all(torch.equal(a, b) for a, b in zip(fast, scan, strict=True))
    ids = _random_rows(generator, num_slots)
    row = int((ids == PROTEIN_TOKEN_IDS.start).nonzero()[0, 0])
    broken = ids.clone()
    broken[row, (broken[row] == PROTEIN_TOKEN_IDS.end).nonzero()[0, 0]] = 5  # a group never closed
    with pytest.raises(ValueError, match="never closed|inside the protein group"):
        protein_slot_index(broken, PROTEIN_TOKEN_IDS, num_slots)
    with pytest.raises(ValueError, match=f"expected {num_slots + 1}"):
        protein_slot_index(ids, PROTEIN_TOKEN_IDS, num_slots + 1)
