"""ProteinLLMModel on tiny shapes: flamingo identity at init, batch invariance per bridge, splicing,
boundary-token table, parameter groups and freezing, input errors, a live tiny encoder end to end.

Every body runs in a one-rank gloo process (`run_distributed`); each test module starts one process.
"""

from __future__ import annotations

import functools

import pytest
import torch

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import (
    TINY_ENCODER_DIM,
    TINY_TOKEN_IDS,
    build_tiny_model,
    built_in_bridges,
    tiny_arch,
    tiny_batch,
    tiny_bridge_config,
    to_portable,
)

BRIDGES = built_in_bridges()
SEED = 4321


def _logits(model, input_ids, embeddings=None, mask=None):
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0).expand_as(input_ids)
    with torch.no_grad():
        return model(
            input_ids,
            positions,
            None,
            protein_embeddings=embeddings,
            protein_mask=mask,
            runtime_gather_output=True,
        )


def _open_gates(model, value=0.5):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("attn_gate", "ffn_gate")):
                param.fill_(value)


def _identity(out: dict) -> None:
    from protein_llm_nemo.models.qwen3 import build_qwen3_model
    from protein_llm_nemo.runtime import seed_everything

    config = tiny_bridge_config("flamingo")
    batch = tiny_batch(config)
    seed_everything(SEED)
    plain = build_qwen3_model(tiny_arch(), parallel_output=True).eval()
    flamingo = build_tiny_model(config, SEED)
    llm = flamingo.language_model
    out["identity_same_llm_weights"] = all(
        torch.equal(param, llm.get_parameter(name)) for name, param in plain.named_parameters()
    )
    out["identity_num_blocks"] = sum(layer.gated_cross_attention is not None for layer in llm.decoder.layers)
    positions = batch["position_ids"]
    with torch.no_grad():
        expected = plain(batch["input_ids"], positions, None, runtime_gather_output=True)
    got = _logits(flamingo, batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
    out["identity_exact"] = torch.equal(expected, got)
    _open_gates(flamingo)
    opened = _logits(flamingo, batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
    out["identity_opened_diff"] = float((opened - expected).abs().max())


def _sample(batch: dict, row: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Sample `row` alone: its own text length, its own proteins cropped to their own longest length."""
    length = int(batch["attention"][row].sum())
    input_ids = batch["input_ids"][row : row + 1, :length]
    if batch["protein_embeddings"] is None:
        return input_ids, None, None
    counts = batch["proteins_per_sample"]
    first = sum(counts[:row])
    rows = slice(first, first + counts[row])
    width = max(batch["protein_lengths"][rows])
    return input_ids, batch["protein_embeddings"][rows, :width], batch["protein_mask"][rows, :width]


def _invariance(out: dict) -> None:
    for name in BRIDGES:
        config = tiny_bridge_config(name)
        model = build_tiny_model(config, SEED)
        _open_gates(model)
        batch = tiny_batch(config)
        full = _logits(model, batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
        diffs = []
        for row in range(2):
            ids, emb, mask = _sample(batch, row)
            alone = _logits(model, ids, emb, mask)
            diffs.append(float((alone[0] - full[row, : ids.shape[1]]).abs().max()))
        # Control: changing the *other* sample's protein must not move this sample, but moves the other.
        if batch["protein_embeddings"] is not None:
            changed = batch["protein_embeddings"].clone()
            changed[1:] = changed[1:] * -1.0 + 0.5
            moved = _logits(model, batch["input_ids"], changed, batch["protein_mask"])
            length0 = int(batch["attention"][0].sum())
            out[f"invariance_{name}_other_changed"] = float(
                (moved[0, :length0] - full[0, :length0]).abs().max()
            )
            out[f"invariance_{name}_self_changed"] = float((moved[1] - full[1]).abs().max())
        out[f"invariance_{name}"] = diffs


def _splice_and_groups(out: dict) -> None:
    config = tiny_bridge_config("mlp")
    model = build_tiny_model(config, SEED)
    batch = tiny_batch(config)
    ids = batch["input_ids"]
    with torch.no_grad():
        slots = model.bridge(batch["protein_embeddings"], batch["protein_mask"])
        decoder_input = model.embed_tokens(ids, slots).transpose(0, 1)  # [B, S, H]
        words = model.language_model.embedding.word_embeddings(ids)
    embed_positions = (ids == TINY_TOKEN_IDS.embed).nonzero().tolist()
    out["splice_slots_exact"] = torch.equal(
        torch.stack([decoder_input[b, s] for b, s in embed_positions]), slots.reshape(-1, slots.shape[-1])
    )
    start_positions = (ids == TINY_TOKEN_IDS.start).nonzero().tolist()
    table = model.protein_token_embeddings.weight
    out["splice_start_rows"] = all(torch.equal(decoder_input[b, s], table[0]) for b, s in start_positions)
    text = ~torch.isin(ids, torch.tensor(TINY_TOKEN_IDS.all))
    out["splice_text_rows"] = torch.equal(decoder_input[text], words[text])
    out["table_initialised_from_llm"] = torch.equal(table[0], words[0, 2])  # position 2 is a start token
    state = model.state_dict()
    out["state_has_protein_tokens"] = "protein_token_embeddings.weight" in state
    out["state_has_bridge"] = any(key.startswith("bridge.") for key in state)
    # groups and freezing
    groups = model.named_parameter_groups()
    out["groups_default"] = sorted(group for group, items in groups.items() if items)
    model.freeze(language_model=False, bridge=True)
    out["groups_llm_unfrozen_bridge_frozen"] = sorted(
        g for g, items in model.named_parameter_groups().items() if items
    )
    model.freeze(language_model=True, bridge=True, protein_tokens=True)
    out["groups_all_frozen"] = sorted(g for g, items in model.named_parameter_groups().items() if items)
    out["all_parameters_grouped"] = model.num_parameters() == sum(p.numel() for p in model.parameters())
    # gradients from a masked loss reach the boundary-token table but never the frozen LLM embedding
    model.freeze(language_model=True, bridge=False, protein_tokens=False)
    positions = batch["position_ids"]
    loss = model(
        ids,
        positions,
        None,
        protein_embeddings=batch["protein_embeddings"],
        protein_mask=batch["protein_mask"],
        labels=batch["labels"],
        loss_mask=batch["loss_mask"],
    )
    out["loss_zero_where_masked"] = bool((loss[batch["loss_mask"] == 0] == 0).all())
    loss.sum().backward()
    grad = model.protein_token_embeddings.weight.grad
    out["token_grad_rows"] = [float(row.norm()) for row in grad]
    out["llm_embedding_grad"] = model.language_model.embedding.word_embeddings.weight.grad is None

    flamingo = build_tiny_model(tiny_bridge_config("flamingo"), SEED)
    fgroups = flamingo.named_parameter_groups()
    out["flamingo_gate_names"] = sorted(name.rsplit(".", 1)[-1] for name, _ in fgroups["gates"])
    out["flamingo_block_params_in_bridge"] = any(
        "gated_cross_attention" in name for name, _ in fgroups["bridge"]
    )
    out["flamingo_llm_frozen"] = not fgroups["language_model"]


def _errors(out: dict) -> None:
    config = tiny_bridge_config("mlp")
    model = build_tiny_model(config, SEED)
    batch = tiny_batch(config)
    messages = {}
    cases = {
        "too_few_embeddings": lambda: _logits(
            model, batch["input_ids"], batch["protein_embeddings"][:2], batch["protein_mask"][:2]
        ),
        "no_embeddings": lambda: _logits(model, batch["input_ids"]),
        "empty_protein": lambda: _logits(
            model, batch["input_ids"], batch["protein_embeddings"], torch.zeros_like(batch["protein_mask"])
        ),
        "wrong_width": lambda: _logits(
            model, batch["input_ids"], batch["protein_embeddings"][..., :8], batch["protein_mask"]
        ),
        "sequences_without_encoder": lambda: model(
            batch["input_ids"], batch["position_ids"], None, sequences=["MKV"]
        ),
    }
    for key, call in cases.items():
        try:
            call()
            messages[key] = None
        except ValueError as error:
            messages[key] = str(error)
    out["errors"] = messages


def _live_encoder(out: dict) -> None:
    from protein_llm_nemo.encoders import build_protein_encoder

    encoder = build_protein_encoder("esmc-tiny")
    config = tiny_bridge_config("perceiver", encoder_dim=encoder.embedding_dim)
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.runtime import seed_everything

    seed_everything(SEED)
    model = build_protein_llm(
        tiny_arch(), config, protein_encoder=encoder, protein_token_ids=TINY_TOKEN_IDS
    ).eval()
    batch = tiny_batch(config)
    sequences = ["MKTAYIAKQR", "MSSK", "ACDEFGHIKLMN"]
    positions = batch["position_ids"]
    with torch.no_grad():
        live = model(batch["input_ids"], positions, None, sequences=sequences, runtime_gather_output=True)
        embeddings, mask = encoder.encode(sequences)
        cached = _logits(model, batch["input_ids"], embeddings, mask)
    out["live_equals_cached"] = torch.equal(live, cached)
    out["encoder_not_in_state"] = not any("protein_encoder" in key for key in model.state_dict())
    out["live_logits_finite"] = bool(torch.isfinite(live).all())
    try:
        build_protein_llm(
            tiny_arch(), tiny_bridge_config("mlp"), protein_encoder=encoder, protein_token_ids=TINY_TOKEN_IDS
        )
        out["encoder_dim_mismatch"] = None
    except ValueError as error:
        out["encoder_dim_mismatch"] = str(error)


def _bf16(out: dict) -> None:
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.models.qwen3 import transformer_config

    for name in ("mlp", "perceiver", "flamingo"):
        config = tiny_bridge_config(name)
        language_config = transformer_config(tiny_arch(), params_dtype=torch.bfloat16)
        model = build_protein_llm(
            tiny_arch(), config, language_config=language_config, protein_token_ids=TINY_TOKEN_IDS
        )
        batch = tiny_batch(config)
        loss = model(
            batch["input_ids"],
            batch["position_ids"],
            None,
            protein_embeddings=batch["protein_embeddings"],  # fp32 in, cast by the bridge
            protein_mask=batch["protein_mask"],
            labels=batch["labels"],
            loss_mask=batch["loss_mask"],
        )
        loss.sum().backward()
        trainable = [p for p in model.parameters() if p.requires_grad]
        out[f"bf16_{name}"] = {
            "trainable_bf16": all(p.dtype == torch.bfloat16 for p in trainable),
            "grads": all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in trainable),
            "finite": bool(torch.isfinite(loss).all()),
        }


def _packing(out: dict) -> None:
    """Two samples packed into one row (block-diagonal causal mask, positions restarting) give the same
    logits as each sample alone; flamingo needs `segment_ids` for that (control: without them it leaks)."""
    from megatron.core.packed_seq_params import PackedSeqParams

    from protein_llm_nemo.models.protein_llm import ProteinLLMModel

    for name in BRIDGES:
        config = tiny_bridge_config(name)
        model = build_tiny_model(config, SEED)
        _open_gates(model)
        batch = tiny_batch(config)
        pieces = [_sample(batch, row) for row in range(2)]
        lengths = [ids.shape[1] for ids, _, _ in pieces]
        input_ids = torch.cat([ids for ids, _, _ in pieces], dim=1)
        positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
        segments = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)]).unsqueeze(0)
        allowed = (segments[0, :, None] == segments[0, None, :]) & torch.ones(
            sum(lengths), sum(lengths)
        ).tril().bool()
        attention_mask = ~allowed[None, None]
        embeddings = mask = None
        if config.uses_encoder:
            width = max(e.shape[1] for _, e, _ in pieces)
            embeddings = torch.cat(
                [torch.nn.functional.pad(e, (0, 0, 0, width - e.shape[1])) for _, e, _ in pieces]
            )
            mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for _, _, m in pieces])

        def run(
            segment_ids,
            model=model,
            input_ids=input_ids,
            positions=positions,
            mask_=attention_mask,
            emb=embeddings,
            msk=mask,
            grad=False,
        ):
            with torch.set_grad_enabled(grad):
                return model(
                    input_ids,
                    positions,
                    mask_,
                    protein_embeddings=emb,
                    protein_mask=msk,
                    segment_ids=segment_ids,
                    runtime_gather_output=True,
                )[0]

        packed = run(segments)
        cu = torch.tensor([0, lengths[0], sum(lengths)], dtype=torch.int32)
        params = PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu,
            cu_seqlens_kv=cu,
            max_seqlen_q=max(lengths),
            max_seqlen_kv=max(lengths),
        )

        def run_thd(
            model=model, input_ids=input_ids, positions=positions, emb=embeddings, msk=mask, params=params
        ):
            # No mask: per-sample attention (`PackedDotProductAttention`) from cu_seqlens alone.
            return model(
                input_ids,
                positions,
                None,
                protein_embeddings=emb,
                protein_mask=msk,
                packed_seq_params=params,
                runtime_gather_output=True,
            )[0]

        with torch.no_grad():
            thd = run_thd()
        diffs, thd_diffs = [], []
        for row, (ids, emb, msk) in enumerate(pieces):
            alone = _logits(model, ids, emb, msk)[0]
            start = sum(lengths[:row])
            diffs.append(float((packed[start : start + lengths[row]] - alone).abs().max()))
            thd_diffs.append(float((thd[start : start + lengths[row]] - alone).abs().max()))
        out[f"packing_{name}"] = diffs
        out[f"packing_thd_{name}"] = thd_diffs
        # Gradients through per-sample attention equal those through the dense block-diagonal mask.
        weights = torch.randn(packed.shape, generator=torch.Generator().manual_seed(0))
        grads = []
        for parameter in model.parameters():
            parameter.requires_grad_(True)  # the LLM too: every layer's attention gradient is compared
        for forward in (run_thd, functools.partial(run, segments, grad=True)):
            model.zero_grad(set_to_none=True)
            (forward() * weights).sum().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        # Against the largest gradient: some are zero in exact arithmetic (a key bias under softmax).
        scale = max(float(g.abs().max()) for g in grads[1].values())
        out[f"packing_thd_grad_{name}"] = (
            sorted(grads[0]) == sorted(grads[1]) and len(grads[0]) > 0,
            max(float((grads[0][n] - grads[1][n]).abs().max()) for n in grads[0]) / scale,
        )
        if name == "flamingo":
            leaky = run(None)
            out["packing_flamingo_without_segments"] = float(
                (leaky[lengths[0] :] - packed[lengths[0] :]).abs().max()
            )
            out["packing_segments_from_cu_seqlens"] = torch.equal(
                ProteinLLMModel.segment_ids_from_packed(params, input_ids), segments
            )


def _train_step(out: dict) -> None:
    """One AdamW step with a learning rate per parameter group: flamingo's gates leave 0, the frozen LLM
    does not move, and the model stops being the plain LLM."""
    config = tiny_bridge_config("flamingo")
    model = build_tiny_model(config, SEED)
    batch = tiny_batch(config)
    llm_before = {
        n: p.detach().clone() for n, p in model.language_model.named_parameters() if not p.requires_grad
    }
    logits_before = _logits(model, batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
    rates = {"bridge": 1e-3, "gates": 1e-2, "protein_tokens": 1e-3}
    groups = model.named_parameter_groups()
    optimizer = torch.optim.AdamW(
        [{"params": [p for _, p in groups[g]], "lr": lr, "name": g} for g, lr in rates.items() if groups[g]]
    )
    loss = model(
        batch["input_ids"],
        batch["position_ids"],
        None,
        protein_embeddings=batch["protein_embeddings"],
        protein_mask=batch["protein_mask"],
        labels=batch["labels"],
        loss_mask=batch["loss_mask"],
    )
    (loss.sum() / batch["loss_mask"].sum()).backward()
    optimizer.step()
    gates = [float(p) for _, p in groups["gates"]]
    out["step_gates"] = gates
    out["step_llm_unchanged"] = all(
        torch.equal(p, llm_before[n]) for n, p in model.language_model.named_parameters() if n in llm_before
    )
    out["step_llm_frozen_count"] = len(llm_before)
    logits_after = _logits(model, batch["input_ids"], batch["protein_embeddings"], batch["protein_mask"])
    out["step_logits_moved"] = float((logits_after - logits_before).abs().max())


def _model_body(rank: int, world_size: int) -> dict:
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(), seed=SEED)
    out: dict = {}
    for check in (
        _identity,
        _invariance,
        _splice_and_groups,
        _errors,
        _live_encoder,
        _bf16,
        _packing,
        _train_step,
    ):
        check(out)
    return to_portable(out)


@pytest.fixture(scope="module")
def results():
    (out,) = run_distributed(_model_body, world_size=1)
    return out


def test_flamingo_is_exactly_the_plain_llm_at_init(results):
    assert results["identity_same_llm_weights"]  # building the gated blocks does not shift the LLM init
    assert results["identity_num_blocks"] == 2  # cross_attention_every=1 on the 2-layer tiny model
    assert results["identity_exact"]  # torch.equal, not allclose
    assert results["identity_opened_diff"] > 1e-3  # and the blocks are live once the gates open


@pytest.mark.parametrize("bridge", BRIDGES)
def test_a_samples_logits_do_not_depend_on_its_batch(results, bridge):
    assert max(results[f"invariance_{bridge}"]) < 1e-5, results[f"invariance_{bridge}"]
    if bridge != "text":
        assert results[f"invariance_{bridge}_other_changed"] < 1e-5
        assert results[f"invariance_{bridge}_self_changed"] > 1e-3


def test_bridge_vectors_land_in_the_slots_and_boundary_tokens_use_the_table(results):
    assert results["splice_slots_exact"]
    assert results["splice_start_rows"]
    assert results["splice_text_rows"]
    assert results["table_initialised_from_llm"]
    assert results["state_has_protein_tokens"] and results["state_has_bridge"]


def test_parameter_groups_and_freezing(results):
    assert results["groups_default"] == ["bridge", "protein_tokens"]  # LLM frozen by default
    assert results["groups_llm_unfrozen_bridge_frozen"] == ["language_model", "protein_tokens"]
    assert results["groups_all_frozen"] == []
    assert results["all_parameters_grouped"]
    assert results["flamingo_gate_names"] == ["attn_gate", "attn_gate", "ffn_gate", "ffn_gate"]
    assert results["flamingo_block_params_in_bridge"] and results["flamingo_llm_frozen"]


def test_boundary_tokens_train_while_the_llm_embedding_stays_frozen(results):
    assert results["loss_zero_where_masked"]
    start, embed, end = results["token_grad_rows"]
    assert start > 0 and end > 0
    assert embed == 0.0  # every embed slot is overwritten by a bridge vector
    assert results["llm_embedding_grad"]


def test_bad_protein_inputs_are_clear_errors(results):
    errors = results["errors"]
    assert "3 proteins but 2 protein embeddings" in errors["too_few_embeddings"]
    assert "no protein embeddings were given" in errors["no_embeddings"]
    assert "have no residues" in errors["empty_protein"]
    assert f"expects encoder_dim={TINY_ENCODER_DIM}" in errors["wrong_width"]
    assert "no protein_encoder" in errors["sequences_without_encoder"]


def test_live_tiny_encoder_matches_cache_fed_embeddings(results):
    assert results["live_equals_cached"] and results["live_logits_finite"]
    assert results["encoder_not_in_state"]
    assert (
        "returns 64-d embeddings but the 'mlp' bridge expects encoder_dim=32"
        in results["encoder_dim_mismatch"]
    )


@pytest.mark.parametrize("bridge", ["mlp", "perceiver", "flamingo"])
def test_bf16_model_trains_in_its_own_dtype(results, bridge):
    assert results[f"bf16_{bridge}"] == {"trainable_bf16": True, "grads": True, "finite": True}


@pytest.mark.parametrize("bridge", BRIDGES)
def test_packed_samples_equal_the_samples_alone(results, bridge):
    assert max(results[f"packing_{bridge}"]) < 1e-5, results[f"packing_{bridge}"]
    # The thd path (per-sample attention, no mask) too, and its gradients equal the dense masked path's.
    assert max(results[f"packing_thd_{bridge}"]) < 1e-5, results[f"packing_thd_{bridge}"]
    same_params, relative_grad_diff = results[f"packing_thd_grad_{bridge}"]
    assert same_params and relative_grad_diff < 1e-6, relative_grad_diff


def test_flamingo_packing_masks_other_samples_proteins(results):
    assert results["packing_flamingo_without_segments"] > 1e-3  # control: one context for the row leaks
    assert results["packing_segments_from_cu_seqlens"]


def test_one_optimizer_step_opens_the_gates_and_leaves_the_frozen_llm_alone(results):
    assert all(abs(g) > 1e-4 for g in results["step_gates"]), results["step_gates"]
    assert results["step_llm_frozen_count"] > 0 and results["step_llm_unchanged"]
    assert results["step_logits_moved"] > 1e-6
