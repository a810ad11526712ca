"""SFT step throughput and peak memory, side by side in ONE run, same model shape, same records, same bridge:

(a) ours: `protein_llm_nemo.training` as `run_sft` builds it (`setup_sft`): megatron-core Qwen3 + LoRA
    (`models/lora.py`) + the mlp bridge, packed rows (best-fit-decreasing, `seq_length` tokens), megatron's
    forward/backward schedule and optimizer, one `train_step` per optimizer step (as `train_loop` calls it);
(b) HF padded, reference-style (seed-implementation section 2): HF `transformers.Qwen3ForCausalLM` of the
    same shape + `peft` LoRA (same rank / alpha / dropout / targets) + the same mlp bridge math
    (`hf.modeling.ProteinLLMForCausalLM.embed_inputs` -> `inputs_embeds`), token-budget padded batches
    (shuffled, sort-free, pad to the longest, `batch_size * longest <= budget`), `model(labels=...)` loss on
    response tokens, torch AdamW (LoRA lr 2e-4, bridge 1e-3, wd 0.01), clip 1.0, warmup + cosine;
(c) HF padding-free: (b)'s model, LoRA, bridge and optimizer fed what TRL's `SFTTrainer(packing=True)` feeds
    it: ours' best-fit-decreasing packs (same packs, same order as (a)), each flattened into one unpadded row
    as transformers' `DataCollatorWithFlattening` does (`position_ids` restart at 0 per sample, first label
    of each sample -100, no attention mask). On CPU transformers' flash-attention `cu_seqlens` path does not
    exist; with `sdpa` transformers 5.x derives the sample boundaries from `position_ids` itself and passes
    SDPA a dense block-diagonal causal mask, so attention stays per sample: checked before timing, on the
    first 4 samples of the first pack, as the same loss as (b)'s padded batch (same weights, dropout off),
    and a different loss without the boundaries. Details: `benchmarks/hf_baselines.py`.

All sides take the same formatted examples (`training.sft.load_examples`: the reference chat template with
response-only masks) and the same frozen-encoder embeddings (computed once before timing, memoised per
sequence, so the encoder's cost is outside every step). Per optimizer step each side gets `--grad-accum`
micro-batches of about `--tokens` token slots (ours and padding-free: packs of `--tokens`; padded: token
budget `--tokens`). After `--warmup` steps per side, `--steps` timed steps per side, interleaved step by
step in every order (abc, bca, cab, cba, acb, bac, ...) so that load from other processes on shared cores
hits all sides alike; reported: ratios over all timed steps and medians of the same-round step ratios.

Reported per side: effective tokens/s (non-pad prompt + protein slots + response tokens / s), padded token
slots processed, pad fraction, median step time (batch building included on all sides), peak memory, and
the ratios ours / padded and ours / padding-free. With CUDA: tokens/s/GPU and MFU = 6 N tokens/s / peak
(N = all parameters).

Peak memory: three models in one process share one allocator, so after the timing each side runs alone in
a fresh subprocess (same data, same embeddings, `--warmup` + `--probe-steps` steps). CPU: the peak resident
set while training (`VmHWM` of `/proc/self/status`, reset to the current RSS through
`/proc/self/clear_refs` just before the first step; `ru_maxrss` of the whole process if the reset is not
allowed) and its increment over the resident set before the first step. CUDA: `max_memory_allocated`
during the steps. `--no-memory` skips the probes.

    .venv/bin/python benchmarks/sft_throughput.py                  # small Qwen3 (h256, 4 layers), CPU
    .venv/bin/python benchmarks/sft_throughput.py --preset 1.7b --tokens 8192 --grad-accum 4   # GPU

Trainable parameters differ by 24,576 (ours 1,794,560, HF 1,819,136 on the small model): ours' LoRA on the
fused qkv and gate/up projections has one A matrix per fused projection, peft one per q, k, v, gate, up.

Measured figures (three sides, quiet and loaded 2-core runs, the profile of one step) and the command that
reproduces them: `docs/benchmarks.md`, section "SFT throughput".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from measure import SMALL, proc_status_mb, profile, summary, sync, timed

ROOT = Path(__file__).resolve().parents[1]
DEMO_TRAIN = ROOT / "outputs" / "go_demo_split" / "train.jsonl"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
GO_TERMS = [
    "adaptive immune response (GO:0002250)",
    "plasma membrane (GO:0005886)",
    "ATP binding (GO:0005524)",
    "nucleus (GO:0005634)",
    "protein kinase activity (GO:0004672)",
    "signal transduction (GO:0007165)",
    "cytosol (GO:0005829)",
    "metal ion binding (GO:0046872)",
    "regulation of transcription by RNA polymerase II (GO:0006357)",
    "extracellular space (GO:0005615)",
]
ASPECTS = {
    "go_bp": "biological process",
    "go_mf": "molecular function",
    "go_cc": "cellular component",
}


def synthetic_records(path: Path, n: int, seed: int) -> None:
    """GO-style canonical records with a realistic spread of protein and answer lengths."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            task = rng.choice(list(ASPECTS))
            terms = rng.sample(GO_TERMS, rng.choice([1, 1, 2, 2, 3, 4, 6, 8]))
            record = {
                "id": f"synthetic:{i}:{task}",
                "sequences": ["".join(rng.choice(AMINO) for _ in range(int(rng.lognormvariate(5.7, 0.6))))],
                "instruction": f"Predict the {ASPECTS[task]} of this protein as Gene Ontology terms "
                "(name and GO id).",
                "response": f"This protein is annotated with the following {ASPECTS[task]} terms: "
                + "; ".join(terms)
                + ".",
                "task": task,
                "source": "synthetic",
            }
            handle.write(json.dumps(record) + "\n")


