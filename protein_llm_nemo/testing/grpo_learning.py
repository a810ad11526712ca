"""Does GRPO learn? A verifiable protein-dependent yes / no task, a briefly SFT-warmed tiny policy, then GRPO,
with the validation reward (greedy, and the mean over sampled completions) measured before and after. Shared by `tests/training/grpo/test_grpo_learns.py`
(a fast version) and `benchmarks/grpo_learning.py` (the table in docs/grpo.md).

The task (`binary_property` reward, truth in `meta["answer"]`): "Is the GRAVY hydropathy score of this
protein positive? Answer yes or no." GRAVY is the mean Kyte-Doolittle hydropathy of the residues. Sequences
(M + 23-39 residues by default) are drawn from Swiss-Prot's amino-acid composition tilted towards hydrophobic
(membrane-like) or polar residues and redrawn until |GRAVY| >= 0.5, so no sequence sits near the threshold
and the answer is a pure function of the sequence. Labels alternate (balanced), so a constant answer scores
0.55 (0.9 x half correct + 0.1 format). A tiny random language model cannot know the answer before training:
it has to read it from the protein (the residues spelled out as text tokens for the `text` bridge, the
encoder's residue states for the encoder bridges).

    run = run_learning(LearningSetup(bridge="mlp"), work_dir)   # SFT -> GRPO in this process
    run["valid_before"]["reward"], run["valid_after"]["reward"]

`control=True` trains on a reward with no variance (every completion scores the same, so every group's
advantage is exactly 0): the policy gets no policy-gradient signal and its validation reward must not rise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "INSTRUCTION",
    "TASK",
    "LearningSetup",
    "greedy_validation",
    "property_sequence",
    "run_learning",
    "write_property_records",
]

TASK = "binary_property"
INSTRUCTION = "Is the GRAVY hydropathy score of this protein positive? Answer yes or no."
# Kyte & Doolittle (1982) hydropathy; GRAVY is its mean over the residues.
KYTE_DOOLITTLE = {
    "A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5, "Q": -3.5, "E": -3.5, "G": -0.4, "H": -3.2, "I": 4.5,
    "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6, "S": -0.8, "T": -0.7, "W": -0.9, "Y": -1.3, "V": 4.2,
}  # fmt: skip
# Swiss-Prot amino-acid composition (%).
BACKGROUND = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27, "I": 5.96,
    "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87,
}  # fmt: skip
TILT = 0.15  # composition tilt exp(+-TILT * hydropathy): membrane-like vs soluble, polar proteins
MARGIN = 0.5  # kept sequences have |GRAVY| >= MARGIN: none sits near the threshold 0


def gravy(sequence: str) -> float:
    return sum(KYTE_DOOLITTLE[a] for a in sequence) / len(sequence)


def property_sequence(
    rng: random.Random, hydrophobic: bool, min_length: int = 24, max_length: int = 40
) -> str:
    """A sequence starting with M from Swiss-Prot's composition tilted towards hydrophobic (or polar)
    residues, redrawn until its GRAVY is at least MARGIN away from 0 on the requested side."""
    sign = 1.0 if hydrophobic else -1.0
    residues = list(BACKGROUND)
    weights = [BACKGROUND[a] * math.exp(sign * TILT * KYTE_DOOLITTLE[a]) for a in residues]
    while True:
        length = rng.randint(min_length, max_length)
        sequence = "M" + "".join(rng.choices(residues, weights=weights, k=length - 1))
        if sign * gravy(sequence) >= MARGIN:
            return sequence


def write_property_records(
    path: Path | str, n: int, seed: int, min_length: int = 24, max_length: int = 40
) -> str:
    """`n` canonical records of the task, labels alternating; the label is recomputed from the sequence."""
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for i in range(n):
            sequence = property_sequence(rng, bool(i % 2), min_length, max_length)
            answer = gravy(sequence) > 0
            record = {
                "id": f"gravy:{seed}:{i}",
                "sequences": [sequence],
                "instruction": INSTRUCTION,
                "response": "Yes." if answer else "No.",
                "task": TASK,
                "source": "synthetic",
                "meta": {"answer": answer, "gravy": round(gravy(sequence), 4)},
            }
            handle.write(json.dumps(record) + "\n")
    return str(path)


@dataclass
class LearningSetup:
    """One SFT -> GRPO run (the defaults are the measured ones in docs/grpo.md, "Learning and routing").

    The random language model trains too (`train_language_model`): with LoRA alone on it, no SFT warm-up we
    tried (up to 120 steps, or 960 examples) learned to read the answer from the protein. The warm-up is
    brief on purpose (30 steps of 8): the policy answers in format but not yet reliably, leaving GRPO
    something to sharpen. GRPO's learning rate is lower than SFT's: at 3e-3 (LoRA only, mlp bridge) the
    answer format collapsed within 3 steps (every sample malformed, no reward variance left)."""

    bridge: str = "mlp"
    seed: int = 0
    n_train: int = 256
    n_valid: int = 64
    min_length: int = 24  # residues per sequence
    max_length: int = 40
    sft_steps: int = 30
    sft_lr: float = 3e-3
    sft_bridge_lr: float = 3e-3
    sft_batch_size: int = 8  # records per SFT step (micro-batches of 1)
    grpo_steps: int = 20
    num_prompts_per_step: int = 8
    num_generations: int = 4
    micro_batch_size: int = 16
    lr: float = 1e-3
    bridge_lr: float = 3e-3
    beta: float = 0.0
    lora_rank: int = 8
    train_language_model: bool = True  # the (random) language model's own weights train too, besides LoRA
    control: bool = False  # train on a reward with no variance: zero advantages everywhere
    freeze_bridge_steps: int = 0
    balance: bool = False
    per_group_clip: bool = False
    valid_samples: int = 4  # > 0: also the sampled validation reward (see `greedy_validation`)
    eval_every: int = 0  # also measure the validation reward every N GRPO steps (0: before and after only)
    bridge_overrides: dict[str, Any] = field(default_factory=dict)


def _bridge_selection(setup: LearningSetup):
    from protein_llm_nemo.bridges import get_bridge_config_class
    from protein_llm_nemo.training.config import BridgeSelection

    # mlp: the sizes the measured runs used; another bridge: its CPU sizes.
    if setup.bridge == "mlp":
        overrides = {"num_slots": 4, "num_heads": 4, "projector_hidden_size": 64}
    else:
        overrides = dict(get_bridge_config_class(setup.bridge).cpu_sizes)
    return BridgeSelection(setup.bridge, {**overrides, **setup.bridge_overrides})


def _lora(setup: LearningSetup):
    from protein_llm_nemo.models.lora import DEFAULT_TARGET_MODULES, LoRAConfig

    # The output layer too: the logits of the tiny policy's random 64-wide head span ~2 nats against
    # log(151k) ~ 12, and even trained in full (lr 3e-3, 30 steps) it stays flat at temperature 1: 16% of
    # sampled answers well-formed, against 94% with this adapter (its scaling sharpens the answer tokens).
    targets = [*DEFAULT_TARGET_MODULES, "output_layer"]
    return LoRAConfig(rank=setup.lora_rank, alpha=2.0 * setup.lora_rank, dropout=0.0, target_modules=targets)


def sft_config(setup: LearningSetup, data_dir: Path, sft_dir: Path):
    from protein_llm_nemo.training import (
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
        model=ModelConfig(freeze_language_model=not setup.train_language_model),
        bridge=_bridge_selection(setup),
        data=DataConfig(
            train_path=str(data_dir / "train.jsonl"),
            seq_length=128,
            micro_batch_size=1,
            global_batch_size=setup.sft_batch_size,
            seed=setup.seed,
            system_prompt=None,
        ),
        optimizer=OptimizerConfig(lr=setup.sft_lr, bridge_lr=setup.sft_bridge_lr),
        scheduler=SchedulerConfig(warmup_steps=2, decay_style="constant"),
        train=TrainConfig(max_steps=setup.sft_steps, progress_bar=False, seed=setup.seed),
        checkpoint=CheckpointConfig(dir=str(sft_dir), save_final=True),
        logging=LoggingConfig(tensorboard=False, level="WARNING"),
        lora=_lora(setup),
    )


def grpo_config(setup: LearningSetup, data_dir: Path, sft_step: Path):
    from protein_llm_nemo.training.config import (
        CheckpointConfig,
        LoggingConfig,
        ModelConfig,
        OptimizerConfig,
        SchedulerConfig,
        TrainConfig,
    )
    from protein_llm_nemo.training.grpo import GRPOConfig, GRPODataConfig, GRPOSection, RoutingConfig

    return GRPOConfig(
        model=ModelConfig(freeze_language_model=not setup.train_language_model),
        bridge=_bridge_selection(setup),
        data=GRPODataConfig(
            train_path=str(data_dir / "train.jsonl"),
            valid_path=str(data_dir / "valid.jsonl"),
            micro_batch_size=setup.micro_batch_size,
            seed=setup.seed,
            valid_max_prompts=None,
            system_prompt=None,
        ),
        grpo=GRPOSection(
            num_prompts_per_step=setup.num_prompts_per_step,
            num_generations=setup.num_generations,
            max_new_tokens=4,  # "Yes." + <|im_end|> is 3 tokens
            beta=setup.beta,
            # One code path for the learning runs and the control (whose groups all have zero variance).
            dynamic_sampling=False,
        ),
        routing=RoutingConfig(
            per_group_clip=setup.per_group_clip,
            balance=setup.balance,
            freeze_bridge_steps=setup.freeze_bridge_steps,
        ),
        optimizer=OptimizerConfig(lr=setup.lr, bridge_lr=setup.bridge_lr),
        scheduler=SchedulerConfig(warmup_steps=0, decay_style="constant"),
        train=TrainConfig(max_steps=setup.grpo_steps, progress_bar=False, seed=setup.seed),
        checkpoint=CheckpointConfig(dir=None, load_model_from=str(sft_step)),
        logging=LoggingConfig(tensorboard=False, level="WARNING"),
        lora=_lora(setup),
    )


def greedy_validation(session, samples: int = 0, seed: int = 12345) -> dict[str, float]:
    """Greedy answers to the validation prompts scored by the registered reward (whatever the run trains
    on): mean reward, accuracy, format compliance, and the share of "yes" answers (a constant answerer
    shows up as 0 or 1). `samples` > 0 adds `sampled_reward` / `sampled_format`: the mean over that many
    completions per prompt sampled at the rollouts' temperature from fixed random streams (`seed`), the
    expected reward of the sampling policy, which moves before the greedy answers flip."""
    import torch

    from protein_llm_nemo.generation import SamplingParams
    from protein_llm_nemo.rewards import score
    from protein_llm_nemo.training.grpo.rollout import collect_groups

    parts = session.parts
    grpo = session.config.grpo

    def collect(sampling):
        return collect_groups(
            session.model,
            session.valid_records,
            parts.prompt_builder,
            sampling,
            score,
            parts.tokenizer,
            parts.embed,
        )

    groups = collect(SamplingParams(temperature=0, max_new_tokens=grpo.max_new_tokens, n=1))
    rewards = torch.cat([g.rewards for g in groups])
    correct = torch.cat([g.components.get("correct", torch.zeros(g.size)) for g in groups])
    formats = torch.cat([g.format_ok.float() for g in groups])
    said_yes = [score(g.record, text).parsed_answer is True for g in groups for text in g.texts]
    out = {
        "reward": float(rewards.mean()),
        "accuracy": float(correct.mean()),
        "format": float(formats.mean()),
        "yes_share": sum(said_yes) / max(len(said_yes), 1),
    }
    if samples:
        sampling = SamplingParams(
            temperature=grpo.temperature,
            top_p=grpo.top_p,
            top_k=grpo.top_k,
            max_new_tokens=grpo.max_new_tokens,
            n=samples,
            seed=seed,
        )
        groups = collect(sampling)
        out["sampled_reward"] = float(torch.cat([g.rewards for g in groups]).mean())
        out["sampled_format"] = float(torch.cat([g.format_ok.float() for g in groups]).mean())
    return out


def _constant_reward(record, completion):
    """The registered reward's components (for logging) with a total that never varies: zero advantages."""
    from protein_llm_nemo.rewards import score

    return dataclasses.replace(score(record, completion), total=0.5)


