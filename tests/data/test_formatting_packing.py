import pytest
import torch

from protein_llm_nemo.data import ProteinRecord, ReasonCounter
from protein_llm_nemo.data.formatting import (
    FormattingConfig,
    RecordFormatter,
    SegmentCachingTokenizer,
    residue_pieces,
)
from protein_llm_nemo.data.packing import (
    PackingConfig,
    best_fit_decreasing,
    build_pack,
    pack_examples,
    padding_stats,
    token_budget_batches,
)
from protein_llm_nemo.tokenizer import (
    IGNORE_INDEX,
    PROTEIN_TOKEN_IDS,
    ChatFormatter,
    find_protein_slots,
    load_tokenizer,
)

from .conftest import SEQ_A, SEQ_B


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _records():
    return [
        ProteinRecord("go:1", [SEQ_A], "Which GO molecular function terms describe this protein?",
                      "ATP binding (GO:0005524).", "go_mf", "goasp"),
        ProteinRecord("ppi:1", [SEQ_A, SEQ_B], "Do these two proteins interact? Answer yes or no.",
                      "Yes, they interact.", "ppi", "ppi"),
        ProteinRecord("mcq:1", [], "Which residue is aromatic?\n1. Gly\n2. Trp", "Option 2: Trp", "multiple_choice", "b"),
        ProteinRecord("ssl:1", [], "", "Some text.", "ssl_text", "biotext"),
        ProteinRecord("go:2", [SEQ_B], "Predict the cellular component.", "plasma membrane (GO:0005886).", "go_cc", "goasp"),
    ]  # fmt: skip


def test_slots_match_proteins_and_mask_is_exactly_the_response(tokenizer):
    fmt = RecordFormatter(
        ChatFormatter(SegmentCachingTokenizer(tokenizer)), FormattingConfig(bridge="mlp", num_slots=8)
    )
    examples = list(fmt(_records()))
    assert [e.record_id for e in examples] == ["go:1", "ppi:1", "mcq:1", "go:2"]
    assert fmt.counter.dropped == {"ssl_text_is_not_chat": 1}
    records = {r.id: r for r in _records()}
    for ex in examples:
        spans = find_protein_slots(ex.sample.input_ids, PROTEIN_TOKEN_IDS, num_slots=8)
        assert len(spans) == len(records[ex.record_id].sequences) == len(ex.sequences)
        trained = [t for t, m in zip(ex.sample.input_ids, ex.sample.loss_mask, strict=True) if m]
        assert tokenizer.decode(trained) == records[ex.record_id].response + "<|im_end|>"
        for span in spans:
            assert not any(ex.sample.loss_mask[span.start : span.end + 1])
    assert examples[1].sequences == [SEQ_A, SEQ_B]
    # The caching wrapper is exact: same ids and masks as the plain tokenizer.
    plain = list(
        RecordFormatter(ChatFormatter(tokenizer), FormattingConfig(bridge="mlp", num_slots=8))(_records())
    )
    assert [e.sample for e in plain] == [e.sample for e in examples]


def test_caching_tokenizer_equals_the_plain_tokenizer_on_the_text_bridge(tokenizer):
    awkward = [
        ProteinRecord(f"x{i}", [seq], instruction, response, "go_mf", "t")
        for i, (seq, instruction, response) in enumerate(
            [
                (SEQ_A, "Résumé: what does it do?  ", "Binds ATP\u00a0and Mg²⁺."),
                (SEQ_B, "Line one\r\nline two\t<b>tag</b>", "  leading spaces, 日本語 text."),
                (SEQ_A + SEQ_B, "Digits 12345 and 'quotes' it's", "Answer: GO:0005524\n\nDone."),
            ]
        )
    ]
    records = [*_records(), *awkward] * 2  # repeats hit the cache
    for bridge in ("text", "mlp"):
        config = FormattingConfig(bridge=bridge, num_slots=8)
        cached = SegmentCachingTokenizer(tokenizer)
        fast = list(RecordFormatter(ChatFormatter(cached), config)(records))
        plain = list(RecordFormatter(ChatFormatter(tokenizer), config)(records))
        assert [e.sample for e in fast] == [e.sample for e in plain] and len(fast) == len(records) - 2
        assert cached.hits > 0 and cached.misses > 0


@pytest.mark.parametrize("seed", range(4))
def test_cutting_at_residue_runs_gives_the_plain_tokenizer_ids(tokenizer, seed):
    import random

    rng = random.Random(seed)
    residues = "ACDEFGHIKLMNPQRSTVWYXUBZO"
    around = [
        " ",
        "  ",
        "\n",
        "\n\n",
        ":",
        ": ",
        "(",
        "'",
        "a",
        "é",
        "1",
        "-",
        "\t",
        "<|im_end|>",
        "",
        "\u0301",
        "日",
    ]
    cached = SegmentCachingTokenizer(tokenizer)
    assert cached.split_residue_runs  # the Qwen3 tokenizer passes the probes
    texts = []
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 4)):
            run = "".join(rng.choice(residues) for _ in range(rng.choice([5, 31, 32, 33, 80, 400])))
            if rng.random() < 0.2:
                run = run.lower() if rng.random() < 0.5 else run[:10] + "é" + run[10:]
            parts += [
                rng.choice(around),
                rng.choice(["", " ", "Protein sequence: "]),
                run,
                rng.choice(around),
            ]
        texts.append("".join(parts))
    texts += texts[:20]  # repeats: whole-text and piece cache hits
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    got = []
    for i in range(0, len(texts), 7):  # several calls: the cache carries pieces between them
        got += cached(texts[i : i + 7], add_special_tokens=False)["input_ids"]
    assert got == expected
    assert cached.hits > 0 and sum(residue_pieces(t) is not None for t in texts) > 30