def resolve_arch(preset: str):
    from protein_llm_nemo.models.qwen3 import Qwen3Arch, qwen3_preset

    return Qwen3Arch(**SMALL) if preset == "small" else qwen3_preset(preset)


class MemoEmbed:
    """The frozen encoder's per-residue embeddings, computed once per sequence: `embed(sequences) ->
    (embeddings [N, L, D], mask [N, L])` for every side (`SFTBatches.embed` protocol)."""

    def __init__(self, encoder, device: torch.device, dtype: torch.dtype):
        self.encoder, self.device, self.dtype = encoder, device, dtype
        self.table: dict[str, torch.Tensor] = {}

    def fill(self, sequences, chunk: int = 8) -> None:
        todo = sorted({s for s in sequences if s not in self.table}, key=len)
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            with torch.no_grad():
                emb, mask = self.encoder.encode(part)
            for j, seq in enumerate(part):
                self.table[seq] = emb[j, : int(mask[j].sum())].to(torch.float32).cpu()

    def __call__(self, sequences):
        self.fill(sequences)
        rows = [self.table[s] for s in sequences]
        width = max(r.shape[0] for r in rows)
        out = torch.zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
            mask[i, : r.shape[0]] = True
        return out.to(self.device, self.dtype), mask.to(self.device)


# -- (a) ours ----------------------------------------------------------------------------------------------
def make_config(args, data_path: str, hf_dir: str, lora_config):
    from protein_llm_nemo.training import (
        BridgeSelection,
        CheckpointConfig,
        DataConfig,
        LoggingConfig,
        ModelConfig,
        OptimizerConfig,
        SchedulerConfig,
        SFTConfig,
        TrainConfig,
    )

    return SFTConfig(
        model=ModelConfig(hf_path=hf_dir, params_dtype=args.dtype),
        bridge=BridgeSelection("mlp", {"num_slots": args.num_slots}),
        data=DataConfig(
            train_path=data_path,
            valid_path=None,
            seq_length=args.tokens,
            packing=True,
            micro_batch_size=1,
            global_batch_size=args.grad_accum,
        ),
        optimizer=OptimizerConfig(),  # reference: lr 2e-4 LoRA, 1e-3 bridge, wd 0.01, clip 1.0
        scheduler=SchedulerConfig(warmup_steps=2, decay_steps=1000),
        train=TrainConfig(max_steps=1000, progress_bar=False),
        checkpoint=CheckpointConfig(dir=None),
        logging=LoggingConfig(level="WARNING", tensorboard=False),
        lora=lora_config,
    )


