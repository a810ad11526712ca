"""One GRPO step (generation + log-probs + update), ours vs TRL `GRPOTrainer`, side by side in ONE run:

(a) ours: `protein_llm_nemo.training.grpo` as `run_grpo` builds it (`setup_grpo`), one `grpo_step` per
    optimizer step: dynamic sampling (rounds of `batch_multiplier` x prompts until the step holds
    `--prompts` groups with reward variance, extra groups carried to the next step), our generation engine,
    reference log-probs (a forward-only pass), the clipped update (its own forward gives the old log-probs)
    through megatron's schedule and optimizer;
(b) TRL 1.x `GRPOTrainer` on the HF export of (a)'s model (same weights; LoRA: our adapters exported as a PEFT
    adapter, `is_trainable`), its own `Trainer` loop: one HF `generate` of the whole generation batch per
    optimizer step, reference log-probs (a frozen copy of the adapter), `--micro-batch` rows per
    forward/backward, gradient accumulation, clipping, AdamW.

Same on both sides: the small Qwen3 (h256, 4 layers, the real 151,936-token vocabulary) with the `text` bridge
(the amino acids in the prompt: TRL passes generation only tokens), the same chat-formatted prompts (PPI
records formatted by our `PromptBuilder`; TRL gets their text, checked to re-tokenize to the same ids),
`--generations` completions per prompt, `--max-new-tokens`, sampling at temperature 1 (top-p 1, no top-k),
LoRA r 8 / alpha 16 on every linear without dropout (`--finetune full`: every LLM weight trains on both sides),
token-mean loss (TRL `dapo`), clip 0.2 / 0.28, KL beta 0.01 with the plain k3 estimator
(`use_bias_correction_kl=False`), group-mean baseline divided by the group std, no overlong masking (a random
tiny policy rarely ends its turn: both sides then generate `--max-new-tokens` tokens, and such samples must stay
in the loss), fp32 (TRL's bf16 default off), no gradient checkpointing (TRL's default on), lr 5e-6 constant,
weight decay 0.01, gradient clip 1.0, `--micro-batch` samples per forward/backward.

The reward is one function shared by both sides: 1 for a pseudo-random `--reward-rate` share of completion texts
(CRC-32 of the stripped text), else 0. A registered reward would score every completion of a random policy 0
(it never answers yes or no): every group would have zero variance, ours would stop with a dynamic-sampling
error and TRL would train on nothing. With G completions per group, a share p of 1s leaves about
p^G + (1 - p)^G of the groups with zero variance (p 0.25, G 4: 32%).

Each side runs in its own fresh process (spawned), and the two step in lockstep: the main process tells one
side to run a step, waits for it, then the other (the order alternates every step), so load from other jobs on
shared cores hits both alike and neither runs while the other is timed. Separate processes also keep each
side's process-wide setup out of the other's way (our CPU runtime installs a torch function mode for the life
of its process). TRL runs its real `Trainer` loop: a callback blocks in `on_step_begin` until it is told to go,
and the step time runs from `on_step_begin` to `on_step_end` (generation, scoring, reference log-probs,
forward/backward of every micro-batch, clipping, optimizer and scheduler step).

Reported per side (after `--warmup` steps, over `--steps` timed steps): median step time; trained tokens/s
(completion tokens in the loss / step time); useful trained tokens/s (only the tokens of groups with reward
variance: a zero-variance group has zero advantage everywhere, its tokens cost a forward and backward but
carry only the KL term); generated tokens/s (completion tokens / time inside the model's generate call: ours'
`generation.generate`, TRL's `_generate_single_turn`) and the completion tokens generated per step (ours
generates `batch_multiplier` x prompts per round and drops zero-variance groups); the share of TRL's trained
groups and tokens with zero reward variance, from the rewards it computed; ours' zero-variance groups dropped
and trained (0 by construction); peak memory: the peak resident set of the side's process over all its steps
(`VmHWM` of `/proc/self/status`, reset through `/proc/self/clear_refs` just before its first step), and its
increment over the resident set before that step. Ratios ours / TRL over all timed steps, and the median of
the per-round ratios. The load average (other jobs on the cores) is printed with the figures. Each timed step
prints its own figures when it ends (times, tokens, zero-variance groups trained, ours' phase timers, each side's
`VmHWM` so far read from the main process) and `--profile` prints its tables as soon as they are taken, so a run
stopped early keeps what it measured.

    .venv/bin/python benchmarks/grpo_step.py                       # 4 prompts x 4, 64 new tokens, LoRA, CPU
    .venv/bin/python benchmarks/grpo_step.py --prompts 2 --max-new-tokens 16 --steps 2    # a smoke run
    .venv/bin/python benchmarks/grpo_step.py --profile             # + the top ops of one extra step per side

Measured figures and the command that reproduces them: `docs/benchmarks.md`, section "GRPO step".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from measure import SMALL, proc_status_mb

SIDES = ("ours", "trl")
LR = 5e-6  # GRPOConfig's default LLM / LoRA learning rate
WEIGHT_DECAY = 0.01
EPS_LOW, EPS_HIGH = 0.2, 0.28
LORA_RANK, LORA_ALPHA = 8, 16.0


# -- shared inputs ----------------------------------------------------------------------------------------
def write_records(path: Path, n: int, seed: int) -> None:
    """PPI records (two proteins of a realistic length spread each, ground truth in meta)."""
    from protein_llm_nemo.testing.sft import write_ppi_records

    write_ppi_records(path, n, seed, draw_length=lambda rng: int(rng.lognormvariate(4.3, 0.4)))


def shared_reward(text: str, rate: float) -> float:
    """1 for a pseudo-random `rate` share of texts, 0 otherwise; the same text always scores the same."""
    return 1.0 if zlib.crc32(text.strip().encode()) < rate * 2**32 else 0.0


def zero_variance_rows(rewards: list[float], group_size: int) -> list[bool]:
    """Per row: whether its group's rewards are all equal (rows of a group are consecutive)."""
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        out += [max(group) <= min(group)] * len(group)
    return out