def test_text_bridge_puts_residues_in_the_prompt(tokenizer):
    fmt = RecordFormatter(ChatFormatter(tokenizer), FormattingConfig(bridge="text"))
    ex = fmt.format(_records()[0])
    assert ex.sequences == []
    assert not set(PROTEIN_TOKEN_IDS.all) & set(ex.sample.input_ids)
    prompt = tokenizer.decode(
        [t for t, m in zip(ex.sample.input_ids, ex.sample.loss_mask, strict=True) if not m]
    )
    assert f"Protein sequence: {SEQ_A}" in prompt


def test_packs_keep_samples_separate_token_by_token(tokenizer):
    fmt = RecordFormatter(ChatFormatter(tokenizer), FormattingConfig(bridge="mlp", num_slots=4))
    examples = list(fmt(_records())) * 3
    config = PackingConfig(max_tokens=256)
    counter = ReasonCounter()
    bins = pack_examples(examples, config, counter)
    assert sorted(i for b in bins for i in b) == list(range(len(examples)))
    for b in bins:
        pack = build_pack([examples[i] for i in b], config)
        cu = pack.cu_seqlens.tolist()
        assert pack.cu_seqlens.dtype == torch.int32 and cu[0] == 0 and cu[-1] == 256
        assert pack.input_ids.shape == pack.labels.shape == pack.loss_mask.shape == (1, 256)
        ids, labels, mask, pos = (
            t[0].tolist() for t in (pack.input_ids, pack.labels, pack.loss_mask, pack.position_ids)
        )
        for k, i in enumerate(b):
            a, e = cu[k], cu[k + 1]
            sample = examples[i].sample
            assert ids[a:e] == sample.input_ids and mask[a:e] == sample.loss_mask
            assert pos[a:e] == list(range(e - a)) and labels[a:e] == sample.labels()
            assert labels[e - 1] == IGNORE_INDEX  # never predicts the next sample's first token
        for t, label in enumerate(labels):
            if label != IGNORE_INDEX:
                segment = max(k for k, c in enumerate(cu) if c <= t)
                assert cu[segment] <= t + 1 < cu[segment + 1] and label == ids[t + 1] and mask[t + 1] == 1
        assert sum(mask[cu[pack.num_samples] :]) == 0
        assert pack.num_pad_tokens == 256 - cu[pack.num_samples]
        params = pack.packed_seq_params()
        assert params.qkv_format == "thd" and torch.equal(params.cu_seqlens_q, pack.cu_seqlens)
        assert params.max_seqlen_q == max(b - a for a, b in zip(cu[:-1], cu[1:], strict=True))
        attn = pack.attention_mask()[0, 0]
        assert attn.shape == (256, 256) and not attn[cu[1] - 1, 0] and (len(b) < 2 or attn[cu[1], cu[1] - 1])
        assert pack.sequences == [s for i in b for s in examples[i].sequences]


@pytest.mark.parametrize("seed", range(3))
def test_pack_labels_equal_per_sample_labels_even_when_samples_start_trained(seed):
    import random

    from protein_llm_nemo.data.formatting import FormattedExample
    from protein_llm_nemo.tokenizer import FormattedSample

    rng = random.Random(seed)
    for _ in range(50):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 6))]
        # Masks that start with 1: a cross-sample label would show up as a label at a segment's last token.
        examples = [
            FormattedExample(f"r{k}", FormattedSample([rng.randrange(1000) for _ in range(n)], [1] * n))
            for k, n in enumerate(lengths)
        ]
        max_tokens = sum(lengths) + rng.choice([0, 1, 17])
        pack = build_pack(examples, PackingConfig(max_tokens=max_tokens, pad_id=7))
        expected = [label for ex in examples for label in ex.sample.labels()]
        tail = max_tokens - sum(lengths)
        assert pack.labels[0].tolist() == expected + [IGNORE_INDEX] * tail
        assert pack.input_ids[0].tolist()[sum(lengths) :] == [7] * tail
        assert pack.position_ids[0].tolist()[sum(lengths) :] == list(range(tail))
        assert len(pack.cu_seqlens) == len(lengths) + 1 + (tail > 0)


def test_best_fit_decreasing_is_tight_and_deterministic():
    lengths = [700, 300, 250, 200, 500, 1200, 100, 50, 512, 400]
    counter = ReasonCounter()
    bins = best_fit_decreasing(lengths, 1024, counter)
    assert counter.dropped == {"longer_than_pack": 1}
    assert all(sum(lengths[i] for i in b) <= 1024 for b in bins)
    assert sorted(i for b in bins for i in b) == [i for i in range(10) if i != 5]
    assert len(bins) == 3  # 3012 tokens need at least 3 bins of 1024
    assert bins == best_fit_decreasing(lengths, 1024)
    stats = padding_stats(lengths, bins, 1024, packed=True)
    assert stats["real_tokens"] == 3012 and stats["pad_tokens"] == 3 * 1024 - 3012


def test_token_budget_batches_respect_budget():
    lengths = [100, 900, 120, 130, 800, 60]
    batches = token_budget_batches(lengths, 1000)
    assert all(len(b) * max(lengths[i] for i in b) <= 1000 for b in batches)
    assert [i for b in batches for i in b] == list(range(6))
    assert padding_stats(lengths, batches, 1000, packed=False)["pad_tokens"] > 0