def ours_step(session) -> tuple[int, int, float]:
    """One optimizer step exactly as `train_loop` runs it; (real tokens, token slots, loss)."""
    from protein_llm_nemo.training.loop import next_train_step

    microbatches, out = next_train_step(session.parts)
    real = sum(mb.real_tokens for mb in microbatches)
    slots = sum(mb.input_ids.numel() for mb in microbatches)
    return real, slots, out.loss


# -- building the sides ------------------------------------------------------------------------------------
SIDES = ("ours", "padded", "padding_free")


def build(args, sides: tuple[str, ...]) -> dict:
    """The requested sides over the same records and embeddings: {"steps": {side: step fn}, ...}."""
    from hf_baselines import PaddedReference, PaddingFree

    from protein_llm_nemo.models.lora import LoRAConfig
    from protein_llm_nemo.tokenizer import load_tokenizer
    from protein_llm_nemo.training.sft import build_bridge_config, build_encoder, load_examples, setup_sft

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    args.dtype = "bfloat16" if cuda else "float32"
    dtype = torch.bfloat16 if cuda else torch.float32
    arch = resolve_arch(args.preset)
    lora_config = LoRAConfig()  # r=8, alpha=16, dropout 0.05 on q,k,v,o,gate,up,down (reference)
    built: dict = {"device": device, "arch": arch, "steps": {}, "hf": {}}
    with tempfile.TemporaryDirectory() as tmp:
        source = args.data or (str(DEMO_TRAIN) if DEMO_TRAIN.exists() else None)
        data_path = str(Path(tmp) / "train.jsonl")
        if source:
            lines = Path(source).read_text().splitlines()[: args.max_records]
            Path(data_path).write_text("\n".join(lines) + "\n")
        else:
            source = "synthetic GO-style records"
            synthetic_records(Path(data_path), args.max_records, args.seed)
        hf_dir = str(Path(tmp) / "qwen3")
        arch.to_hf_config().save_pretrained(hf_dir)
        config = make_config(args, data_path, hf_dir, lora_config)
        t0 = time.perf_counter()
        session = setup_sft(config) if "ours" in sides else None
        built["setup_s"] = time.perf_counter() - t0
        encoder = build_encoder(config.encoder)
        bridge_config = build_bridge_config(config, encoder)
        examples = load_examples(data_path, load_tokenizer(None), bridge_config, config)
    embed = MemoEmbed(encoder, device, dtype)
    t0 = time.perf_counter()
    embed.fill([s for ex in examples for s in ex.sequences])
    built.update(source=source, examples=examples, encode_s=time.perf_counter() - t0)
    common = (args, arch, bridge_config, examples, embed, lora_config, device, dtype)
    if session is not None:
        session.parts.train_data.embed = embed
        built["steps"]["ours"] = lambda: ours_step(session)
        built["ours_trainable"] = sum(p.numel() for p in session.model.parameters() if p.requires_grad)
    if "padded" in sides:
        built["hf"]["padded"] = PaddedReference(*common)
    if "padding_free" in sides:
        built["hf"]["padding_free"] = PaddingFree(*common, seed=config.data.seed, shuffle=config.data.shuffle)
        # same packs in the same order as ours: step k of both sides trains on the same samples
        if session is not None and built["hf"]["padding_free"].packs != session.parts.train_data.items:
            raise RuntimeError("padding-free packs differ from ours")
    for name, side in built["hf"].items():
        built["steps"][name] = side.step
    return built


