"""Bridge modules on their own: registry and configs, shapes, padding independence, input normalisation,
dropout only in training, clear input errors, and the size report at real shapes (meta device)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from protein_llm_nemo.bridges import (
    BridgeConfig,
    get_bridge_config,
    get_bridge_config_class,
    list_bridges,
    register_bridge,
)
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import (
    TINY_ENCODER_DIM,
    built_in_bridges,
    tiny_arch,
    tiny_bridge_config,
    to_portable,
)

ENCODER_BRIDGES = [n for n in built_in_bridges() if get_bridge_config_class(n).uses_encoder]


# -- registry and configs (no process group needed) ------------------------------------------------------


def test_registry_lists_the_four_built_in_bridges():
    # other test modules may register plug-in bridges in this process; the built-ins are always there
    assert {"flamingo", "mlp", "perceiver", "text"} <= set(list_bridges())


def test_configs_carry_the_reference_defaults():
    mlp, perceiver, flamingo = (get_bridge_config(n) for n in ("mlp", "perceiver", "flamingo"))
    assert (mlp.num_slots, mlp.num_heads, mlp.projector_hidden_size) == (32, 8, 5120)
    assert (perceiver.num_slots, perceiver.latent_dim, perceiver.num_layers) == (32, 1024, 2)
    assert (flamingo.num_latents, flamingo.num_layers, flamingo.cross_attention_every) == (64, 6, 4)
    assert flamingo.cross_attention_layers(36) == list(range(3, 36, 4))  # layers 3, 7, ..., 35
    assert flamingo.cross_attention and not flamingo.splices and mlp.splices and not mlp.cross_attention
    text = get_bridge_config("text")
    assert not text.uses_encoder and text.num_slots == 0 and text.build(None) is None
    assert text.format_protein("MKV") == "MKV"
    assert get_bridge_config("mlp", encoder_dim=960).to_dict()["encoder_dim"] == 960


def test_registry_errors_are_clear():
    with pytest.raises(ValueError, match="unknown bridge 'no-such-bridge'"):
        get_bridge_config("no-such-bridge")
    with pytest.raises(ValueError, match=r"has no fields \['latents'\]"):
        get_bridge_config("mlp", latents=3)
    with pytest.raises(ValueError, match="already registered"):

        @register_bridge("mlp")
        class Other(BridgeConfig):
            pass

    with pytest.raises(TypeError, match="expects a BridgeConfig subclass"):
        register_bridge("thing")(dict)
    with pytest.raises(ValueError, match="cross_attention_every must be >= 1"):
        get_bridge_config("flamingo", cross_attention_every=0)


# -- modules (one gloo rank) ----------------------------------------------------------------------------


def _proteins(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = [3, 11, 6]
    mask = torch.zeros(3, 11, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    embeddings = torch.randn(3, 11, TINY_ENCODER_DIM, generator=generator) * 5 + 2
    return embeddings * mask[..., None], mask, lengths


def _module_body(rank: int, world_size: int) -> dict:
    from protein_llm_nemo.models.qwen3 import transformer_config
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(), seed=3)
    language_config = transformer_config(tiny_arch())
    out: dict = {}
    embeddings, mask, lengths = _proteins()
    for name in ENCODER_BRIDGES:
        config = tiny_bridge_config(name, **({"dropout": 0.1} if name == "flamingo" else {}))
        bridge = config.build(language_config).eval()
        with torch.no_grad():
            base = bridge(embeddings, mask)
            out[f"{name}_shape"] = tuple(base.shape)
            garbage = embeddings.clone()
            garbage[~mask] = torch.randn(int((~mask).sum()), TINY_ENCODER_DIM) * 1e3
            out[f"{name}_padding_diff"] = float((bridge(garbage, mask) - base).abs().max())
            alone = [bridge(embeddings[i : i + 1, :n], mask[i : i + 1, :n]) for i, n in enumerate(lengths)]
            out[f"{name}_crop_diff"] = float((torch.cat(alone) - base).abs().max())
            scaled = embeddings * 7.0 - 3.0  # per-residue affine change: a LayerNorm removes it
            out[f"{name}_normalised_diff"] = float((bridge(scaled, mask) - base).abs().max())
            raw = config.replace(normalize_input=False).build(language_config).eval()
            out[f"{name}_unnormalised_diff"] = float((raw(scaled, mask) - raw(embeddings, mask)).abs().max())
            bridge.train()
            out[f"{name}_train_dropout_diff"] = float(
                (bridge(embeddings, mask) - bridge(embeddings, mask)).abs().max()
            )
            bridge.eval()
            out[f"{name}_eval_repeat_equal"] = torch.equal(bridge(embeddings, mask), base)
        rebuilt = config.build(language_config)
        out[f"{name}_same_seed_same_weights"] = all(
            torch.equal(a, b) for a, b in zip(bridge.parameters(), rebuilt.parameters(), strict=True)
        )
    flamingo = tiny_bridge_config("flamingo", max_residues=8).build(language_config)
    try:
        flamingo(embeddings, mask)
        out["flamingo_too_long"] = None
    except ValueError as error:
        out["flamingo_too_long"] = str(error)
    out["hidden_size"] = language_config.hidden_size
    out.update(_twin_checks(language_config, embeddings, mask))
    return to_portable(out)


def _twin_checks(language_config, embeddings, mask) -> dict:
    """The megatron module and the HF twin are one piece of code: same names and shapes, and the twin
    holding the megatron weights gives the same outputs (TP=1)."""
    from protein_llm_nemo.bridges.blocks.layers import TorchLayers
    from protein_llm_nemo.bridges.blocks.megatron import MegatronLayers

    out = {}
    hidden = language_config.hidden_size
    for name in ENCODER_BRIDGES:
        config = tiny_bridge_config(name)
        megatron, twin = config.build(language_config).eval(), config.build_hf(hidden).eval()
        weights = dict(megatron.named_parameters())  # megatron's state also holds empty `_extra_state`s
        shapes = {n: tuple(p.shape) for n, p in weights.items()}
        out[f"{name}_twin_shapes_equal"] = shapes == {n: tuple(p.shape) for n, p in twin.state_dict().items()}
        twin.load_state_dict(weights)
        with torch.no_grad():
            out[f"{name}_twin_diff"] = float(
                (megatron(embeddings, mask) - twin(embeddings, mask)).abs().max()
            )
    flamingo = tiny_bridge_config("flamingo")
    args = (hidden, language_config.num_attention_heads, language_config.kv_channels, 1e-6)
    block = flamingo.cross_attention_block(MegatronLayers(language_config), *args).eval()
    twin_block = flamingo.cross_attention_block(TorchLayers(), *args).eval()
    twin_block.load_state_dict(dict(block.named_parameters()))
    with torch.no_grad():
        for gated in (block, twin_block):
            gated.attn_gate.fill_(0.5)
            gated.ffn_gate.fill_(0.5)
        hidden_states = torch.randn(2, 5, hidden)
        context = torch.randn(2, 4, TINY_ENCODER_DIM)
        ignore = torch.tensor([[False, False, True, True], [False, True, True, True]])
        out["block_twin_diff"] = float(
            (block(hidden_states, context, ignore) - twin_block(hidden_states, context, ignore)).abs().max()
        )
    return out


def _sizes_body(rank: int, world_size: int) -> dict:
    from protein_llm_nemo.bridges.sizes import bridge_size_report
    from protein_llm_nemo.cli import main
    from protein_llm_nemo.models.qwen3 import qwen3_preset
    from protein_llm_nemo.runtime import ParallelConfig, destroy_distributed, initialize_distributed

    initialize_distributed(ParallelConfig(), seed=0)
    rows = bridge_size_report(1536, qwen3_preset("8b"))
    flamingo_4b = bridge_size_report(1536, qwen3_preset("4b"), ["flamingo"])
    destroy_distributed()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bridge-sizes", "--encoder", "esm3-open", "--llm", "8b", "--bridge", "mlp"])
    return {
        "rows": [(r.bridge, r.component, r.parameters, r.reference) for r in rows],
        "flamingo_4b": [(r.component, r.parameters) for r in flamingo_4b],
        "cli_code": code,
        "cli_output": stdout.getvalue(),
    }


@pytest.fixture(scope="module")
def modules():
    (out,) = run_distributed(_module_body, world_size=1)
    return out


@pytest.mark.parametrize("bridge", ENCODER_BRIDGES)
def test_output_shapes(modules, bridge):
    expected = {"mlp": (3, 4, modules["hidden_size"]), "perceiver": (3, 4, modules["hidden_size"])}
    expected["flamingo"] = (3, 4, TINY_ENCODER_DIM)  # latents at the encoder width: the x-attn context
    assert modules[f"{bridge}_shape"] == expected[bridge]


@pytest.mark.parametrize("bridge", ENCODER_BRIDGES)
def test_no_output_depends_on_padding(modules, bridge):
    assert modules[f"{bridge}_padding_diff"] < 1e-5  # garbage of size 1e3 in the padded residues
    assert modules[f"{bridge}_crop_diff"] < 1e-5  # each protein alone, unpadded


@pytest.mark.parametrize("bridge", ENCODER_BRIDGES)
def test_encoder_outputs_are_normalised_first(modules, bridge):
    assert modules[f"{bridge}_normalised_diff"] < 1e-4
    assert modules[f"{bridge}_unnormalised_diff"] > 1e-2  # control: without the norm the scale matters


@pytest.mark.parametrize("bridge", ENCODER_BRIDGES)
def test_dropout_only_in_training_and_init_is_seeded(modules, bridge):
    assert modules[f"{bridge}_train_dropout_diff"] > 0
    assert modules[f"{bridge}_eval_repeat_equal"]
    assert modules[f"{bridge}_same_seed_same_weights"]


@pytest.mark.parametrize("bridge", ENCODER_BRIDGES)
def test_the_hf_twin_is_the_same_module_on_plain_linears(modules, bridge):
    assert modules[f"{bridge}_twin_shapes_equal"]
    assert modules[f"{bridge}_twin_diff"] == 0.0


def test_the_gated_block_twin_equals_the_megatron_block(modules):
    assert modules["block_twin_diff"] == 0.0


def test_flamingo_rejects_proteins_longer_than_its_positions(modules):
    assert "exceed the bridge's max_residues=8" in modules["flamingo_too_long"]


def test_size_report_matches_the_reference_within_one_percent():
    (out,) = run_distributed(_sizes_body, world_size=1)
    rows = {(bridge, component): (count, ref) for bridge, component, count, ref in out["rows"]}
    for key in [("mlp", "pooling"), ("mlp", "projector"), ("perceiver", "total")]:
        count, ref = rows[key]
        assert abs(count / ref - 1) < 0.01, (key, count, ref)
    assert rows[("mlp", "pooling")][0] == 32 * 1536 + 4 * (1536 * 1536 + 1536) + 2 * 1536
    assert rows[("text", "total")][0] == 0
    flamingo = dict(out["flamingo_4b"])
    assert flamingo["gates"] == 2 * 9  # two gates in each of the 9 blocks of a 36-layer model
    assert out["cli_code"] == 0
    assert "mlp        pooling" in out["cli_output"] and "9.50M" in out["cli_output"]
