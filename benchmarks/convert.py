"""Conversion cost: HF -> Megatron import and Megatron -> HF export of a Qwen3-0.6B-shaped checkpoint on CPU.

Prints wall time and peak resident memory (PSS summed over the process tree, sampled every 50 ms) of each step
as a ratio to the checkpoint's size, beside a baseline: the usual one-shot converter script, which
loads the whole HF state dict, builds every fused megatron tensor and `torch.save`s the result.
Target: peak memory <= 1.5x the checkpoint size.

    python benchmarks/convert.py                 # 0.6b, bf16 (about 1.2 GB on disk)
    python benchmarks/convert.py --preset tiny   # seconds, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]


def write_random_checkpoint(preset: str, folder: Path, dtype: torch.dtype) -> int:
    """A random HF Qwen3 checkpoint streamed tensor by tensor (no model object is built)."""
    from protein_llm_nemo.conversion.hf_io import HFCheckpointWriter
    from protein_llm_nemo.conversion.qwen3_export import export_plan
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    arch = qwen3_preset(preset)
    plan = export_plan(arch, dtype)
    writer = HFCheckpointWriter(folder, plan)
    generator = torch.Generator().manual_seed(0)
    for item in plan:
        writer.add(item.name, (torch.randn(item.shape, generator=generator) * 0.02).to(dtype))
    writer.close()
    arch.to_hf_config(torch_dtype=dtype).save_pretrained(folder)
    return sum(item.nbytes for item in plan)


def naive_import(hf: Path, out: Path) -> None:
    """The baseline: a whole-state-dict converter (same mappings, no streaming, no sharding)."""
    from safetensors.torch import load_file

    from protein_llm_nemo.conversion.mappings import qwen3_mappings
    from protein_llm_nemo.conversion.qwen3_import import read_hf_arch

    state = {}
    for file in sorted(hf.glob("*.safetensors")):
        state.update(load_file(file))
    arch = read_hf_arch(hf)
    megatron_state = {m.megatron: m.to_megatron(state, arch) for m in qwen3_mappings(arch)}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(megatron_state, out / "model.pt")


def run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident memory (bytes, PSS) summed over the process tree of `command`."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                # PSS splits shared pages between the processes that map them (megatron's checkpoint
                # writer forks workers that share the parent's tensors), so the sum is not inflated.
                peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return time.perf_counter() - start, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="0.6b")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--naive-import", nargs=2, metavar=("HF", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_import:
        naive_import(Path(args.naive_import[0]), Path(args.naive_import[1]))
        return
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="convert-bench-"))
    hf, megatron, exported = workdir / "hf", workdir / "megatron", workdir / "hf_export"
    size = write_random_checkpoint(args.preset, hf, dtype)
    python = sys.executable
    steps = {
        "baseline: whole-state-dict converter": [python, "benchmarks/convert.py", "--naive-import", str(hf), str(workdir / "naive")],
        "import HF -> Megatron": [python, "conversion/import_hf.py", "--hf-model", str(hf), "--out", str(megatron), "--overwrite"],
        "export Megatron -> HF": [python, "conversion/export_hf.py", "--checkpoint", str(megatron), "--out", str(exported), "--overwrite"],
    }  # fmt: skip
    results = {}
    print(f"checkpoint: Qwen3-{args.preset} shape, {args.dtype}, {size / 1e9:.3f} GB on disk")
    print(f"{'step':42s} {'time s':>8s} {'peak mem GB':>12s} {'mem / size':>11s}")
    for name, command in steps.items():
        seconds, peak = run_measured(command)
        results[name] = {
            "seconds": round(seconds, 2),
            "peak_rss_gb": round(peak / 1e9, 3),
            "ratio": round(peak / size, 3),
        }
        print(f"{name:42s} {seconds:8.1f} {peak / 1e9:12.3f} {peak / size:11.2f}")
    baseline = results["baseline: whole-state-dict converter"]
    for name in ("import HF -> Megatron", "export Megatron -> HF"):
        print(
            f"{name}: peak memory {results[name]['peak_rss_gb'] / baseline['peak_rss_gb']:.2f}x, "
            f"time {results[name]['seconds'] / baseline['seconds']:.2f}x the whole-state-dict converter"
        )
    verdict = all(results[n]["ratio"] <= 1.5 for n in ("import HF -> Megatron", "export Megatron -> HF"))
    print(json.dumps({"preset": args.preset, "checkpoint_gb": round(size / 1e9, 3), "target_ratio": 1.5,
                      "meets_target": verdict, "steps": results}))  # fmt: skip


if __name__ == "__main__":
    main()
