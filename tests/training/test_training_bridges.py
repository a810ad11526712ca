"""Every bridge trains through the same loop: text (no encoder: LoRA on the frozen LLM), perceiver (slots),
flamingo (gated cross-attention, packed rows see only their own proteins). One step each; losses finite, the
trainable parameters receive gradients (flamingo: the gates too). A run with nothing to train (text bridge,
frozen LLM, no LoRA) is refused before it starts."""

from __future__ import annotations

import math

import pytest

from protein_llm_nemo.bridges import get_bridge_config_class
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, write_records
from protein_llm_nemo.testing.tiny import built_in_bridges

# every built-in bridge but mlp (the other training tests run it), at its registered test sizes
BRIDGES = [name for name in built_in_bridges() if name != "mlp"]


def _config(data_dir: str, name: str):
    from protein_llm_nemo.training import BridgeSelection

    config = tiny_config(data_dir, train__max_steps=1)
    config.bridge = BridgeSelection(name, dict(get_bridge_config_class(name).test_sizes))
    config.data.valid_path = None
    return config


def _bridges(rank: int, world_size: int, data_dir: str) -> dict:
    from protein_llm_nemo.training import LoRAConfig
    from protein_llm_nemo.training.sft import setup_sft

    out = {}
    try:  # the text bridge has no weights: with the LLM frozen and no LoRA there is nothing to train
        setup_sft(_config(data_dir, "text"))
        out["refused"] = None
    except ValueError as error:
        out["refused"] = str(error)
    for name in BRIDGES:
        config = _config(data_dir, name)
        if not get_bridge_config_class(name).uses_encoder:
            config.lora = LoRAConfig(rank=4, alpha=8.0, dropout=0.0)
        session = setup_sft(config)
        if get_bridge_config_class(name).cross_attention:  # open the gates: the blocks' weights get grads too
            for pname, param in session.model.named_parameters():
                if pname.endswith(("attn_gate", "ffn_gate")):
                    param.data.fill_(0.5)
        result = session.run()
        out[name] = {"losses": result.losses, "groups": {}}
        for group, params in session.model.named_parameter_groups().items():
            norms = [float(p.main_grad.norm()) for _, p in params]
            if norms:
                out[name]["groups"][group] = max(norms)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bridges")
    write_records(folder / "train.jsonl", 8, seed=5)
    return run_distributed(_bridges, world_size=1, args=(str(folder),))[0]


@pytest.mark.parametrize("name", BRIDGES)
def test_bridge_trains(results, name):
    result = results[name]
    assert len(result["losses"]) == 1 and math.isfinite(result["losses"][0])
    config = get_bridge_config_class(name)
    if not config.uses_encoder:
        assert set(result["groups"]) == {"lora"} and result["groups"]["lora"] > 0  # LLM frozen, LoRA trains
    else:
        assert result["groups"]["bridge"] > 0 and result["groups"]["protein_tokens"] > 0
    if config.cross_attention:
        assert result["groups"]["gates"] > 0


def test_a_run_with_nothing_to_train_is_refused(results):
    message = results["refused"]
    assert message is not None, "text bridge + frozen LLM + no LoRA started a run that trains nothing"
    assert message.startswith("nothing to train: 0 trainable parameters")
    assert "'text' bridge has no weights" in message and "model.freeze_language_model=True" in message
    assert "lora=None" in message and "lora.rank=" in message
