"""Cluster presets: consistent layouts, memory per GPU inside an H100 with headroom, and the parameter
counts behind the arithmetic equal to the code's (Qwen3Arch.num_parameters, bridge_size_report)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from protein_llm_nemo.launch.presets import (
    GIB,
    H100_MEMORY_GIB,
    PRESETS,
    bridge_trainable_parameters,
    get_preset,
    memory_per_gpu,
)
from protein_llm_nemo.models.qwen3 import qwen3_preset
from protein_llm_nemo.testing.tiny import built_in_bridges

BRIDGES = built_in_bridges()

GPU_PRESETS = [name for name, preset in PRESETS.items() if preset.device == "h100"]


def test_cluster_presets_cover_4b_and_8b_on_one_and_two_nodes():
    shapes = {(PRESETS[name].llm, PRESETS[name].nodes) for name in GPU_PRESETS}
    assert shapes == {("4b", 1), ("4b", 2), ("8b", 1), ("8b", 2)}
    assert all(PRESETS[name].gpus_per_node == 8 for name in GPU_PRESETS)


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_layout_is_consistent(name):
    preset = PRESETS[name]
    arch = qwen3_preset(preset.llm)
    tp, pp = preset.tensor_model_parallel_size, preset.pipeline_model_parallel_size
    assert preset.world_size % (tp * pp) == 0
    assert arch.num_key_value_heads % tp == 0 and arch.num_hidden_layers % pp == 0
    for bridge in BRIDGES:
        micro = preset.micro_batch(bridge)
        assert preset.global_batch_size % (micro * preset.data_parallel_size) == 0
        assert preset.gradient_accumulation(bridge) >= pp  # enough micro-batches to fill the pipeline


@pytest.mark.parametrize("name", GPU_PRESETS)
@pytest.mark.parametrize("bridge", BRIDGES)
def test_memory_fits_an_h100_with_headroom(name, bridge):
    estimate = memory_per_gpu(PRESETS[name], bridge)
    assert estimate.total < 0.75 * H100_MEMORY_GIB * GIB, estimate.gib()
    assert estimate.activations > 0 and estimate.frozen_weights > 0


def test_memory_arithmetic_by_hand():
    preset = get_preset("qwen3-8b-1node")
    arch = qwen3_preset("8b")
    mlp = memory_per_gpu(preset, "mlp")
    # frozen bf16 weights over TP=2 on the first stage: everything but the (untied) output layer
    output_layer = arch.vocab_size * arch.hidden_size
    assert mlp.frozen_weights == pytest.approx(2 * (arch.num_parameters() - output_layer) / 2, rel=1e-4)
    # activations: 36 layers x s*b*h*(10 + 24/TP) bytes at micro-batch 2
    assert mlp.activations == pytest.approx(36 * 4096 * 2 * 4096 * (10 + 12))
    assert mlp.logits == pytest.approx(4096 * 2 * arch.vocab_size / 2 * 6)
    flamingo = memory_per_gpu(preset, "flamingo")
    # 2.46B trainable over TP=2 with the distributed optimizer over DP=4: 6 + 12/4 bytes each (+ LoRA)
    module, block, blocks = bridge_trainable_parameters("8b", "esm3-open", "flamingo")
    assert blocks == 9  # one block before every 4th of 36 layers
    assert flamingo.trainable_states == pytest.approx((module + 9 * block) / 2 * 9, rel=0.03)
    full = memory_per_gpu(
        type(preset)(**{**preset.__dict__, "recompute": "full"}),
        "mlp",
    )
    assert full.activations < 0.2 * mlp.activations  # full recomputation keeps layer inputs only


@pytest.mark.parametrize("llm", ["4b", "8b"])
def test_bridge_sizes_match_the_size_report(llm):
    """The counts behind the arithmetic (module + blocks, per component) equal the totals `protein-llm
    bridge-sizes` prints (the CLI sums each bridge's components)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "protein-llm"), "bridge-sizes", "--llm", llm],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    totals = {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in re.finditer(r"^(\w+)\s+total\s+([\d,]+)", result.stdout, flags=re.M)
    }
    counted = {}
    for bridge in BRIDGES:
        module, block, blocks = bridge_trainable_parameters(llm, "esm3-open", bridge)
        counted[bridge] = module + block * blocks
    assert totals == counted
    assert counted["flamingo"] > 10 * counted["mlp"] > 0 and counted["text"] == 0
