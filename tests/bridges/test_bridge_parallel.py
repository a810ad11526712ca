"""Every bridge at TP=2 and at PP=2 (2-process gloo) against the TP=1 / PP=1 model with the same weights.

One reference run builds each bridge's tiny ProteinLLM (LLM frozen except for `text`, flamingo gates opened
to 0.5 so its cross-attention path matters), then the layout runs load those weights, run forward and
forward-backward through megatron's pipeline schedule and report logit / loss / gradient differences.
"""

from __future__ import annotations

import pytest

from protein_llm_nemo.models.parameter_groups import parameter_group
from protein_llm_nemo.testing.layouts import layout_run, reference_run
from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.tiny import built_in_bridges

BRIDGES = built_in_bridges()
TOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    (result,) = run_distributed(reference_run, world_size=1, args=(BRIDGES,))
    return result


@pytest.fixture(scope="module")
def tp2(reference):
    return run_distributed(layout_run, world_size=2, args=(reference, 2, 1))


@pytest.fixture(scope="module")
def pp2(reference):
    return run_distributed(layout_run, world_size=2, args=(reference, 1, 2))


def _group_norms(grads: dict) -> dict[str, float]:
    norms: dict[str, float] = {}
    for name, grad in grads.items():
        group = parameter_group(name)
        norms[group] = norms.get(group, 0.0) + float((grad.astype("float64") ** 2).sum())
    return norms


@pytest.mark.parametrize("bridge", BRIDGES)
def test_reference_gradients_reach_every_trainable_group(reference, bridge):
    ref = reference[bridge]
    assert set(ref["grads"]) == set(ref["trainable"])
    norms = _group_norms(ref["grads"])
    expected = {
        "text": {"language_model"},
        "mlp": {"bridge", "protein_tokens"},
        "perceiver": {"bridge", "protein_tokens"},
        "flamingo": {"bridge", "gates", "protein_tokens"},
    }[bridge]
    assert set(norms) == expected
    assert all(norm > 0 for norm in norms.values()), norms


@pytest.mark.parametrize("bridge", BRIDGES)
def test_tensor_parallel_2_matches_single_rank(reference, tp2, bridge):
    for rank, result in enumerate(tp2):
        r = result[bridge]
        assert r["logits_diff"] is not None and r["logits_diff"] < TOL, (rank, r["logits_diff"])
        assert r["loss_diff"] < TOL
        assert not r["missing_grads"]
        assert set(r["grad_diffs"]) == set(reference[bridge]["trainable"])
        worst = max(r["grad_diffs"].items(), key=lambda item: item[1])
        assert worst[1] < TOL, (rank, worst)
    if bridge != "text":  # the bridge's column/row-parallel weights are really split
        full = sum(v.size for k, v in reference[bridge]["params"].items() if k.startswith("bridge."))
        assert tp2[0][bridge]["bridge_parameters"] < full


@pytest.mark.parametrize("bridge", BRIDGES)
def test_pipeline_parallel_2_matches_single_stage(reference, pp2, bridge):
    first, last = pp2
    assert (first[bridge]["stage"], last[bridge]["stage"]) == (0, 1)
    assert first[bridge]["logits_diff"] is None
    assert last[bridge]["logits_diff"] < TOL and last[bridge]["loss_diff"] < TOL
    seen = set(first[bridge]["grad_diffs"]) | set(last[bridge]["grad_diffs"])
    assert seen == set(reference[bridge]["trainable"])
    for result in pp2:
        assert not result[bridge]["missing_grads"]
        assert all(diff < TOL for diff in result[bridge]["grad_diffs"].values()), result[bridge]["grad_diffs"]
    if bridge == "flamingo":
        # Both stages hold the resampler (each feeds its own gated blocks); summed grads match PP=1.
        assert first[bridge]["bridge_parameters"] == last[bridge]["bridge_parameters"] > 0
        # the later stage's replica is marked `shared` so megatron's grad-norm counts it once
        assert (first[bridge]["bridge_shared"], last[bridge]["bridge_shared"]) == (False, True)
    elif bridge != "text":
        assert first[bridge]["bridge_parameters"] > 0 and last[bridge]["bridge_parameters"] == 0
