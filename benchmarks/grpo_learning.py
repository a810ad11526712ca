"""Does GRPO learn, and where does its gradient go? (`protein_llm_nemo/testing/grpo_learning.py` holds the
task, the configs and the SFT -> GRPO run.)

Task: "Is the GRAVY hydropathy score of this protein positive? Answer yes or no." (reward `binary_property`,
truth in `meta["answer"]`), on sequences drawn from Swiss-Prot's composition tilted towards hydrophobic or
polar residues, |GRAVY| >= 0.5, balanced labels. The policy is the tiny Qwen3 (random; its own weights and LoRA
rank 8 on every linear including the output layer train) with the `text` or `mlp` bridge (live random tiny ESM
C encoder), SFT-warmed for 30 steps of 8 records so it answers "Yes." / "No." (not yet reliably), then trained
by GRPO.

Runs, per bridge and seed: `learn` (the registered reward) and `control` (a reward with no variance: every
advantage is exactly 0), both from the same SFT checkpoint; then, for the mlp bridge + LoRA, the gradient
routing runs: `standard` (the learn run), `two-stage` (`routing.freeze_bridge_steps` = half the steps) and
`balanced` (`routing.balance`). Printed: the greedy validation reward before and after GRPO, and the
per-group gradient norms before routing and clipping (`grad_norm/before`), averaged over the steps that
trained (a step whose groups all had zero reward variance has no gradient at all). The validation reward is
measured greedily and, with `--valid-samples N`, as the mean over N sampled completions per prompt (the
expected reward of the sampling policy GRPO optimizes).

    .venv/bin/python benchmarks/grpo_learning.py                          # everything, seed 0
    .venv/bin/python benchmarks/grpo_learning.py --seeds 0 1 --bridges mlp --no-routing
    .venv/bin/python benchmarks/grpo_learning.py --json results.json      # also every step's metrics

The runs are independent: on a machine with spare cores, split them over processes (`--runs`, each with its
own `--work-dir` so that no two processes write one SFT checkpoint) and print the tables together with
`--merge a.json b.json ...`.

Measured figures and the command that produced them: docs/grpo.md, section "Learning and routing".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = ("language_model", "lora", "bridge", "protein_tokens")
RUNS = ("learn", "control", "two-stage", "balanced")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def trained_steps(run: dict[str, Any], start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """The steps in [start, stop) whose gradient was not zero (some group had reward variance)."""
    steps = run["steps"][start:stop]
    return [s for s in steps if any(v > 0 for v in s["grad_before"].values())]


def group_norms(run: dict[str, Any], key: str = "grad_before", start: int = 0, stop: int | None = None):
    """Mean per-group gradient norm over the trained steps of [start, stop), plus LoRA's output-layer part."""
    steps = trained_steps(run, start, stop)
    out = {g: _mean([s[key].get(g, 0.0) for s in steps]) for g in GROUPS}
    out["lora_output"] = _mean([s[key].get("lora", 0.0) * s["lora_output_share"] for s in steps])
    out["both"] = _mean([float(s[key].get("lora", 0) > 0 and s[key].get("bridge", 0) > 0) for s in steps])
    out["steps"] = len(steps)
    return out


def learning_row(name: str, run: dict[str, Any]) -> str:
    setup, before, after = run["setup"], run["valid_before"], run["valid_after"]
    rollout = [s["reward"] for s in run["steps"]]
    head, tail = _mean(rollout[:5]), _mean(rollout[-5:])
    sampled = (
        f"{before['sampled_reward']:.3f} -> {after['sampled_reward']:.3f} "
        f"({after['sampled_reward'] - before['sampled_reward']:+.3f})"
        if "sampled_reward" in before
        else "-"
    )
    return (
        f"| {setup['bridge']} | {setup['seed']} | {name} | {before['reward']:.3f} | {after['reward']:.3f} | "
        f"{after['reward'] - before['reward']:+.3f} | {sampled} | {before['accuracy']:.2f} -> {after['accuracy']:.2f} | "
        f"{before['yes_share']:.2f} -> {after['yes_share']:.2f} | {head:.3f} -> {tail:.3f} | {run['sft_s']:.0f} | {run['grpo_s']:.0f} |"
    )


def routing_rows(name: str, run: dict[str, Any], split: int | None) -> list[str]:
    phases = [(name, 0, None)]
    if split:
        phases = [
            (f"{name}: steps 1-{split} (bridge frozen)", 0, split),
            (f"{name}: steps {split + 1}-", split, None),
        ]
    rows = []
    valid_before, valid_after = run["valid_before"], run["valid_after"]
    valid = f"{valid_before['reward']:.3f} -> {valid_after['reward']:.3f}"
    if "sampled_reward" in valid_before:
        valid += f" (sampled {valid_before['sampled_reward']:.3f} -> {valid_after['sampled_reward']:.3f})"
    for label, start, stop in phases:
        before = group_norms(run, "grad_before", start, stop)
        after = group_norms(run, "grad_after", start, stop)
        rows.append(
            f"| {label} | {before['language_model']:.3g} | {before['lora']:.3g} ({before['lora_output']:.3g}) | "
            f"{before['bridge']:.3g} | {before['protein_tokens']:.3g} | {before['bridge'] / before['lora']:.3g} | "
            f"{before['both']:.2f} | {after['language_model']:.3g} / {after['lora']:.3g} / {after['bridge']:.3g} | "
            f"{before['steps']} | {valid} |"
        )
    return rows