# -- process helpers --------------------------------------------------------------------------------------
class PeakMemory:
    """Peak resident set from `start()` on: `VmHWM` reset to the current RSS through /proc/self/clear_refs
    (Linux >= 4.0); the process's `ru_maxrss` if the reset is not allowed."""

    def start(self) -> None:
        self.before = proc_status_mb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after clear_refs"
        except OSError:
            self.method = "ru_maxrss (process)"

    def report(self) -> dict[str, Any]:
        if self.method.startswith("VmHWM"):
            peak = proc_status_mb("VmHWM")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_mb": round(peak), "before_mb": round(self.before), "method": self.method}


def child_peak_mb(pid: int) -> int | None:
    """A side's `VmHWM` read from the main process (printed per step: a run stopped early keeps it)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


def profile_table(fn: Callable[[], Any], rows: int) -> tuple[Any, str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = fn()
    return out, prof.key_averages().table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48
    )


def worker(target: Callable[..., None], conn: Connection, *args: Any) -> None:
    """A side's process: every failure goes back to the main process instead of leaving it waiting."""
    import warnings

    warnings.simplefilter("ignore")  # library deprecation noise would bury the figures
    try:
        target(conn, *args)
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise


def receive(conn: Connection, proc: multiprocessing.process.BaseProcess, side: str) -> Any:
    while not conn.poll(1.0):
        if not proc.is_alive():
            raise RuntimeError(f"the {side} process exited with code {proc.exitcode}")
    message = conn.recv()
    if isinstance(message, dict) and "error" in message:
        raise RuntimeError(f"the {side} process failed:\n{message['error']}")
    return message


