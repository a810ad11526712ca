"""GRPO against a second implementation and across layouts.

TRL: on the same prompts, completions, advantages and old / reference / generation log-probs, our loss and the
gradient of every trainable weight (full fine-tuning: the LLM, and the mlp bridge and protein-token rows)
equal TRL `GRPOTrainer._compute_loss` on the HF export, for loss_type grpo / dapo / dr_grpo (our
seq-mean-token-mean / token-mean / seq-mean-token-sum-norm), beta 0 and > 0, clip-higher (eps_high 0.28 !=
eps_low 0.2), with and without the importance-sampling weight; text bridge (plain Qwen3) and mlp bridge.

Layouts: two GRPO steps on fixed groups (loss, grad norm, KL, every gradient, the updated weights) at TP=2,
PP=2 and DP=2 equal TP=1/PP=1/DP=1 with one micro-batch, and so do 2 and 4 micro-batches of accumulation.
"""

from __future__ import annotations

import numpy as np
import pytest

from protein_llm_nemo.testing.grpo import TRL_LOSS_AGG, TrlCase, megatron_trl_cases, trl_cases
from protein_llm_nemo.testing.grpo_layouts import grpo_layout_run
from protein_llm_nemo.testing.multiprocess import run_distributed

CASES = [TrlCase(loss_type, beta) for loss_type in TRL_LOSS_AGG for beta in (0.0, 0.04)] + [
    TrlCase("grpo", 0.0, importance_sampling=True),
    TrlCase("dapo", 0.04, importance_sampling=True),
]
LOSS_TOLERANCE = 1e-6
GRAD_TOLERANCE = 1e-6  # fp32 noise: gradients are of order 0.1-0.4 here


@pytest.fixture(scope="module", params=["text", "mlp"])
def trl_comparison(request, tmp_path_factory):
    import trl  # noqa: F401  (a dev dependency: a missing trl is an error, not a skip)

    bridge = request.param
    root = tmp_path_factory.mktemp(f"trl_{bridge}")
    folder = str(root / "hf")
    (ours,) = run_distributed(megatron_trl_cases, world_size=1, args=(bridge, folder, CASES))
    (theirs,) = run_distributed(
        trl_cases, world_size=1, args=(bridge, folder, ours["trl_inputs"], CASES, str(root / "trl"))
    )
    return bridge, ours, theirs


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_loss_and_every_gradient_equal_trl(trl_comparison, case):
    bridge, ours, theirs = trl_comparison
    mine, trl = ours["cases"][case.name], theirs[case.name]
    assert set(mine["grads"]) == set(trl["grads"])  # the same trainable weights, by HF name
    if bridge == "mlp":
        assert (
            any(n.startswith("bridge.") for n in mine["grads"])
            and "protein_token_embeddings.weight" in trl["grads"]
        )
    loss_diff = abs(mine["loss"] - trl["loss"])
    grad_diff = max(float(np.abs(mine["grads"][n] - trl["grads"][n]).max()) for n in mine["grads"])
    scale = max(float(np.abs(g).max()) for g in trl["grads"].values())
    print(
        f"{bridge} {case.name}: loss {mine['loss']:.6f} |diff| {loss_diff:.1e}; "
        f"max |grad diff| {grad_diff:.1e} (largest gradient {scale:.2f})"
    )
    assert loss_diff <= LOSS_TOLERANCE
    assert grad_diff <= GRAD_TOLERANCE
    assert scale > 1e-2  # the gradients compared are not all ~0
    assert mine["clip_fraction"] > 0.1  # the old policy is far enough for the clip range to act


def test_the_trl_cases_differ_from_each_other(trl_comparison):
    """Control: the aggregation modes, the KL and the importance weight each change the gradient by far more
    than the tolerance, so equal gradients are not a coincidence of the setup."""
    _, ours, _ = trl_comparison
    names = [case.name for case in CASES]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ga, gb = ours["cases"][a]["grads"], ours["cases"][b]["grads"]
            assert max(float(np.abs(ga[n] - gb[n]).max()) for n in ga) > 100 * GRAD_TOLERANCE, (a, b)