def print_tables(runs: dict[str, dict[str, Any]]) -> None:
    first = next(iter(runs.values()))["setup"]
    print(f"\nGRPO learning: {first['sft_steps']} SFT steps, {first['grpo_steps']} GRPO steps of "
          f"{first['num_prompts_per_step']} prompts x {first['num_generations']} samples (lr {first['lr']:g}, "
          f"bridge lr {first['bridge_lr']:g}), {first['n_valid']} validation prompts (greedy; sampled: "
          f"{first['valid_samples']} per prompt)\n")  # fmt: skip
    print("| bridge | seed | run | greedy valid reward before | after | change | sampled valid reward | "
          "greedy accuracy | yes share | rollout reward (first 5 -> last 5 steps) | SFT s | GRPO s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, result in runs.items():
        if name.endswith(("/learn", "/control")):
            print(learning_row(name.rsplit("/", 1)[1], result))
    routing = [(label, key) for label, key in (("standard", "learn"), ("two-stage", "two-stage"),
               ("balanced", "balanced")) if any(n.startswith("mlp/") and n.endswith(f"/{key}") for n in runs)]  # fmt: skip
    if not routing:
        return
    print("\nGradient routing, mlp bridge: mean gradient norm per group before routing and clipping, over "
          "the steps that trained\n")  # fmt: skip
    print("| run | language model | LoRA (its output layer) | bridge | protein tokens | bridge / LoRA | "
          "steps with LoRA and bridge > 0 | after routing + clip: language model / LoRA / bridge | steps | "
          "greedy valid reward |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, key in routing:
        for name, result in runs.items():
            if name.startswith("mlp/") and name.endswith(f"/{key}"):
                split = result["setup"]["freeze_bridge_steps"] or None
                for row in routing_rows(f"{label} (seed {result['setup']['seed']})", result, split):
                    print(row)


def main() -> None:
    from protein_llm_nemo.testing.grpo_learning import LearningSetup, run_learning

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bridges", nargs="+", default=["text", "mlp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS,
                        help="two-stage and balanced run on the mlp bridge only")  # fmt: skip
    parser.add_argument("--sft-steps", type=int, default=LearningSetup.sft_steps)
    parser.add_argument("--grpo-steps", type=int, default=LearningSetup.grpo_steps)
    parser.add_argument("--lr", type=float, default=LearningSetup.lr)
    parser.add_argument("--bridge-lr", type=float, default=LearningSetup.bridge_lr)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--valid-samples", type=int, default=LearningSetup.valid_samples,
                        help="completions per validation prompt for the sampled validation reward (0: greedy only)")  # fmt: skip
    parser.add_argument("--no-routing", action="store_true", help="skip the two-stage and balanced runs")
    parser.add_argument("--work-dir", default=None, help="SFT checkpoints and records (default: a temp dir)")
    parser.add_argument("--json", default=None, help="write every run's metrics here")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="run nothing: print the tables of these --json files (e.g. runs split over processes)")  # fmt: skip
    args = parser.parse_args()
    if args.merge:
        runs = {}
        for path in args.merge:
            runs.update(json.loads(Path(path).read_text()))
        print_tables(runs)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="grpo-learning-"))
    base = LearningSetup(
        sft_steps=args.sft_steps,
        grpo_steps=args.grpo_steps,
        lr=args.lr,
        bridge_lr=args.bridge_lr,
        eval_every=args.eval_every,
        valid_samples=args.valid_samples,
    )
    runs: dict[str, dict[str, Any]] = {}
    tick = time.perf_counter()

    def run(name: str, setup: LearningSetup) -> dict[str, Any]:
        def log(line: str) -> None:
            print(f"[{time.perf_counter() - tick:6.0f}s] {name} {line}", file=sys.stderr, flush=True)

        log("...")
        runs[name] = result = run_learning(setup, work, log)
        before, after = result["valid_before"]["reward"], result["valid_after"]["reward"]
        log(f"valid reward {before:.3f} -> {after:.3f} (curve {result['valid_curve']})")
        if args.json:  # after every run: a partial result survives an interrupted benchmark
            Path(args.json).write_text(json.dumps(runs, indent=1, default=str))
        return result

    split = max(1, args.grpo_steps // 2)
    for seed in args.seeds:
        for bridge in args.bridges:
            setup = dataclasses.replace(base, bridge=bridge, seed=seed)
            if "learn" in args.runs:
                run(f"{bridge}/{seed}/learn", setup)
            if "control" in args.runs:
                run(f"{bridge}/{seed}/control", dataclasses.replace(setup, control=True))
        if not args.no_routing and "mlp" in args.bridges:
            mlp = dataclasses.replace(base, bridge="mlp", seed=seed)
            if "two-stage" in args.runs:
                run(f"mlp/{seed}/two-stage", dataclasses.replace(mlp, freeze_bridge_steps=split))
            if "balanced" in args.runs:
                run(f"mlp/{seed}/balanced", dataclasses.replace(mlp, balance=True))
    print_tables(runs)
    print(f"\ntotal {time.perf_counter() - tick:.0f}s; work dir {work}")


if __name__ == "__main__":
    main()