# -- (a) ours ---------------------------------------------------------------------------------------------
def grpo_config(args: argparse.Namespace, data_path: str, arch_dir: str):
    from protein_llm_nemo.models.lora import LoRAConfig
    from protein_llm_nemo.training.config import (
        BridgeSelection,
        CheckpointConfig,
        LoggingConfig,
        ModelConfig,
        OptimizerConfig,
        TrainConfig,
    )
    from protein_llm_nemo.training.grpo import GRPOConfig, GRPODataConfig, GRPOSection

    full = args.finetune == "full"
    return GRPOConfig(
        model=ModelConfig(hf_path=arch_dir, freeze_language_model=not full),
        bridge=BridgeSelection("text"),
        data=GRPODataConfig(
            train_path=data_path, micro_batch_size=args.micro_batch, shuffle=False, valid_path=None
        ),
        grpo=GRPOSection(
            num_prompts_per_step=args.prompts,
            num_generations=args.generations,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            beta=args.beta,
            eps_low=EPS_LOW,
            eps_high=EPS_HIGH,
            loss_agg_mode="token-mean",
            leave_one_out_baseline=False,  # TRL's baseline: the group mean
            overlong_filtering=False,  # a random policy rarely ends its turn: length-cut samples must train
        ),
        lora=None if full else LoRAConfig(rank=LORA_RANK, alpha=LORA_ALPHA, dropout=0.0),
        optimizer=OptimizerConfig(lr=LR, bridge_lr=LR, weight_decay=WEIGHT_DECAY, clip_grad=1.0),
        train=TrainConfig(max_steps=10**6, progress_bar=False, seed=args.seed),
        checkpoint=CheckpointConfig(dir=None),
        logging=LoggingConfig(level="WARNING", tensorboard=False),
    )


