"""TP-aware LoRA on megatron-core Qwen3: identity at init, TP=2 == TP=1 (outputs and gathered adapter
gradients), only adapters trainable, merge == unmerged, a TP=2 LoRA checkpoint loads at TP=1, and the
PEFT adapter export loaded by real `peft` onto the real `transformers` Qwen3 gives the megatron logits.

Two rank bodies (TP=2 on two gloo ranks, then TP=1) do the megatron work; the HF side runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_llm_nemo.conversion.peft_adapter import peft_adapter_config
from protein_llm_nemo.models.lora import LoRAConfig
from protein_llm_nemo.models.qwen3 import qwen3_preset
from protein_llm_nemo.testing.multiprocess import run_distributed

BATCH, SEQ = 2, 10
CONFIG = dict(rank=4, alpha=8.0, dropout=0.0)


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(11))


def _full_adapter_tensor(global_name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    import zlib

    generator = torch.Generator().manual_seed(seed * 7919 + zlib.crc32(global_name.encode()))
    return torch.randn(shape, generator=generator) * 0.2


def _adapter_layout(model, local_name: str):
    """(global name, global shape, shard fn, gather fn) of an adapter parameter."""
    from megatron.core import parallel_state

    from protein_llm_nemo.conversion.mappings import DirectMapping, GatedMLPMapping
    from protein_llm_nemo.models.parallel_weights import global_parameter_name

    param = model.get_parameter(local_name)
    size = parallel_state.get_tensor_model_parallel_world_size()
    rank = parallel_state.get_tensor_model_parallel_rank()
    shape = list(param.shape)
    if getattr(param, "tensor_model_parallel", False):
        shape[param.partition_dim] *= size
    if local_name.endswith("mlp.linear_fc1.adapter.linear_out.weight"):
        mapping = GatedMLPMapping("", "", "")
    elif getattr(param, "tensor_model_parallel", False):
        mapping = DirectMapping("", "", "row" if param.partition_dim == 1 else "column")
    else:
        mapping = DirectMapping("", "", "replicated")
    return (
        global_parameter_name(model, local_name),
        tuple(shape),
        lambda full: mapping.shard(full, rank, size),
        mapping.gather,
    )


@torch.no_grad()
def _set_adapters(model, seed: int) -> None:
    """The same full adapter values at any TP size, each rank taking its shard."""
    for name, param in model.named_parameters():
        if ".adapter." in name:
            global_name, shape, shard, _ = _adapter_layout(model, name)
            param.copy_(shard(_full_adapter_tensor(global_name, shape, seed)))


def _gathered_adapter_grads(model) -> dict[str, np.ndarray]:
    import torch.distributed as dist
    from megatron.core import parallel_state

    size = parallel_state.get_tensor_model_parallel_world_size()
    grads = {}
    for name, param in model.named_parameters():
        if ".adapter." not in name:
            continue
        global_name, _, _, gather = _adapter_layout(model, name)
        shards = [torch.empty_like(param.grad) for _ in range(size)]
        dist.all_gather(
            shards, param.grad.contiguous(), group=parallel_state.get_tensor_model_parallel_group()
        )
        grads[global_name] = gather(shards).numpy()
    return grads


def _lora_body(rank: int, world_size: int, hf_dir: str, out_dir: str, load_from: str | None) -> dict:
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.conversion.hf_io import HFCheckpointReader
    from protein_llm_nemo.conversion.megatron_io import CheckpointHeader, save_megatron_checkpoint
    from protein_llm_nemo.conversion.peft_adapter import save_peft_adapter
    from protein_llm_nemo.conversion.qwen3_export import export_hf_checkpoint
    from protein_llm_nemo.conversion.qwen3_import import load_hf_weights
    from protein_llm_nemo.models.forward import forward_logits as megatron_logits
    from protein_llm_nemo.models.forward import position_ids_for
    from protein_llm_nemo.models.lora import apply_lora, lora_modules, merge_lora
    from protein_llm_nemo.models.qwen3 import build_qwen3_model
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(world_size, 1), seed=0)
    arch = qwen3_preset("tiny")
    out = Path(out_dir)
    tokens = _tokens(arch.vocab_size)
    config = LoRAConfig(**CONFIG)

    def build():
        model = build_qwen3_model(arch, parallel_output=False)
        load_hf_weights(model, HFCheckpointReader(hf_dir), arch)
        return model.eval()

    result: dict = {}
    model = build()

    def forward_logits(model, tokens):
        return megatron_logits(model, tokens)[..., : arch.vocab_size]

    base = forward_logits(model, tokens)
    if world_size == 1:
        dist_checkpointing.save(model.sharded_state_dict(), str(out / "base_ckpt"))
    wrapped = apply_lora(model, config)
    result["wrapped"] = wrapped
    result["identity"] = (forward_logits(model, tokens) - base).abs().max().item()
    result["trainable"] = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    result["frozen_flags"] = [p.requires_grad for _, m in lora_modules(model) for p in m.parameters(False)]
    _set_adapters(model, seed=1)
    logits = model(tokens, position_ids_for(tokens), None)[..., : arch.vocab_size]  # vocab padded per TP
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    (logits * weights).sum().backward()
    result["grads"] = _gathered_adapter_grads(model)
    result["base_grads"] = [
        n for n, p in model.named_parameters() if ".adapter." not in n and p.grad is not None
    ]
    lora_logits = forward_logits(model, tokens)
    result["lora_logits"] = lora_logits.numpy()
    result["lora_vs_base"] = (lora_logits - base).abs().max().item()

    if load_from is None:  # the TP=2 run: write a LoRA checkpoint, the PEFT adapter and the merged export
        dist_checkpointing.save(model.sharded_state_dict(), str(out / "lora_ckpt"))
        save_peft_adapter(model, arch, out / "peft", config, base_model_name_or_path=hf_dir)
        result.update(_dropout_checks(build, tokens))
    else:  # the TP=1 run: a fresh LoRA model with other adapters loads the TP=2 checkpoint
        fresh = build()
        apply_lora(fresh, LoRAConfig(**CONFIG, seed=5))
        _set_adapters(fresh, seed=2)
        result["fresh_logits"] = forward_logits(fresh, tokens).numpy()
        state = dist_checkpointing.load(fresh.sharded_state_dict(), load_from)
        fresh.load_state_dict(state, strict=True)
        result["loaded_logits"] = forward_logits(fresh, tokens).numpy()
        result.update(_protein_llm_checks(out / "base_ckpt", model))
        result.update(_peft_import_checks(build, arch, tokens, Path(load_from).parent / "peft", out))

    result["merged"] = merge_lora(model)
    result["unwrapped"] = sum(1 for _ in lora_modules(model))
    result["merged_logits"] = forward_logits(model, tokens).numpy()
    if load_from is None:
        header = CheckpointHeader(
            arch=arch, tensor_model_parallel_size=world_size, pipeline_model_parallel_size=1
        )
        save_megatron_checkpoint(model, out / "merged_ckpt", header)
        torch.distributed.barrier()  # rank 0 writes the header last
        export_hf_checkpoint(out / "merged_ckpt", out / "merged_hf")
    return result


def _dropout_checks(build, tokens) -> dict:
    """Training-mode dropout at TP=2: both ranks draw the same mask for a replicated adapter input, so the
    replicated A matrices get identical gradients; the masks do act (the loss differs from eval mode)."""
    from protein_llm_nemo.models.forward import position_ids_for
    from protein_llm_nemo.models.lora import apply_lora, lora_modules

    model = build()
    apply_lora(model, LoRAConfig(**{**CONFIG, "dropout": 0.5}))
    _set_adapters(model, seed=1)
    with torch.no_grad():
        eval_logits = model(tokens, position_ids_for(tokens), None)
    model.train()
    logits = model(tokens, position_ids_for(tokens), None)
    logits.float().pow(2).mean().backward()
    replicated = {
        name: module.adapter.linear_in.weight.grad.clone().numpy()
        for name, module in lora_modules(model)
        if module.adapter.mode == "column"
    }
    return {"dropout_a_grads": replicated, "dropout_effect": (logits - eval_logits).abs().max().item()}


def _pp_body(rank: int, world_size: int, hf_dir: str, out_dir: str, load_from: str) -> dict:
    """PP=2: the TP=2 LoRA checkpoint loads stage by stage; the PEFT export gathers both stages."""
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.conversion.hf_io import HFCheckpointReader
    from protein_llm_nemo.conversion.peft_adapter import save_peft_adapter
    from protein_llm_nemo.conversion.qwen3_import import load_hf_weights
    from protein_llm_nemo.models.forward import forward_logits
    from protein_llm_nemo.models.lora import apply_lora
    from protein_llm_nemo.models.qwen3 import build_qwen3_model
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(1, world_size), seed=0)
    arch = qwen3_preset("tiny")
    model = build_qwen3_model(arch, parallel_output=False).eval()
    load_hf_weights(model, HFCheckpointReader(hf_dir), arch)
    wrapped = apply_lora(model, LoRAConfig(**CONFIG, seed=9))
    # patterns name global layers: layer 1 lives on stage 1 as its local layer 0
    probe = build_qwen3_model(arch, parallel_output=False)
    probe_wrapped = apply_lora(probe, LoRAConfig(**CONFIG, target_modules=["decoder.layers.1.mlp.*"]))
    state = dist_checkpointing.load(model.sharded_state_dict(), load_from)
    model.load_state_dict(state, strict=True)
    logits = forward_logits(model, _tokens(arch.vocab_size))
    save_peft_adapter(model, arch, Path(out_dir) / "peft", LoRAConfig(**CONFIG))
    return {
        "wrapped": wrapped,
        "probe_wrapped": probe_wrapped,
        "logits": None if logits is None else logits[..., : arch.vocab_size].numpy(),
    }


def _peft_import_checks(build, arch, tokens, peft_dir: Path, out: Path) -> dict:
    """The TP=2 PEFT export loads back into a TP=1 LoRA model; a PEFT adapter whose q/k/v A matrices
    differ (not fusable into one linear_qkv adapter) is rejected."""
    import shutil

    from safetensors.torch import load_file, save_file

    from protein_llm_nemo.conversion.peft_adapter import load_peft_adapter
    from protein_llm_nemo.models.forward import forward_logits
    from protein_llm_nemo.models.lora import apply_lora

    model = build()
    apply_lora(model, LoRAConfig(**CONFIG, seed=7))
    filled = load_peft_adapter(model, arch, peft_dir)
    logits = forward_logits(model, tokens)[..., : arch.vocab_size].numpy()
    try:
        apply_lora(build(), LoRAConfig(target_modules=["q_proj"]))  # HF names are not megatron's
        no_match = ""
    except ValueError as exc:
        no_match = str(exc)
    bad = out / "bad_peft"
    shutil.copytree(peft_dir, bad)
    tensors = load_file(str(bad / "adapter_model.safetensors"))
    tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"] += 0.01
    save_file(tensors, str(bad / "adapter_model.safetensors"))
    try:
        load_peft_adapter(model, arch, bad)
        error = ""
    except ValueError as exc:
        error = str(exc)
    return {
        "peft_import_filled": filled,
        "peft_import_logits": logits,
        "peft_import_error": error,
        "no_match_error": no_match,
    }


def _protein_llm_checks(base_ckpt: Path, plain_lora) -> dict:
    """LoRA inside a flamingo ProteinLLM: only the language model's linears, adapters in the `lora` group,
    and an LLM checkpoint still loads into the wrapped model."""
    from protein_llm_nemo.models.lora import apply_lora
    from protein_llm_nemo.testing.tiny import build_tiny_model, tiny_bridge_config

    model = build_tiny_model(tiny_bridge_config("flamingo"), seed=0)
    bridge_before = {n for n, p in model.named_parameters() if p.requires_grad}
    wrapped = apply_lora(model, LoRAConfig(**CONFIG))
    groups = model.named_parameter_groups()
    model.language_model.embedding.word_embeddings.weight.data.zero_()  # then restored by the load
    model.load_language_model(base_ckpt)
    return {
        "plm_wrapped": wrapped,
        "plm_groups": {group: sorted(n for n, _ in items) for group, items in groups.items()},
        "plm_bridge_before": sorted(bridge_before),
        "plm_loaded_embedding_nonzero": bool(
            model.language_model.embedding.word_embeddings.weight.abs().sum() > 0
        ),
        "plm_still_wrapped": sum(1 for n, _ in model.named_parameters() if ".adapter." in n),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from protein_llm_nemo.conversion.roundtrip import save_random_hf_qwen3

    root = tmp_path_factory.mktemp("lora")
    hf_dir, tp2_dir, tp1_dir = root / "hf", root / "tp2", root / "tp1"
    for folder in (tp2_dir / "lora_ckpt", tp2_dir / "merged_ckpt", tp1_dir / "base_ckpt"):
        folder.mkdir(parents=True)  # dist_checkpointing writes into existing folders
    save_random_hf_qwen3(qwen3_preset("tiny"), hf_dir, seed=5)
    tp2 = run_distributed(_lora_body, world_size=2, args=(str(hf_dir), str(tp2_dir), None))
    (tp1,) = run_distributed(
        _lora_body, world_size=1, args=(str(hf_dir), str(tp1_dir), str(tp2_dir / "lora_ckpt"))
    )
    pp2 = run_distributed(
        _pp_body, world_size=2, args=(str(hf_dir), str(root / "pp2"), str(tp2_dir / "lora_ckpt"))
    )
    return {"hf_dir": hf_dir, "tp2_dir": tp2_dir, "pp2_dir": root / "pp2", "tp2": tp2, "tp1": tp1, "pp2": pp2}


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_config_defaults_follow_the_reference_and_reject_bad_values():
    config = LoRAConfig()
    assert (config.rank, config.alpha, config.dropout, config.scaling) == (8, 16.0, 0.05, 2.0)
    assert config.target_modules == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    assert LoRAConfig(target_modules=["decoder.layers.1.*"]).matches("decoder.layers.1.mlp.linear_fc2")
    assert not LoRAConfig(target_modules=["decoder.layers.1.*"]).matches("decoder.layers.0.mlp.linear_fc2")
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRAConfig(rank=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRAConfig(dropout=1.0)


def test_peft_adapter_config_maps_megatron_targets_to_hf_modules():
    arch = qwen3_preset("tiny")
    full = peft_adapter_config(LoRAConfig(), arch, "Qwen/Qwen3-8B")
    assert full["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert (full["r"], full["lora_alpha"], full["peft_type"], full["task_type"]) == (
        8,
        16.0,
        "LORA",
        "CAUSAL_LM",
    )
    assert full["base_model_name_or_path"] == "Qwen/Qwen3-8B"
    attention = peft_adapter_config(LoRAConfig(target_modules=["linear_qkv"]), arch)
    assert attention["target_modules"] == ["q_proj", "k_proj", "v_proj"]
    one_layer = peft_adapter_config(LoRAConfig(), arch, wrapped_modules=["decoder.layers.1.mlp.linear_fc2"])
    assert one_layer["target_modules"] == ["model.layers.1.mlp.down_proj"]


def test_adapters_wrap_the_four_linears_of_every_layer_and_start_as_identity(runs):
    for result in [*runs["tp2"], runs["tp1"]]:
        assert len(result["wrapped"]) == 8
        assert {n.rsplit(".", 1)[-1] for n in result["wrapped"]} == {
            "linear_qkv",
            "linear_proj",
            "linear_fc1",
            "linear_fc2",
        }
        assert result["identity"] == 0.0  # B = 0: exactly the base model
        assert result["lora_vs_base"] > 1e-2  # and the nonzero adapters do change it


def test_only_adapters_are_trainable_and_only_they_get_gradients(runs):
    for result in [*runs["tp2"], runs["tp1"]]:
        assert len(result["trainable"]) == 16
        assert all(".adapter.linear_in." in n or ".adapter.linear_out." in n for n in result["trainable"])
        assert not any(result["frozen_flags"])  # the wrapped base weights
        assert result["base_grads"] == []


def test_tp2_equals_tp1_in_outputs_and_gathered_adapter_gradients(runs):
    tp1, tp2 = runs["tp1"], runs["tp2"]
    for result in tp2:
        assert _diff(result["lora_logits"], tp1["lora_logits"]) < 1e-4
        assert result["grads"].keys() == tp1["grads"].keys()
        for name, grad in tp1["grads"].items():
            scale = max(float(np.abs(grad).max()), 1.0)
            assert _diff(result["grads"][name], grad) < 1e-4 * scale, name
        assert any(np.abs(g).max() > 1e-3 for g in result["grads"].values())
    # replicated adapters got the full gradient on both TP ranks
    for name in tp1["grads"]:
        assert _diff(tp2[0]["grads"][name], tp2[1]["grads"][name]) == 0.0


def test_merge_equals_the_unmerged_forward_and_unwraps(runs):
    for result in [*runs["tp2"], runs["tp1"]]:
        assert len(result["merged"]) == 8 and result["unwrapped"] == 0
        assert _diff(result["merged_logits"], result["lora_logits"]) < 1e-4


def test_lora_checkpoint_saved_at_tp2_loads_at_tp1(runs):
    tp1, tp2 = runs["tp1"], runs["tp2"]
    assert _diff(tp1["fresh_logits"], tp2[0]["lora_logits"]) > 1e-2  # other adapters before the load
    assert _diff(tp1["loaded_logits"], tp2[0]["lora_logits"]) < 1e-4


def test_lora_in_a_protein_llm_lands_in_the_lora_group_and_skips_bridge_linears(runs):
    tp1 = runs["tp1"]
    assert len(tp1["plm_wrapped"]) == 8
    assert all(n.startswith("language_model.decoder.layers.") for n in tp1["plm_wrapped"])
    assert not any("gated_cross_attention" in n for n in tp1["plm_wrapped"])
    groups = tp1["plm_groups"]
    assert len(groups["lora"]) == 16 and all(".adapter." in n for n in groups["lora"])
    assert groups["language_model"] == []
    assert groups["bridge"] and set(groups["bridge"]) <= set(tp1["plm_bridge_before"])
    assert tp1["plm_loaded_embedding_nonzero"] and tp1["plm_still_wrapped"] == 16


def test_peft_adapter_from_tp2_on_transformers_qwen3_equals_megatron_and_the_merged_export(runs):
    from peft import PeftModel
    from transformers import Qwen3ForCausalLM

    arch = qwen3_preset("tiny")
    tokens = _tokens(arch.vocab_size)
    peft_dir = runs["tp2_dir"] / "peft"
    adapter_config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == CONFIG["rank"] and adapter_config["lora_alpha"] == CONFIG["alpha"]
    megatron = runs["tp2"][0]["lora_logits"]
    with torch.no_grad():
        base = Qwen3ForCausalLM.from_pretrained(runs["hf_dir"]).eval()
        base_logits = base(tokens).logits.numpy()
        peft_model = PeftModel.from_pretrained(base, str(peft_dir)).eval()
        peft_logits = peft_model(tokens).logits.numpy()
        merged = Qwen3ForCausalLM.from_pretrained(runs["tp2_dir"] / "merged_hf").eval()
        merged_logits = merged(tokens).logits.numpy()
    assert _diff(peft_logits, base_logits) > 1e-2  # the adapter was applied
    assert _diff(peft_logits, megatron) < 1e-4
    assert _diff(merged_logits, megatron) < 1e-4
    assert _diff(merged_logits, peft_logits) < 1e-4


def test_dropout_masks_agree_over_tp_for_replicated_adapter_inputs(runs):
    rank0, rank1 = runs["tp2"]
    assert rank0["dropout_effect"] > 1e-3
    assert rank0["dropout_a_grads"].keys() == rank1["dropout_a_grads"].keys()
    assert len(rank0["dropout_a_grads"]) == 4  # linear_qkv and linear_fc1 of both layers
    for name, grad in rank0["dropout_a_grads"].items():
        assert np.abs(grad).max() > 0
        assert np.array_equal(grad, rank1["dropout_a_grads"][name]), name


def test_lora_checkpoint_loads_at_pp2_and_the_peft_export_gathers_both_stages(runs):
    from safetensors.torch import load_file

    first, last = runs["pp2"]
    assert [n.split(".")[2] for n in first["wrapped"]] == ["0"] * 4  # local layer 0 of each stage
    assert first["logits"] is None
    assert first["probe_wrapped"] == []
    assert last["probe_wrapped"] == ["decoder.layers.0.mlp.linear_fc1", "decoder.layers.0.mlp.linear_fc2"]
    assert _diff(last["logits"], runs["tp2"][0]["lora_logits"]) < 1e-4
    from_pp = load_file(runs["pp2_dir"] / "peft" / "adapter_model.safetensors")
    from_tp = load_file(runs["tp2_dir"] / "peft" / "adapter_model.safetensors")
    assert sorted(from_pp) == sorted(from_tp) and len(from_tp) == 2 * 14  # 7 HF modules x (A, B) x 2 layers
    assert all(torch.equal(from_pp[key], from_tp[key]) for key in from_tp)


def test_the_tp2_peft_export_loads_back_into_a_tp1_lora_model(runs):
    tp1 = runs["tp1"]
    assert tp1["peft_import_filled"] == 8
    assert _diff(tp1["peft_import_logits"], runs["tp2"][0]["lora_logits"]) < 1e-4
    assert "different lora_A matrices" in tp1["peft_import_error"]
    assert "match none of the model's linears" in tp1["no_match_error"]
    assert "linear_qkv" in tp1["no_match_error"]