def _output_adapter_share(model_chunks) -> float:
    """||grad of the output layer's adapter|| / ||grad of every adapter||, read after the step: routing and
    clipping scale the whole LoRA group alike, so the share is the same before them."""
    import torch

    from protein_llm_nemo.models.parameter_groups import parameter_group
    from protein_llm_nemo.training.optimizer import strip_wrapper_prefix

    total, output = 0.0, 0.0
    for chunk in model_chunks:
        for name, param in chunk.named_parameters():
            grad = getattr(param, "main_grad", None)
            if (
                not param.requires_grad
                or grad is None
                or parameter_group(strip_wrapper_prefix(name)) != "lora"
            ):
                continue
            square = float(torch.sum(grad.float() ** 2))
            total += square
            output += square if "output_layer" in name else 0.0
    return math.sqrt(output / total) if total > 0 else 0.0


def _step_row(out: dict[str, Any], model_chunks) -> dict[str, Any]:
    return {
        "lora_output_share": _output_adapter_share(model_chunks),
        "reward": out["reward/mean"],
        "correct": out.get("reward/correct", float("nan")),
        "zero_variance_groups": out["trained_zero_variance_groups"],
        "grad_before": dict(out["grad_norm/before"]),
        "grad_after": dict(out["grad_norm/after"]),
        "loss": out["loss"],
        "timers": dict(out["timers"]),
    }


