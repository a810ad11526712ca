"""The SFT loop on a tiny ProteinLLM (mlp bridge, live tiny ESM C encoder, the real Qwen3 tokenizer, CPU gloo):
gradient accumulation and data parallelism give the gradients of one big batch; validation is the
response-token cross entropy; a stopped run resumes to the same losses (also at another DP size); checkpoints
are atomic and pruned; NaN steps are skipped and stop the run; metrics reach JSONL and TensorBoard."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, trainable_grads, write_records


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("sft_data")
    write_records(folder / "train.jsonl", 24, seed=1)
    write_records(folder / "valid.jsonl", 5, seed=2)
    return str(folder)


# -- gradient accumulation, data parallelism, validation ---------------------------------------------------
def _one_step(rank: int, world_size: int, data_dir: str, micro_batch_size: int) -> dict:
    import torch.nn.functional as F

    from protein_llm_nemo.training.sft import setup_sft
    from protein_llm_nemo.training.step import evaluate, train_step

    session = setup_sft(tiny_config(data_dir, data__micro_batch_size=micro_batch_size))
    parts = session.parts
    data = parts.train_data
    microbatches = data.next_step()
    out = train_step(
        parts.model_chunks,
        parts.optimizer,
        parts.scheduler,
        microbatches,
        parts.forward_step,
        data.schedule_seq_length,
        data.schedule_micro_batch_size,
        clip_grad=0.0,
    )
    result = {"loss": out.loss, "tokens": out.loss_tokens, "grads": trainable_grads(session.model)}
    result["total_norm"], result["group_norms"] = out.grad_norm, out.group_grad_norms
    # The reference's scaling (defect 3): the mean of per-micro-batch means.
    per_microbatch = [
        evaluate(
            parts.model_chunks,
            [mb],
            parts.forward_step,
            data.schedule_seq_length,
            data.schedule_micro_batch_size,
        )
        for mb in microbatches
    ]
    result["mean_of_means"] = sum(loss for loss, _ in per_microbatch) / len(per_microbatch)
    # Validation loss two ways: the loop's, and torch's cross entropy on gathered logits.
    valid = parts.valid_data.all_microbatches()
    result["valid_loss"], _ = evaluate(
        parts.model_chunks, valid, parts.forward_step, parts.valid_data.schedule_seq_length, 1
    )
    total, count = 0.0, 0
    with torch.no_grad():
        session.model.eval()
        for mb in valid:
            logits = session.model(**mb.model_inputs(targets=False))
            keep = mb.labels != -100
            total += float(F.cross_entropy(logits[keep], mb.labels[keep], reduction="sum"))
            count += int(keep.sum())
    result["valid_torch"] = total / count
    return result if rank == 0 else {}


@pytest.fixture(scope="module")
def single_rank(data_dir):
    return {mbs: run_distributed(_one_step, world_size=1, args=(data_dir, mbs))[0] for mbs in (1, 4)}


def _assert_same_grads(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(torch.from_numpy(a[name]), torch.from_numpy(b[name]), rtol=2e-5, atol=1e-8)


def test_gradient_accumulation_equals_one_big_micro_batch(single_rank):
    ga4, ga1 = single_rank[1], single_rank[4]
    assert ga4["tokens"] == ga1["tokens"] > 0
    assert abs(ga4["loss"] - ga1["loss"]) < 1e-5
    _assert_same_grads(ga4["grads"], ga1["grads"])
    # The micro-batches hold different numbers of response tokens: a per-micro-batch mean would differ.
    assert abs(ga4["mean_of_means"] - ga4["loss"]) > 1e-4


# With dropout on (as a run trains: bridge dropout 0.1) the equality above is not exact: the micro-batches draw
# other dropout masks than one big micro-batch. What holds is equality in distribution: measured here at fixed
# weights (lr 0) and a fixed global batch over several dropout seeds.
DROPOUT_SEEDS = list(range(100, 116))


def _dropout_losses(rank: int, world_size: int, data_dir: str, seeds: list[int]) -> dict[int, list[float]]:
    from protein_llm_nemo.runtime.seeding import seed_everything
    from protein_llm_nemo.training.sft import setup_sft
    from protein_llm_nemo.training.step import train_step

    out = {}
    for micro_batch_size in (1, 4):
        config = tiny_config(
            data_dir,
            dropout=0.1,
            data__micro_batch_size=micro_batch_size,
            optimizer__lr=0.0,  # every step sees the same weights: only the dropout draws change
            optimizer__bridge_lr=0.0,
        )
        parts = setup_sft(config).parts
        microbatches = parts.train_data.next_step()
        out[micro_batch_size] = []
        for seed in seeds:
            seed_everything(seed)
            step = train_step(
                parts.model_chunks,
                parts.optimizer,
                parts.scheduler,
                microbatches,
                parts.forward_step,
                parts.train_data.schedule_seq_length,
                parts.train_data.schedule_micro_batch_size,
                clip_grad=0.0,
            )
            out[micro_batch_size].append(step.loss)
    return out


def test_with_dropout_gradient_accumulation_agrees_within_the_dropout_noise(data_dir):
    losses = run_distributed(_dropout_losses, world_size=1, args=(data_dir, DROPOUT_SEEDS))[0]
    ga4, ga1 = losses[1], losses[4]
    # the spread of one step's loss over dropout draws, pooled over both settings
    noise = math.sqrt((statistics.variance(ga4) + statistics.variance(ga1)) / 2)
    gaps = [abs(a - b) for a, b in zip(ga4, ga1, strict=True)]
    assert 0 < noise < 1e-3 * statistics.mean(ga1)
    assert max(gaps) > 1e-5  # not exact: other micro-batches, other dropout masks
    # a run against the other at the same seed: within 4 standard deviations of a difference of two draws
    assert max(gaps) < 4 * math.sqrt(2) * noise
    # the same expected loss: the means over the seeds agree within 4 standard errors
    assert abs(statistics.mean(ga4) - statistics.mean(ga1)) < 4 * noise * math.sqrt(2 / len(DROPOUT_SEEDS))


def test_group_grad_norms_add_up_to_the_total(single_rank):
    result = single_rank[1]
    assert set(result["group_norms"]) == {"bridge", "protein_tokens"}  # LLM frozen, no LoRA
    combined = math.sqrt(sum(v * v for v in result["group_norms"].values()))
    assert abs(combined - result["total_norm"]) < 1e-5 * result["total_norm"]


def test_validation_loss_is_response_token_cross_entropy(single_rank):
    result = single_rank[4]
    assert abs(result["valid_loss"] - result["valid_torch"]) < 1e-4
    assert 5.0 < result["valid_loss"] < 20.0


def test_two_data_parallel_ranks_equal_one(data_dir, single_rank):
    dp2 = run_distributed(_one_step, world_size=2, args=(data_dir, 1))[0]
    assert dp2["tokens"] == single_rank[1]["tokens"]
    assert abs(dp2["loss"] - single_rank[1]["loss"]) < 1e-5
    _assert_same_grads(dp2["grads"], single_rank[1]["grads"])


# -- resume, checkpoints, metrics ------------------------------------------------------------------------
def _run(rank: int, world_size: int, data_dir: str, changes: dict, dropout: float = 0.1) -> dict:
    from protein_llm_nemo.training.sft import run_sft

    result = run_sft(tiny_config(data_dir, dropout=dropout, **changes))
    return {
        "losses": result.losses,
        "start": result.start_step,
        "steps": result.steps,
        "valid": result.valid_losses,
    }


def _resume_then_break_a_save(rank: int, world_size: int, data_dir: str, ckpt: str, logs: str) -> dict:
    from protein_llm_nemo.training.checkpoint import list_checkpoints, save_checkpoint
    from protein_llm_nemo.training.sft import setup_sft

    session = setup_sft(
        tiny_config(
            data_dir, dropout=0.1, checkpoint__dir=ckpt, checkpoint__keep_last=1, logging__log_dir=logs
        )
    )
    start = session.start_step
    result = session.run()
    before = [p.name for _, p in list_checkpoints(ckpt)]
    latest = (Path(ckpt) / "latest").read_text()
    parts = session.parts
    error = None
    try:  # a save that fails half-way (the common state cannot be pickled)
        save_checkpoint(ckpt, 99, parts.model_chunks, parts.optimizer, parts.scheduler, {"bad": lambda: 0})
    except Exception as exc:
        error = type(exc).__name__
    return {
        "start": start,
        "losses": result.losses,
        "before": before,
        "after": [p.name for _, p in list_checkpoints(ckpt)],
        "leftovers": sorted(p.name for p in Path(ckpt).iterdir() if p.name.startswith(".")),
        "latest_before": latest,
        "latest_after": (Path(ckpt) / "latest").read_text(),
        "error": error,
    }


def test_stopped_run_resumes_to_the_same_losses(data_dir, tmp_path):
    ckpt, logs = str(tmp_path / "ckpt"), str(tmp_path / "logs")
    full = run_distributed(_run, world_size=1, args=(data_dir, {}))[0]
    first = run_distributed(
        _run,
        world_size=1,
        args=(data_dir, {"checkpoint__dir": ckpt, "train__stop_at_step": 2, "logging__log_dir": logs}),
    )[0]
    assert first["steps"] == 2 and (Path(ckpt) / "step_0000002" / "train_state.json").is_file()
    second = run_distributed(_resume_then_break_a_save, world_size=1, args=(data_dir, ckpt, logs))[0]
    assert second["start"] == 2
    resumed = first["losses"] + second["losses"]
    assert len(resumed) == len(full["losses"]) == 4
    assert max(abs(a - b) for a, b in zip(resumed, full["losses"], strict=True)) <= 1e-6
    # keep_last=1: only the newest checkpoint is left; the failed save left no trace and moved nothing.
    assert second["before"] == second["after"] == ["step_0000004"]
    assert second["error"] is not None and second["leftovers"] == []
    assert second["latest_before"] == second["latest_after"] == "step_0000004\n"
    # Metrics of both halves in one JSONL log; TensorBoard events written.
    records = [json.loads(line) for line in (Path(logs) / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["grad_norm/bridge"] > 0 and r["throughput/tokens_per_s"] > 0 for r in train)
    assert all("lr/main" in r and "lr/bridge" in r and r["memory/peak_bytes"] > 0 for r in train)
    assert any("valid/loss" in r for r in records)
    assert list((Path(logs) / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_at_another_data_parallel_size(data_dir, tmp_path):
    # Without dropout: DP ranks draw the same dropout stream for different micro-batches, so with dropout
    # a DP=2 trajectory is a different (equally valid) one.
    ckpt = str(tmp_path / "ckpt")
    full = run_distributed(_run, world_size=1, args=(data_dir, {}, 0.0))[0]
    stop = {"checkpoint__dir": ckpt, "train__stop_at_step": 2}
    first = run_distributed(_run, world_size=2, args=(data_dir, stop, 0.0))[0]
    resumed = run_distributed(_run, world_size=1, args=(data_dir, {"checkpoint__dir": ckpt}, 0.0))[0]
    for a, b in zip(first["losses"], full["losses"][:2], strict=True):
        assert abs(a - b) < 1e-5
    assert resumed["start"] == 2 and len(resumed["losses"]) == 2
    for a, b in zip(resumed["losses"], full["losses"][2:], strict=True):
        assert abs(a - b) < 1e-4


# -- NaN guard ---------------------------------------------------------------------------------------------
def _poisoned(rank: int, world_size: int, data_dir: str) -> dict:
    from protein_llm_nemo.training.sft import setup_sft

    session = setup_sft(tiny_config(data_dir, train__nan_guard_max_consecutive=2, train__max_steps=5))
    model = session.model
    with torch.no_grad():
        model.protein_token_embeddings.weight[0, 0] = float("nan")  # a corrupted weight
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = session.run()
    unchanged = all(
        torch.equal(p.nan_to_num(), before[n].nan_to_num())
        for n, p in model.named_parameters()
        if p.requires_grad
    )
    return {
        "stopped": result.stopped_early,
        "skipped": result.skipped_steps,
        "steps": result.steps,
        "unchanged": unchanged,
        "scheduler_steps": session.parts.scheduler.num_steps,
    }


def test_nan_steps_are_skipped_and_stop_the_run(data_dir):
    result = run_distributed(_poisoned, world_size=1, args=(data_dir,))[0]
    assert result == {"stopped": True, "skipped": 2, "steps": 2, "unchanged": True, "scheduler_steps": 0}