class CountingSampler:
    """Ours' `GroupSampler` with the completions of every generation round counted (dropped groups too)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.generated_tokens = 0
        self.generated_groups = 0

    def next_step(self, generate_groups: Callable) -> Any:
        def counted(records: list[Any]) -> list[Any]:
            groups = generate_groups(records)
            self.generated_tokens += sum(len(c) for g in groups for c in g.completions)
            self.generated_groups += len(groups)
            return groups

        return self.inner.next_step(counted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def ours_worker(conn: Connection, args: argparse.Namespace, data_path: str, folder: str) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    from protein_llm_nemo.conversion.protein_llm_export import export_language_model
    from protein_llm_nemo.models.qwen3 import Qwen3Arch
    from protein_llm_nemo.rewards import RewardResult
    from protein_llm_nemo.training.grpo import rollout, setup_grpo
    from protein_llm_nemo.training.grpo.step import grpo_step

    arch = Qwen3Arch(**SMALL)
    arch_dir = Path(folder).parent / "arch"
    arch.to_hf_config().save_pretrained(str(arch_dir))
    session = setup_grpo(grpo_config(args, data_path, str(arch_dir)))
    parts = session.parts

    def reward(record: Any, text: str) -> Any:
        value = shared_reward(text, args.reward_rate)
        return RewardResult(total=value, components={}, parsed_answer=None, format_ok=True)

    parts.reward_fn = reward
    sampler = parts.sampler = CountingSampler(parts.sampler)
    generate_s = [0.0]
    engine_generate = rollout.generate

    def timed_generate(*a: Any, **k: Any) -> Any:
        tick = time.perf_counter()
        try:
            return engine_generate(*a, **k)
        finally:
            generate_s[0] += time.perf_counter() - tick

    rollout.generate = timed_generate  # only the engine's call is timed: generated tokens/s
    # the weights TRL starts from: the LLM as HF Qwen3, LoRA adapters as a PEFT adapter folder
    export_language_model(session.model, arch, folder, tokenizer=None, lora="adapter")
    records = sampler.prompts.records
    trainable = sum(p.numel() for p in session.model.parameters() if p.requires_grad)
    conn.send(
        {
            "prompt_ids": [parts.prompt_builder(r)[0] for r in records],
            "trainable": trainable,
            "parameters": sum(p.numel() for p in session.model.parameters()),
        }
    )
    memory = PeakMemory()
    step = 0
    while True:
        command = conn.recv()
        if command == "finish":
            conn.send(memory.report())
            return
        if step == 0:
            memory.start()
        generate_s[0] = 0.0
        sampler.generated_tokens = sampler.generated_groups = 0
        tick, cpu = time.perf_counter(), time.process_time()
        if command == "profile":
            out, table = profile_table(lambda index=step: grpo_step(parts, index), args.profile_rows)
        else:
            out, table = grpo_step(parts, step), None
        wall, cpu = time.perf_counter() - tick, time.process_time() - cpu
        step += 1
        trained = int(out["trained_tokens"])
        conn.send(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "generate_s": generate_s[0],
                "generated_tokens": sampler.generated_tokens,
                "generated_groups": sampler.generated_groups,
                "trained_tokens": trained,
                "useful_tokens": trained,  # dynamic sampling: every trained group has reward variance
                "trained_groups": args.prompts,
                "zero_variance_groups_trained": out["trained_zero_variance_groups"],
                "zero_variance_fraction_generated": out["zero_variance_fraction"],
                "generation_rounds": out["generation_rounds"],
                "timers": out["timers"],
                "loss": out["loss"],
                "reward_mean": out["reward/mean"],
                "table": table,
            }
        )


# -- (b) TRL ----------------------------------------------------------------------------------------------
def trl_worker(conn: Connection, args: argparse.Namespace, folder: str, prompt_ids: list[list[int]]) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from protein_llm_nemo.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in prompt_ids]
    mismatched = sum(tokenizer(text)["input_ids"] != ids for text, ids in zip(texts, prompt_ids, strict=True))
    if mismatched:
        raise RuntimeError(f"{mismatched} prompt texts do not re-tokenize to our prompt ids")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if args.finetune == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(Path(folder) / "lora_adapter"), is_trainable=True)
    rows = args.prompts * args.generations
    steps = args.warmup + args.steps + int(args.profile)
    state: dict[str, Any] = {}

    def reward(completions: list[str], **kwargs: Any) -> list[float]:
        values = [shared_reward(text, args.reward_rate) for text in completions]
        state["rewards"] = values
        return values

    config = GRPOConfig(
        output_dir=str(Path(folder).parent / "trl"),
        use_cpu=True,
        report_to=[],
        bf16=False,  # TRL's default is bf16: ours runs fp32 on the CPU
        gradient_checkpointing=False,  # TRL's default is on: ours recomputes nothing
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=rows // args.micro_batch,  # one generation batch per optimizer step
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        loss_type="dapo",  # ours' token-mean
        beta=args.beta,
        epsilon=EPS_LOW,
        epsilon_high=EPS_HIGH,
        use_bias_correction_kl=False,  # ours' plain k3 estimator
        scale_rewards="group",
        mask_truncated_completions=False,
        disable_dropout=True,
        learning_rate=LR,
        lr_scheduler_type="constant",
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=1.0,
        max_steps=steps,
        shuffle_dataset=False,
        logging_strategy="no",
        save_strategy="no",
        seed=args.seed,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tokenizer,
    )
    from accelerate.utils import DistributedType

    if trainer.accelerator.distributed_type != DistributedType.NO:
        raise RuntimeError(f"TRL runs {trainer.accelerator.distributed_type}, expected a single process")
    generate_turn = trainer._generate_single_turn
    generate_and_score = trainer._generate_and_score_completions

    def timed_generate(*a: Any, **k: Any) -> Any:
        tick = time.perf_counter()
        completion_ids, logprobs = generate_turn(*a, **k)
        state["generate_s"] += time.perf_counter() - tick
        state["generated_tokens"] += sum(len(c) for c in completion_ids)
        return completion_ids, logprobs

    def counted_batch(*a: Any, **k: Any) -> Any:
        batch = generate_and_score(*a, **k)
        tokens = batch["completion_mask"].sum(dim=1).tolist()  # the loss mask's tokens, per row
        zero = zero_variance_rows(state["rewards"], args.generations)
        state["trained_tokens"] += int(sum(tokens))
        state["useful_tokens"] += int(sum(t for t, z in zip(tokens, zero, strict=True) if not z))
        state["trained_groups"] += len(zero) // args.generations
        state["zero_groups"] += sum(zero) // args.generations
        state["rewards_sum"] += sum(state["rewards"])
        state["rows"] += len(zero)
        return batch

    trainer._generate_single_turn = timed_generate
    trainer._generate_and_score_completions = counted_batch
    memory = PeakMemory()

    class Lockstep(TrainerCallback):
        """Each optimizer step waits for the main process's word; its time and counts go back at its end."""

        profiler: Any = None

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            command = conn.recv()
            if state.get("started") is None:
                memory.start()
                state["started"] = True
            if command == "profile":
                from torch.profiler import ProfilerActivity, profile

                self.profiler = profile(activities=[ProfilerActivity.CPU])
                self.profiler.__enter__()
            for key in ("generate_s", "generated_tokens", "trained_tokens", "useful_tokens", "trained_groups",
                        "zero_groups", "rewards_sum", "rows"):  # fmt: skip
                state[key] = 0
            state["tick"], state["cpu"] = time.perf_counter(), time.process_time()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            wall, cpu = time.perf_counter() - state["tick"], time.process_time() - state["cpu"]
            table = None
            if self.profiler is not None:
                self.profiler.__exit__(None, None, None)
                table = self.profiler.key_averages().table(
                    sort_by="self_cpu_time_total", row_limit=args.profile_rows, max_name_column_width=48
                )
                self.profiler = None
            zero_tokens = state["trained_tokens"] - state["useful_tokens"]
            zero_share = state["zero_groups"] / max(state["trained_groups"], 1)
            conn.send(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "generate_s": state["generate_s"],
                    "generated_tokens": state["generated_tokens"],
                    "generated_groups": state["trained_groups"],
                    "trained_tokens": state["trained_tokens"],
                    "useful_tokens": state["useful_tokens"],
                    "trained_groups": state["trained_groups"],
                    "zero_variance_groups_trained": state["zero_groups"],
                    "zero_variance_tokens_trained": zero_tokens,
                    "zero_variance_fraction_generated": zero_share,
                    "reward_mean": state["rewards_sum"] / max(state["rows"], 1),
                    "table": table,
                }
            )

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):  # progress bars and the end-of-run log line
        trainer.remove_callback(quiet)
    trainer.add_callback(Lockstep())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    conn.send({"trainable": trainable, "parameters": sum(p.numel() for p in trainer.model.parameters())})
    trainer.train()
    if conn.recv() != "finish":
        raise RuntimeError("expected 'finish' after the last step")
    conn.send(memory.report())