# -- timing and memory -------------------------------------------------------------------------------------
def memory_probe(args) -> int:
    """Child process: build one side alone, run its steps, print its peak memory as the last JSON line."""
    import gc
    import resource

    side = args.memory_probe
    built = build(args, (side,))
    step, device = built["steps"][side], built["device"]
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = proc_status_mb("VmRSS")
        try:  # "5": the peak resident set (VmHWM) restarts from the current one (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
    for _ in range(args.warmup + args.probe_steps):
        step()
    sync(device)
    if device.type == "cuda":
        peak, method = torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    elif reset:
        peak, method = proc_status_mb("VmHWM"), "VmHWM after clear_refs"
    else:
        peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss (process)"
    print(json.dumps({"side": side, "peak_mb": round(peak), "before_mb": round(before), "method": method}))
    return 0


def run_memory_probes(args) -> dict[str, dict]:
    import socket
    import subprocess

    forwarded = ["--data", args.data] if args.data else []
    for flag, value in (
        ("--preset", args.preset),
        ("--max-records", args.max_records),
        ("--tokens", args.tokens),
        ("--grad-accum", args.grad_accum),
        ("--num-slots", args.num_slots),
        ("--seed", args.seed),
        ("--threads", torch.get_num_threads()),
        ("--warmup", args.warmup),
        ("--probe-steps", args.probe_steps),
    ):
        forwarded += [flag, str(value)]
    out = {}
    for side in SIDES:
        cmd = [sys.executable, str(Path(__file__).resolve()), *forwarded, "--memory-probe", side]
        with socket.socket() as free:  # this process still holds its own MASTER_PORT
            free.bind(("127.0.0.1", 0))
            env = {**os.environ, "MASTER_PORT": str(free.getsockname()[1])}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe of {side} failed:\n{proc.stderr[-4000:]}")
        out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        out[side]["step_increment_mb"] = out[side]["peak_mb"] - out[side]["before_mb"]
    return out