def run_learning(
    setup: LearningSetup, work_dir: Path | str, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """SFT warm-up then GRPO in this process (a single-rank process group is started if none is); returns
    the validation metrics before and after GRPO, per-step rows and wall times. `log` gets a line per step."""
    from protein_llm_nemo.training.checkpoint_files import latest_checkpoint
    from protein_llm_nemo.training.grpo import setup_grpo
    from protein_llm_nemo.training.grpo.step import grpo_step
    from protein_llm_nemo.training.sft import run_sft

    work_dir = Path(work_dir)
    tag = f"{setup.seed}-{setup.min_length}-{setup.max_length}"
    data_dir = work_dir / f"data-{tag}"
    sft_dir = (
        work_dir
        / f"sft-{setup.bridge}-{'full' if setup.train_language_model else 'lora'}-{tag}-{setup.sft_steps}x{setup.sft_batch_size}-{setup.sft_lr:g}-{setup.sft_bridge_lr:g}"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    lengths = (setup.min_length, setup.max_length)
    write_property_records(data_dir / "train.jsonl", setup.n_train, 1000 + setup.seed, *lengths)
    write_property_records(data_dir / "valid.jsonl", setup.n_valid, 2000 + setup.seed, *lengths)

    tick = time.perf_counter()
    if not (sft_dir / "latest").is_file():  # runs sharing a bridge and seed share one SFT warm-up
        run_sft(sft_config(setup, data_dir, sft_dir))
    sft_s = time.perf_counter() - tick

    tick = time.perf_counter()
    # The step folder: `load_model_from` loads the path it is given as one checkpoint.
    session = setup_grpo(grpo_config(setup, data_dir, latest_checkpoint(sft_dir)))
    if setup.control:
        session.parts.reward_fn = _constant_reward
    before = greedy_validation(session, setup.valid_samples)
    curve = {0: before["reward"]}
    steps = []
    for step in range(setup.grpo_steps):
        steps.append(_step_row(grpo_step(session.parts, step), session.parts.model_chunks))
        if setup.eval_every and (step + 1) % setup.eval_every == 0 and step + 1 < setup.grpo_steps:
            curve[step + 1] = greedy_validation(session)["reward"]
        if log is not None:
            row = steps[-1]
            norms = " ".join(f"{g}={n:.3g}" for g, n in row["grad_before"].items())
            valid = f" valid {curve[step + 1]:.3f}" if step + 1 in curve else ""
            log(f"step {step + 1}: rollout reward {row['reward']:.3f}, grad {norms}{valid}")
    after = greedy_validation(session, setup.valid_samples)
    curve[setup.grpo_steps] = after["reward"]
    grpo_s = time.perf_counter() - tick
    session.metrics.close()
    return {
        "setup": dataclasses.asdict(setup),
        "valid_before": before,
        "valid_after": after,
        "valid_curve": curve,
        "steps": steps,
        "sft_s": sft_s,
        "grpo_s": grpo_s,
    }