# -- the run ----------------------------------------------------------------------------------------------
def summarise(side: str, steps: list[dict[str, Any]], memory: dict[str, Any]) -> dict[str, Any]:
    def total(key: str) -> float:
        return sum(s[key] for s in steps)

    wall = total("wall_s")
    out = {
        "side": side,
        "steps": len(steps),
        "median_step_s": round(statistics.median(s["wall_s"] for s in steps), 3),
        "step_s": [round(s["wall_s"], 3) for s in steps],
        "cpu_s_per_step": round(total("cpu_s") / len(steps), 3),
        "trained_tokens_per_step": total("trained_tokens") / len(steps),
        "trained_tokens_per_s": round(total("trained_tokens") / wall, 1),
        "trained_tokens_per_s_median": round(
            statistics.median(s["trained_tokens"] / s["wall_s"] for s in steps), 1
        ),
        "useful_trained_tokens_per_s": round(total("useful_tokens") / wall, 1),
        "generated_tokens_per_step": total("generated_tokens") / len(steps),
        "completions_per_step": total("generated_groups") / len(steps),  # groups; x G for completions
        "generated_tokens_per_s": round(total("generated_tokens") / max(total("generate_s"), 1e-9), 1),
        "generate_share_of_step": round(total("generate_s") / wall, 3),
        "trained_groups": int(total("trained_groups")),
        "zero_variance_groups_trained": int(total("zero_variance_groups_trained")),
        "zero_variance_group_share_trained": round(
            total("zero_variance_groups_trained") / max(total("trained_groups"), 1), 4
        ),
        "zero_variance_token_share_trained": round(
            (total("trained_tokens") - total("useful_tokens")) / max(total("trained_tokens"), 1), 4
        ),
        "zero_variance_fraction_generated": round(
            statistics.mean(s["zero_variance_fraction_generated"] for s in steps), 4
        ),
        "reward_mean": round(statistics.mean(s["reward_mean"] for s in steps), 4),
        **memory,
    }
    if side == "ours":
        out["generation_rounds"] = [s["generation_rounds"] for s in steps]
        out["timers_median_s"] = {
            k: round(statistics.median(s["timers"][k] for s in steps), 3) for k in steps[0]["timers"]
        }
    out["peak_increment_mb"] = out["peak_mb"] - out["before_mb"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompt groups trained per step")
    parser.add_argument("--generations", type=int, default=4, help="completions per prompt (group size)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=4, help="samples per forward/backward")
    parser.add_argument("--finetune", choices=("lora", "full"), default="lora")
    parser.add_argument("--beta", type=float, default=0.01, help="KL coefficient (> 0: reference log-probs)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--reward-rate", type=float, default=0.25, help="share of completions scoring 1")
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per side (interleaved)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per side")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one more step per side")
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--out", default=None, help="write the JSON result here too")
    args = parser.parse_args(argv)
    if (args.prompts * args.generations) % args.micro_batch:
        parser.error("--prompts x --generations must be a multiple of --micro-batch")

    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="grpo-step-bench-"))
    data_path, folder = workdir / "train.jsonl", workdir / "hf"
    write_records(data_path, args.records, args.seed)
    context = multiprocessing.get_context("spawn")
    conns, procs = {}, {}

    def start(side: str, target: Callable[..., None], *extra: Any) -> Any:
        conns[side], child = context.Pipe()
        procs[side] = context.Process(target=worker, args=(target, child, args, *extra), name=side)
        procs[side].start()
        return receive(conns[side], procs[side], side)

    try:
        tick = time.perf_counter()
        ours_info = start("ours", ours_worker, str(data_path), str(folder))
        prompt_ids = ours_info.pop("prompt_ids")
        trl_info = start("trl", trl_worker, str(folder), prompt_ids)
        lengths = sorted(len(ids) for ids in prompt_ids)
        print(
            f"setup {time.perf_counter() - tick:.0f}s; model small Qwen3 {SMALL}, vocabulary 151,936, text bridge, "
            f"{args.finetune}; parameters ours {ours_info['parameters']:,} / TRL {trl_info['parameters']:,}, "
            f"trainable ours {ours_info['trainable']:,} / TRL {trl_info['trainable']:,}; per step "
            f"{args.prompts} prompts x {args.generations}, {args.max_new_tokens} new tokens, micro-batch "
            f"{args.micro_batch}; prompts of {lengths[0]}-{lengths[-1]} tokens (median "
            f"{lengths[len(lengths) // 2]}); threads {args.threads or torch.get_num_threads()} per side"
        )

        def step(side: str, command: str = "step") -> dict[str, Any]:
            conns[side].send(command)
            return receive(conns[side], procs[side], side)

        for _ in range(args.warmup):
            for side in SIDES:
                step(side)
        # profiled after the warm-up, before the timed steps (the profiler's overhead stays out of them)
        for side in SIDES if args.profile else ():  # printed at once: a run stopped early keeps them
            profiled = step(side, "profile")
            print(
                f"--- profile of one {side} step ({profiled['wall_s']:.1f}s; self CPU time) ---\n{profiled['table']}",
                flush=True,
            )
        records: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for i in range(args.steps):  # alternate who goes first: shared-core noise hits both alike
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                records[side].append(step(side))
            print(
                f"step {i + 1}: "
                + ", ".join(
                    f"{s} {records[s][-1]['wall_s']:.2f}s ({records[s][-1]['trained_tokens']} trained, "
                    f"{records[s][-1]['generated_tokens']} generated tokens in {records[s][-1]['generate_s']:.1f}s, "
                    f"{records[s][-1]['zero_variance_groups_trained']}/{records[s][-1]['trained_groups']} "
                    f"zero-variance groups trained"
                    + (f", phases {records[s][-1]['timers']}" if "timers" in records[s][-1] else "")
                    + f", peak so far {child_peak_mb(procs[s].pid)} MB)"
                    for s in SIDES
                )
                + f"; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        memory = {}
        for side in SIDES:
            conns[side].send("finish")
            memory[side] = receive(conns[side], procs[side], side)
            procs[side].join(timeout=120)
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.kill()
    sides = {side: summarise(side, records[side], memory[side]) for side in SIDES}
    ours, trl = sides["ours"], sides["trl"]
    for s in sides.values():
        print(
            f"{s['side']:>4}: median step {s['median_step_s']:.2f}s, trained {s['trained_tokens_per_s']:.1f} tokens/s "
            f"({s['trained_tokens_per_step']:.0f}/step), useful {s['useful_trained_tokens_per_s']:.1f} tokens/s, "
            f"generated {s['generated_tokens_per_s']:.1f} tokens/s ({s['generated_tokens_per_step']:.0f}/step, "
            f"{s['generate_share_of_step']:.0%} of the step), zero-variance groups trained "
            f"{s['zero_variance_groups_trained']}/{s['trained_groups']} ({s['zero_variance_token_share_trained']:.1%} "
            f"of trained tokens), peak memory {s['peak_mb']} MB (+{s['peak_increment_mb']} MB in steps)"
        )
    print(
        f"ours: zero-variance groups dropped {ours['zero_variance_fraction_generated']:.1%} of those generated, "
        f"generation rounds {ours['generation_rounds']}, phases (median s) {ours['timers_median_s']}"
    )
    rounds = [
        (a["trained_tokens"] / a["wall_s"]) / (b["trained_tokens"] / b["wall_s"])
        for a, b in zip(records["ours"], records["trl"], strict=True)
    ]
    ratios = {
        "trained_tokens_per_s": round(ours["trained_tokens_per_s"] / trl["trained_tokens_per_s"], 3),
        "trained_tokens_per_s_median_of_rounds": round(statistics.median(rounds), 3),
        "round_ratios": [round(r, 3) for r in rounds],
        "useful_trained_tokens_per_s": round(
            ours["useful_trained_tokens_per_s"] / max(trl["useful_trained_tokens_per_s"], 1e-9), 3
        ),
        "generated_tokens_per_s": round(ours["generated_tokens_per_s"] / trl["generated_tokens_per_s"], 3),
        "median_step_s": round(ours["median_step_s"] / trl["median_step_s"], 3),
        "peak_memory": round(ours["peak_mb"] / trl["peak_mb"], 3),
    }
    load_end = os.getloadavg()
    targets = {
        "throughput_1.5x": ratios["trained_tokens_per_s"] >= 1.5,
        "useful_throughput_1.5x": ratios["useful_trained_tokens_per_s"] >= 1.5,
        "peak_memory_le_trl": ratios["peak_memory"] <= 1.0,
        "ours_zero_variance_update_0pct": ours["zero_variance_token_share_trained"] == 0,
    }
    print(
        f"ours / TRL: trained tokens/s {ratios['trained_tokens_per_s']:.2f}x (median of rounds "
        f"{ratios['trained_tokens_per_s_median_of_rounds']:.2f}x), useful trained tokens/s "
        f"{ratios['useful_trained_tokens_per_s']:.2f}x, generated tokens/s {ratios['generated_tokens_per_s']:.2f}x, "
        f"median step {ratios['median_step_s']:.2f}x, peak memory {ratios['peak_memory']:.2f}x; "
        f"TRL's update on zero-variance groups: {trl['zero_variance_token_share_trained']:.1%} of its trained tokens "
        f"({trl['zero_variance_groups_trained']}/{trl['trained_groups']} groups), ours "
        f"{ours['zero_variance_token_share_trained']:.1%}; load average {load_start[0]:.2f} -> {load_end[0]:.2f}"
    )
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    result = {
        "benchmark": "grpo_step",
        "device": "cpu",
        "threads": args.threads or torch.get_num_threads(),
        "load_average_start_end": [[round(x, 2) for x in load_start], [round(x, 2) for x in load_end]],
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "arch": SMALL,
        "parameters": {"ours": ours_info["parameters"], "trl": trl_info["parameters"]},
        "trainable": {"ours": ours_info["trainable"], "trl": trl_info["trainable"]},
        **sides,
        "ratios_ours_over_trl": ratios,
        "targets": targets,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
