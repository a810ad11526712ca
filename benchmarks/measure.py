"""Shared pieces of the benchmark scripts: the small Qwen3 shape they compare on, a synchronised timer that
also reads process CPU time, a per-side summary (effective tokens/s, pad fraction, MFU on GPU), a one-step
profile, and `/proc/self/status` readings for peak resident memory."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

__all__ = ["SMALL", "proc_status_mb", "profile", "summary", "sync", "timed"]

# The small Qwen3 of the CPU benchmarks (`Qwen3Arch(**SMALL)`): h256, 4 layers, the real 151,936-token vocabulary.
SMALL = dict(
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    tie_word_embeddings=True,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    tick, cpu = time.perf_counter(), time.process_time()
    real, slots, loss = fn()
    sync(device)
    return time.perf_counter() - tick, real, slots, loss, time.process_time() - cpu


def summary(name, records, parameters, device, peak_tflops):
    times = [r[0] for r in records]
    real = sum(r[1] for r in records)
    slots = sum(r[2] for r in records)
    total = sum(times)
    out = {
        "side": name,
        "steps": len(records),
        "median_step_s": round(statistics.median(times), 4),
        "step_s": [round(t, 3) for t in times],
        "effective_tokens": real,
        "padded_token_slots": slots,
        "pad_fraction": round(1 - real / slots, 4),
        "effective_tokens_per_s": round(real / total, 1),
        # median over steps of each step's tokens/s: robust to a noisy neighbour on shared cores
        "effective_tokens_per_s_median": round(statistics.median(r[1] / r[0] for r in records), 1),
        "last_loss": round(records[-1][3], 4),
        # process CPU seconds (all threads): less sensitive than wall time to other jobs on shared cores
        "cpu_s_per_step": round(sum(r[4] for r in records) / len(records), 3),
        "effective_tokens_per_cpu_s": round(real / sum(r[4] for r in records), 1),
    }
    if device.type == "cuda":
        tps = out["effective_tokens_per_s"]
        out["tokens_per_s_per_gpu"] = tps
        out["mfu"] = round(6 * parameters * tps / (peak_tflops * 1e12), 4)
    return out


def profile(fn, name: str, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=activities) as prof:
        fn()
    print(f"--- profile of one {name} step (self time) ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48))


def proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)