# -- layouts ------------------------------------------------------------------------------------------------
MODES = list(TRL_LOSS_AGG.values())
SAMPLES = 8  # 2 prompts x 4 completions per step
# the difference a TP/PP/DP layout or accumulation may make: fp32 reduction order
LAYOUT_TOLERANCE = {"loss": 1e-6, "grad_norm": 1e-5, "kl": 1e-6, "grads": 1e-6, "weights": 1e-6}


def _reference_steps(reference: dict, micro_batch_size: int) -> dict:
    return {"init": reference["init"], **{mode: reference[mode][micro_batch_size] for mode in MODES}}


@pytest.fixture(scope="module")
def layout_reference():
    """TP=1, PP=1, DP=1: one micro-batch of all samples, and 2 and 4 micro-batches of accumulation."""
    (reference,) = run_distributed(grpo_layout_run, world_size=1, args=(1, 1, [SAMPLES, 4, 2], MODES))
    return reference


@pytest.mark.parametrize("micro_batch_size", [4, 2])
def test_gradient_accumulation_equals_one_micro_batch(layout_reference, micro_batch_size):
    for mode in MODES:
        single, accumulated = layout_reference[mode][SAMPLES], layout_reference[mode][micro_batch_size]
        for step, (a, b) in enumerate(zip(single, accumulated, strict=True)):
            diffs = {k: abs(a[k] - b[k]) for k in ("loss", "grad_norm", "kl")}
            for k in ("grads", "weights"):
                diffs[k] = max(float(np.abs(a[k][n] - b[k][n]).max()) for n in a[k])
            print(
                f"accumulation {SAMPLES // micro_batch_size} x {micro_batch_size} {mode} step {step}: {diffs}"
            )
            assert all(diffs[k] <= LAYOUT_TOLERANCE[k] for k in diffs), (mode, step, diffs)


def test_the_layout_reference_trains(layout_reference):
    """Controls: every step moves the weights and has a gradient, the second step has a KL to the reference,
    and the aggregation modes give different gradients."""
    for mode in MODES:
        first, second = layout_reference[mode][SAMPLES]
        assert first["grad_norm"] > 1e-2 and second["grad_norm"] > 1e-2
        assert first["kl"] == pytest.approx(0.0, abs=1e-7) and second["kl"] > 1e-6
        moved = max(
            float(np.abs(second["weights"][n] - layout_reference["init"][n]).max()) for n in second["weights"]
        )
        assert moved > 1e-3
    grads = [layout_reference[mode][SAMPLES][0]["grads"] for mode in MODES]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert max(float(np.abs(grads[a][n] - grads[b][n]).max()) for n in grads[a]) > 1e-3


@pytest.mark.parametrize(
    "tp,pp,micro_batch_size", [(2, 1, SAMPLES), (1, 2, 4), (1, 1, 4)], ids=["tp2", "pp2", "dp2"]
)
def test_layout_equals_tp1_pp1_dp1(layout_reference, tp, pp, micro_batch_size):
    reference = _reference_steps(layout_reference, SAMPLES)
    ranks = run_distributed(
        grpo_layout_run, world_size=2, args=(tp, pp, [micro_batch_size], MODES, reference)
    )
    for rank, result in enumerate(ranks):
        assert result["data_parallel_size"] == 2 // (tp * pp)
        for mode in MODES:
            for step, diffs in enumerate(result[mode][micro_batch_size]):
                print(f"tp{tp} pp{pp} dp{2 // (tp * pp)} rank {rank} {mode} step {step}: {diffs}")
                assert diffs["compared_grads"] > 0
                assert all(diffs[k] <= LAYOUT_TOLERANCE[k] for k in LAYOUT_TOLERANCE), (mode, step, diffs)