# -- the run ---------------------------------------------------------------------------------------------
def ratio(a: dict, b: dict, key: str) -> float:
    return round(a[key] / b[key], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="'small' (h256, 4 layers) or a Qwen3 preset")
    parser.add_argument("--data", default=None, help="canonical records (default: the GO demo split)")
    parser.add_argument("--max-records", type=int, default=600)
    parser.add_argument("--tokens", type=int, default=2048, help="pack width = padded token budget")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--num-slots", type=int, default=32, help="mlp bridge slots per protein")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side (interleaved)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--probe-steps", type=int, default=2, help="steps after warmup per memory probe")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-side memory subprocesses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak (H100 bf16 dense)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one step per side")
    parser.add_argument("--out", default=None, help="write the JSON result here too")
    parser.add_argument("--memory-probe", choices=SIDES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    if args.memory_probe:
        return memory_probe(args)

    from hf_baselines import loss_equivalence

    load_start = os.getloadavg()  # other jobs on the cores: reported beside the figures
    built = build(args, SIDES)
    device, arch, examples, steps = built["device"], built["arch"], built["examples"], built["steps"]
    padded, flat = built["hf"]["padded"], built["hf"]["padding_free"]
    lengths = [len(ex) for ex in examples]
    print(
        f"data: {built['source']}: {len(examples)} examples, tokens/sample mean "
        f"{statistics.mean(lengths):.0f}, min {min(lengths)}, max {max(lengths)}; "
        f"encoder embeddings precomputed in {built['encode_s']:.1f}s"
    )
    hf_trainable = sum(p.numel() for p in flat.model.parameters() if p.requires_grad)
    print(
        f"model: {args.preset} {arch}; parameters {flat.num_parameters:,}; trainable ours "
        f"{built['ours_trainable']:,}, HF {hf_trainable:,} (LoRA {flat.num_lora:,} + bridge "
        f"{flat.num_bridge:,}); device {device}, threads {torch.get_num_threads()}, "
        f"setup {built['setup_s']:.1f}s"
    )
    print(
        f"per step: {args.grad_accum} micro-batches of {args.tokens} token slots (ours: packs; padded: token "
        f"budget, {len(padded.batches)} batches; padding-free: the same {len(flat.packs)} packs, unpadded)"
    )
    check = loss_equivalence(flat, flat.packs[0][:4])
    tolerance = 1e-4 if device.type == "cpu" else 2e-2
    print(
        f"loss equivalence on {check['samples']} samples: padded {check['padded']:.6f}, padding-free "
        f"{check['padding_free']:.6f} (|diff| {check['abs_diff']:.2e}); without sample boundaries "
        f"{check['without_boundaries']:.6f}"
    )
    if check["abs_diff"] > tolerance:
        raise SystemExit("padding-free loss differs from the padded loss: attention crosses samples")

    for _ in range(args.warmup):
        for name in SIDES:
            timed(steps[name], device)
    if args.profile:
        for name in SIDES:
            profile(steps[name], name)
    records: dict[str, list] = {name: [] for name in SIDES}
    for i in range(args.steps):  # every order of the three sides in turn: shared-core noise hits all alike
        order = SIDES[i % 3 :] + SIDES[: i % 3]
        for name in reversed(order) if (i // 3) % 2 else order:
            records[name].append(timed(steps[name], device))
        print(
            f"step {i + 1}: "
            + ", ".join(
                f"{n} {records[n][-1][0]:.2f}s ({records[n][-1][1] / records[n][-1][0]:.0f} tok/s)"
                for n in SIDES
            )
        )

    sides = {n: summary(n, records[n], flat.num_parameters, device, args.peak_tflops) for n in SIDES}
    memory = {} if args.no_memory else run_memory_probes(args)
    for n, m in memory.items():
        sides[n]["peak_memory_mb"], sides[n]["step_memory_increment_mb"] = (
            m["peak_mb"],
            m["step_increment_mb"],
        )
    for s in sides.values():
        line = (
            f"{s['side']:>12}: {s['effective_tokens_per_s']:>7.1f} effective tokens/s "
            f"(median-step {s['effective_tokens_per_s_median']:.1f}), median step {s['median_step_s']:.3f}s, "
            f"{s['effective_tokens']} effective / {s['padded_token_slots']} token slots, "
            f"pad fraction {s['pad_fraction']:.1%}, {s['effective_tokens_per_cpu_s']:.1f} tokens/CPU-s, "
            f"loss {s['last_loss']}"
        )
        if "peak_memory_mb" in s:
            line += f", peak memory {s['peak_memory_mb']} MB (+{s['step_memory_increment_mb']} MB in steps)"
        if "mfu" in s:
            line += f", tokens/s/GPU {s['tokens_per_s_per_gpu']:.0f}, MFU {s['mfu']:.1%}"
        print(line)
    ratios = {}
    ours = sides["ours"]
    for n in ("padded", "padding_free"):
        pairs = [(a[1] / a[0]) / (b[1] / b[0]) for a, b in zip(records["ours"], records[n], strict=True)]
        r = {
            "tokens_per_s": ratio(ours, sides[n], "effective_tokens_per_s"),
            "tokens_per_s_median_of_rounds": round(statistics.median(pairs), 3),
            "tokens_per_cpu_s": ratio(ours, sides[n], "effective_tokens_per_cpu_s"),
            "round_ratios": [round(p, 3) for p in pairs],
        }
        if memory:
            r["peak_memory"] = ratio(ours, sides[n], "peak_memory_mb")
        ratios[n] = r
        print(
            f"ours / {n}: effective tokens/s {r['tokens_per_s']:.2f}x over all timed steps (median of the "
            f"{len(pairs)} rounds {r['tokens_per_s_median_of_rounds']:.2f}x), per process CPU second "
            f"{r['tokens_per_cpu_s']:.2f}x" + (f"; peak memory {r['peak_memory']:.2f}x" if memory else "")
        )
    result = {
        "benchmark": "sft_throughput",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_average_start_end": [[round(x, 2) for x in load_start], [round(x, 2) for x in os.getloadavg()]],
        "preset": args.preset,
        "arch": arch.to_dict(),
        "parameters": flat.num_parameters,
        "data": built["source"],
        "examples": len(examples),
        "tokens": args.tokens,
        "grad_accum": args.grad_accum,
        "num_slots": args.num_slots,
        "loss_equivalence": check,
        "memory_method": next(iter(memory.values()))["method"] if memory else None,
        **sides,
        "ratios_ours_over": ratios,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
