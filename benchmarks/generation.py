"""Generation throughput and peak memory, side by side in ONE run, same model weights, prompts and sampling:

(a) hf_single: the reference design (the seeds' GRPO rollouts): HF `ProteinLLMForCausalLM.generate`, one
    prompt at a time;
(b) hf_batched: the same HF model, all prompts in one left-padded `generate` call (what a careful user does);
(c) ours: `protein_llm_nemo.generation.generate` on the megatron `ProteinLLMModel` (one prefill, megatron's
    static KV cache, finished rows dropped).

The megatron model is built first (the mlp bridge on a small Qwen3, one gloo rank) and exported to a HF folder,
so (a)/(b) run exactly its weights. Prompts: chat-formatted questions with one protein each (precomputed
random per-residue embeddings of a realistic length spread, so no encoder runs on any side), prompt lengths
~60-250 tokens. Greedy by default: then all sides must produce the same tokens, which the script checks.
Reported per side: generated tokens / s (wall clock, median over `--rounds` interleaved rounds) and peak
resident memory of the side alone in a fresh subprocess (`VmHWM` reset before its first call).

    .venv/bin/python benchmarks/generation.py                        # 16 prompts, 64 new tokens, CPU
    .venv/bin/python benchmarks/generation.py --prompts 64 --max-new-tokens 128 --profile

Measured figures and the command that reproduces them: `docs/benchmarks.md`, section "Generation".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from measure import SMALL, proc_status_mb, profile

SIDES = ("hf_single", "hf_batched", "ours")
ENCODER_DIM = 64
QUESTIONS = [
    "What is the function of this protein?",
    "Which Gene Ontology terms describe the biological processes this protein takes part in? "
    "Answer with GO term names and ids, one per line, most specific first.",
    "Describe this protein: its likely subcellular location, the families and domains it belongs to, "
    "and the catalytic activity it is known for, citing the evidence you would look for.",
]


def build_world(args, folder: Path):
    """The megatron model (this process is one gloo rank), its HF export in `folder`, prompts."""
    from protein_llm_nemo.bridges import get_bridge_config
    from protein_llm_nemo.conversion import ProteinLLMSpec, export_protein_llm
    from protein_llm_nemo.generation import Prompt
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.models.qwen3 import Qwen3Arch
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed, seed_everything
    from protein_llm_nemo.tokenizer import (
        ChatFormatter,
        ChatFormatterConfig,
        build_protein_user_text,
        load_tokenizer,
    )

    initialize_distributed(ParallelConfig(), backend="gloo")
    seed_everything(args.seed)
    arch = Qwen3Arch(**SMALL)
    bridge = get_bridge_config("mlp", encoder_dim=ENCODER_DIM, num_slots=args.num_slots)
    model = build_protein_llm(arch, bridge).eval()
    if not (folder / "config.json").is_file():
        export_protein_llm(model, ProteinLLMSpec(arch, bridge), folder, tokenizer=None, overwrite=True)
    tokenizer = load_tokenizer()
    formatter = ChatFormatter(tokenizer, ChatFormatterConfig())
    rng = random.Random(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    prompts = []
    for i in range(args.prompts):
        text = build_protein_user_text(
            QUESTIONS[i % len(QUESTIONS)] + " " * rng.randint(0, 3), args.num_slots
        )
        ids = formatter.format_prompt([{"role": "user", "content": text}])
        residues = max(30, int(rng.lognormvariate(5.5, 0.5)))
        prompts.append(Prompt(ids, embeddings=torch.randn(1, residues, ENCODER_DIM, generator=generator)))
    return model, prompts


def run_ours(model, prompts, args) -> list[list[int]]:
    from protein_llm_nemo.generation import SamplingParams, generate

    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    return [s.token_ids for s in generate(model, prompts, params)]


def _hf_inputs(prompts, device: torch.device):
    width = max(len(p.input_ids) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt.input_ids) :] = torch.tensor(prompt.input_ids)
        mask[row, width - len(prompt.input_ids) :] = 1
    longest = max(p.embeddings.shape[1] for p in prompts)
    embeddings = torch.cat(
        [torch.nn.functional.pad(p.embeddings, (0, 0, 0, longest - p.embeddings.shape[1])) for p in prompts]
    )
    protein_mask = (
        torch.arange(longest)[None] < torch.tensor([p.embeddings.shape[1] for p in prompts])[:, None]
    )
    return dict(input_ids=ids.to(device), attention_mask=mask.to(device), protein_embeddings=embeddings.to(device),
                protein_mask=protein_mask.to(device)), width  # fmt: skip


def run_hf(hf_model, prompts, args, batched: bool) -> list[list[int]]:
    eos = set(hf_model.generation_config.eos_token_id or [])
    kwargs = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.temperature > 0,
        suppress_tokens=list(hf_model.config.protein_token_ids),  # input-only tokens, as ours
        pad_token_id=0,
    )
    if args.temperature > 0:
        kwargs.update(temperature=args.temperature, top_p=args.top_p, top_k=None)
    outputs = []
    groups = [prompts] if batched else [[p] for p in prompts]
    for group in groups:
        inputs, width = _hf_inputs(group, hf_model.device)
        with torch.no_grad():
            generated = hf_model.generate(**inputs, **kwargs)[:, width:].tolist()
        for row in generated:
            tokens = []
            for token in row:  # up to and including the first eos (pads after it are not generated)
                tokens.append(token)
                if token in eos:
                    break
            outputs.append(tokens)
    return outputs


def sides(model, hf_model, prompts, args) -> dict:
    return {
        "hf_single": lambda: run_hf(hf_model, prompts, args, batched=False),
        "hf_batched": lambda: run_hf(hf_model, prompts, args, batched=True),
        "ours": lambda: run_ours(model, prompts, args),
    }


def memory_probe(args, folder: Path) -> int:
    """One side alone (this is a fresh subprocess): peak resident MB of its calls."""
    from transformers import AutoModelForCausalLM

    model, prompts = build_world(args, folder)
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval() if args.probe != "ours" else None
    if args.probe != "ours":
        del model
    call = sides(model if args.probe == "ours" else None, hf_model, prompts, args)[args.probe]
    before = proc_status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "VmHWM (not reset)"
    call()
    print(
        json.dumps({"peak_mb": round(proc_status_mb("VmHWM")), "before_mb": round(before), "method": method})
    )
    return 0


def _fresh_env() -> dict[str, str]:
    """This process's environment without its process-group rendezvous (the probe starts its own)."""
    group = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    return {k: v for k, v in os.environ.items() if k not in group} | {"PYTHONWARNINGS": "ignore"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--num-slots", type=int, default=32, help="mlp bridge slots per protein")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy: all sides must agree")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (sides interleaved)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="print the top ops of one call per side")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-side memory subprocesses")
    parser.add_argument("--out", default=None, help="write the JSON result here too")
    parser.add_argument("--probe", choices=SIDES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        return memory_probe(args, Path(args.folder))
    from transformers import AutoModelForCausalLM

    workdir = Path(tempfile.mkdtemp(prefix="generation-bench-"))
    folder = workdir / "hf"
    model, prompts = build_world(args, folder)
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    calls = sides(model, hf_model, prompts, args)
    print(
        f"{len(prompts)} prompts of {min(len(p.input_ids) for p in prompts)}-{max(len(p.input_ids) for p in prompts)} "
        f"tokens, {args.max_new_tokens} new tokens, temperature {args.temperature}, threads {torch.get_num_threads()}"
    )
    tokens: dict[str, list[list[int]]] = {}
    for name, call in calls.items():  # warm-up (and the tokens each side generates)
        tokens[name] = call()
        if args.profile:
            profile(call, name)
    if args.temperature == 0:
        same = tokens["ours"] == tokens["hf_batched"] == tokens["hf_single"]
        print(f"greedy tokens equal on all sides: {same}")
    else:
        same = None
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    order = list(SIDES)
    for _ in range(args.rounds):
        for name in order:
            tick = time.perf_counter()
            generated = calls[name]()
            times[name].append(time.perf_counter() - tick)
            tokens[name] = generated
        order = order[1:] + order[:1]
    result = {"benchmark": "generation", "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "temperature": args.temperature, "threads": torch.get_num_threads(), "greedy_equal": same,
              "load_average": os.getloadavg()}  # fmt: skip
    for name in SIDES:
        count = sum(len(t) for t in tokens[name])
        median = statistics.median(times[name])
        result[name] = {
            "generated_tokens": count,
            "median_s": round(median, 3),
            "tokens_per_s": round(count / median, 1),
        }
    if not args.no_memory:
        for name in SIDES:
            probe = subprocess.run(
                [sys.executable, __file__, "--probe", name, "--folder", str(folder), "--prompts", str(args.prompts),
                 "--max-new-tokens", str(args.max_new_tokens), "--num-slots", str(args.num_slots),
                 "--temperature", str(args.temperature), "--top-p", str(args.top_p), "--seed", str(args.seed)],
                capture_output=True, text=True, env=_fresh_env(),
            )  # fmt: skip
            lines = [line for line in probe.stdout.splitlines() if line.startswith("{")]
            if probe.returncode == 0 and lines:
                result[name].update(json.loads(lines[-1]))
            else:
                print(f"memory probe of {name} failed:\n{probe.stderr[-2000:]}")
    for name in SIDES:
        r = result[name]
        memory = f", peak memory {r['peak_mb']} MB" if "peak_mb" in r else ""
        print(
            f"{name:>11}: {r['tokens_per_s']:8.1f} generated tokens/s ({r['generated_tokens']} in {r['median_s']} s){memory}"
        )
    for base in ("hf_single", "hf_batched"):
        ratio = result["ours"]["tokens_per_s"] / result[base]["tokens_per_s"]
        result[f"ours_over_{base}"] = round(ratio, 2)
        memory = ""
        if "peak_mb" in result["ours"] and "peak_mb" in result[base]:
            memory = f", peak memory {result['ours']['peak_mb'] / result[base]['peak_mb']:.2f}x"
        print(f"ours / {base}: {ratio:.2f}x generated tokens/s{memory}")
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
