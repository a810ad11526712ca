"""The GRPO stage: `run_grpo(GRPOConfig()) -> TrainResult`, called on every rank (torchrun or one process).

Top to bottom: distributed init -> tokenizer -> encoder -> bridge -> model (+LoRA) -> the SFT weights
(`checkpoint.load_model_from`) or a resumed GRPO checkpoint -> DDP, optimizer, scheduler -> prompts with a
registered reward -> reference policy -> the loop: `grpo_step` -> metrics -> validation reward -> checkpoint.
Checkpoints hold the model, optimizer, scheduler, RNG, the prompt stream's position, the dynamic-sampling
carry-over and the routing schedule's step, so a stopped run resumes to the same rewards and losses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from protein_llm_nemo.runtime import get_logger, initialize_distributed, setup_logging
from protein_llm_nemo.training.checkpoint_files import step_folder
from protein_llm_nemo.training.grpo.config import GRPOConfig, RewardsConfig
from protein_llm_nemo.training.grpo.dynamic_sampling import GroupSampler, PromptStream
from protein_llm_nemo.training.grpo.reference import ReferencePolicy
from protein_llm_nemo.training.grpo.rollout import PromptBuilder, collect_groups
from protein_llm_nemo.training.grpo.routing import GradientRouter
from protein_llm_nemo.training.grpo.step import GRPOParts, grpo_step
from protein_llm_nemo.training.result import TrainResult

__all__ = ["GRPOResult", "GRPOSession", "load_prompts", "run_grpo", "setup_grpo"]

logger = get_logger(__name__)


@dataclass
class GRPOResult(TrainResult):
    """`TrainResult` plus the mean reward of every step's rollouts and the validation rewards by step."""

    rewards: list[float] = field(default_factory=list)
    valid_rewards: dict[int, float] = field(default_factory=dict)


def load_prompts(path: str, tasks: list[str] | None) -> tuple[list[Any], dict[str, Any]]:
    """Records that a registered reward can score (ground truth present); the rest counted by reason."""
    from protein_llm_nemo.data import ReasonCounter, read_records
    from protein_llm_nemo.rewards import has_reward, missing_ground_truth

    read = ReasonCounter()
    kept, skipped = [], ReasonCounter()
    for record in read_records(path, read):
        skipped.seen += 1
        if tasks is not None and record.task not in tasks:
            skipped.drop(f"task_not_selected:{record.task}")
        elif not has_reward(record.task):
            skipped.drop(f"no_reward_for_task:{record.task}")
        elif (problem := missing_ground_truth(record)) is not None:
            skipped.drop(f"no_ground_truth:{problem}")
        else:
            skipped.keep()
            kept.append(record)
    read.check(f"records read from {path}")
    skipped.check(f"prompts selected from {path}")
    report = {"path": path, "read": read.to_dict(), "selection": skipped.to_dict()}
    if tasks is not None:
        unknown = [t for t in tasks if not has_reward(t)]
        if unknown:
            raise ValueError(f"data.tasks {unknown} have no registered reward")
    if not kept:
        raise ValueError(f"{path}: no prompt with a registered reward and its ground truth ({report})")
    return kept, report


@dataclass
class GRPOData:
    """The run's resumable position: the prompt stream, the dynamic-sampling carry-over, the routing step."""

    sampler: GroupSampler
    router: GradientRouter

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "router": self.router.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.router.load_state_dict(state["router"])


@dataclass
class GRPOSession:
    config: GRPOConfig
    model: Any
    parts: GRPOParts
    data: GRPOData
    metrics: Any
    start_step: int
    valid_records: list[Any] = field(default_factory=list)
    export_header: Any = None

    def validation_reward(self) -> dict[str, float]:
        """Mean reward of greedy answers to the validation prompts (every rank calls it)."""
        from protein_llm_nemo.generation import SamplingParams

        if not self.valid_records:
            return {}
        sampling = SamplingParams(temperature=0, max_new_tokens=self.config.grpo.max_new_tokens, n=1)
        groups = collect_groups(
            self.model, self.valid_records, self.parts.prompt_builder, sampling, self.parts.reward_fn,
            self.parts.tokenizer, self.parts.embed,
        )  # fmt: skip
        rewards = torch.cat([g.rewards for g in groups])
        formats = torch.cat([g.format_ok.float() for g in groups])
        return {"valid/reward": float(rewards.mean()), "valid/format_compliance": float(formats.mean())}

    def run(self) -> GRPOResult:
        from protein_llm_nemo.training.checkpoint import save_checkpoint
        from protein_llm_nemo.training.metrics import peak_memory_bytes

        config = self.config
        result = GRPOResult(steps=self.start_step, start_step=self.start_step)
        start = time.perf_counter()
        step = self.start_step
        while step < config.train.max_steps:
            tick = time.perf_counter()
            out = grpo_step(self.parts, step)
            step += 1
            out["timers"]["total"] = time.perf_counter() - tick
            out["generated_tokens_per_s"] = out["generated_tokens"] / max(out["timers"]["generation"], 1e-9)
            result.losses.append(out["loss"] if not out["skipped"] else math.nan)
            result.rewards.append(out["reward/mean"])
            result.skipped_steps += int(out["skipped"])
            result.tokens += int(out["trained_tokens"])
            if config.train.eval_interval and step % config.train.eval_interval == 0:
                valid = self.validation_reward()
                out.update(valid)
                if valid:
                    result.valid_rewards[step] = valid["valid/reward"]
            self.metrics.log(step, step_metrics(out))
            self.metrics.progress(
                step, out["loss"], out["generated_tokens_per_s"], out["learning_rates"].get("main", 0.0)
            )
            save_now = config.checkpoint.save_interval and step % config.checkpoint.save_interval == 0
            last = step == config.train.max_steps or step == config.train.stop_at_step
            if config.checkpoint.dir and (save_now or (last and config.checkpoint.save_final)):
                path = save_checkpoint(
                    config.checkpoint.dir, step, self.parts.model_chunks, self.parts.optimizer,
                    self.parts.scheduler, self.data.state_dict(), keep_last=config.checkpoint.keep_last,
                    export_header=self.export_header,
                )  # fmt: skip
                result.checkpoint_dir = str(path)
            if config.train.stop_at_step is not None and step >= config.train.stop_at_step:
                break
        result.steps = step
        result.elapsed_s = time.perf_counter() - start
        result.peak_memory_bytes = peak_memory_bytes()
        self.metrics.close()
        return result


def run_grpo(config: GRPOConfig) -> GRPOResult:
    return setup_grpo(config).run()


def setup_grpo(config: GRPOConfig) -> GRPOSession:
    """Build everything for `config` and restore a checkpoint or the SFT weights (every rank calls it).
    Bad configurations fail here, before any generation."""
    from megatron.core import parallel_state

    from protein_llm_nemo.bridges import get_bridge_config_class
    from protein_llm_nemo.rewards import score
    from protein_llm_nemo.tokenizer import QWEN3_PAD_ID, load_tokenizer
    from protein_llm_nemo.training.batches import encoder_embed_fn
    from protein_llm_nemo.training.build import (
        build_metrics,
        device,
        export_header,
        restore,
    )
    from protein_llm_nemo.training.checkpoint import resolve_resume
    from protein_llm_nemo.training.sft import build_protein_llm_training

    setup_logging(config.logging.level)
    if not config.data.train_path:
        raise ValueError("data.train_path is required (canonical records with ground truth in meta)")
    grpo = config.grpo
    resuming = resolve_resume(
        config.checkpoint.dir, config.checkpoint.resume_from, config.checkpoint.auto_resume
    )
    if config.checkpoint.load_model_from:  # a run folder (SFT's checkpoint.dir) stands for its latest step
        config.checkpoint.load_model_from = str(step_folder(config.checkpoint.load_model_from))
    uses_encoder = get_bridge_config_class(config.bridge.name).uses_encoder
    if uses_encoder and not (config.checkpoint.load_model_from or resuming or config.allow_untrained_bridge):
        raise ValueError(
            f"GRPO would start from an untrained {config.bridge.name!r} bridge: set checkpoint.load_model_from to "
            "an SFT checkpoint of the same bridge (or allow_untrained_bridge=True if you mean it)"
        )
    if config.checkpoint.load_model_from and not resuming:
        check_start_checkpoint(config)
    train_records, train_report = load_prompts(config.data.train_path, config.data.tasks)
    valid_records: list[Any] = []
    if config.data.valid_path:
        valid_records, _ = load_prompts(config.data.valid_path, config.data.tasks)
        valid_records = valid_records[: config.data.valid_max_prompts]
    configure_rewards(config.rewards, {r.task for r in [*train_records, *valid_records]})
    initialize_distributed(config.parallel, seed=config.train.seed)
    tokenizer = load_tokenizer(config.model.tokenizer)
    built = build_protein_llm_training(config)
    arch, bridge_config, encoder, model = built.arch, built.bridge_config, built.encoder, built.model
    model_chunks, optimizer, scheduler = built.model_chunks, built.optimizer, built.scheduler
    router = GradientRouter(
        config.optimizer.clip_grad,
        per_group_clip=config.routing.per_group_clip,
        balance=config.routing.balance,
        freeze_bridge_steps=config.routing.freeze_bridge_steps,
    )
    sampler = GroupSampler(
        PromptStream(train_records, seed=config.data.seed, shuffle=config.data.shuffle),
        num_prompts_per_step=grpo.num_prompts_per_step,
        dynamic=grpo.dynamic_sampling,
        batch_multiplier=grpo.batch_multiplier,
        max_generation_rounds=grpo.max_generation_rounds,
    )
    data = GRPOData(sampler, router)
    reference = None
    if grpo.beta > 0:
        # The reference is the policy GRPO starts from (the SFT weights), also when this run resumes a GRPO
        # checkpoint: load the start weights first, snapshot them, then restore.
        if config.checkpoint.load_model_from:
            from protein_llm_nemo.training.checkpoint import load_model_weights

            load_model_weights(config.checkpoint.load_model_from, model_chunks)
        reference = ReferencePolicy(model)
    start_step = restore(config.checkpoint, model_chunks, optimizer, scheduler, data)
    samples = grpo.num_prompts_per_step * grpo.num_generations
    dp = parallel_state.get_data_parallel_world_size()
    if samples % (dp * config.data.micro_batch_size):
        raise ValueError(
            f"num_prompts_per_step x num_generations = {samples} must be a multiple of data-parallel size {dp} "
            f"x data.micro_batch_size {config.data.micro_batch_size}"
        )
    embed = encoder_embed_fn(encoder, device(), model.config.params_dtype) if encoder is not None else None
    parts = GRPOParts(
        model_chunks=model_chunks,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        prompt_builder=PromptBuilder(tokenizer, bridge_config, config.data.system_prompt),
        tokenizer=tokenizer,
        reward_fn=score,
        grpo=grpo,
        router=router,
        micro_batch_size=config.data.micro_batch_size,
        clip_grad=config.optimizer.clip_grad,
        pad_id=QWEN3_PAD_ID if arch.vocab_size > QWEN3_PAD_ID else 0,
        reference=reference,
        embed=embed,
        seq_length=config.data.seq_length,
        seed=config.train.seed,
    )
    metrics = build_metrics(config.logging, config.checkpoint, config.train, start_step, config)
    metrics.log(start_step, {"data": {"train": train_report}})
    header = export_header(arch, bridge_config, model, config.lora, encoder, source="grpo")
    return GRPOSession(config, model, parts, data, metrics, start_step, valid_records, header)


GO_TASKS = ("go_mf", "go_bp", "go_cc")


def configure_rewards(rewards: RewardsConfig, tasks: set[str]) -> None:
    """Install the GO reward on the configured ontology when the prompts hold a GO task (loaded now: a
    missing ontology fails here, not at the first rollout)."""
    import os

    from protein_llm_nemo.rewards import configure_reward
    from protein_llm_nemo.rewards.go_terms import OBO_ENV, GoRewardConfig

    go = sorted(tasks & set(GO_TASKS))
    if not go:
        return
    for key, path in (("go_obo", rewards.go_obo), ("go_ontology_dir", rewards.go_ontology_dir)):
        if path and not Path(path).exists():
            raise FileNotFoundError(f"rewards.{key}={path} does not exist")
    if not (rewards.go_obo or rewards.go_ontology_dir or os.environ.get(OBO_ENV)):
        raise ValueError(
            f"the prompts hold GO tasks ({', '.join(go)}): their reward needs the Gene Ontology; set "
            f"rewards.go_obo=<go.obo> (or ${OBO_ENV}), or select other tasks with data.tasks"
        )
    config = GoRewardConfig(obo=rewards.go_obo, ontology_dir=rewards.go_ontology_dir)
    configure_reward(GO_TASKS[0], config=config)


def step_metrics(out: dict[str, Any]) -> dict[str, Any]:
    """A step's metrics as flat scalars (TensorBoard takes numbers only): nested dicts become `name/key`
    (`timers/generation`, `lr/main`, `grad_norm/before/lora`); the loss, gradient norm and skip flag are
    `train/...` as in SFT's log."""
    from protein_llm_nemo.training.metrics import peak_memory_bytes

    renamed = {
        "loss": "train/loss",
        "grad_norm": "train/grad_norm",
        "skipped": "train/skipped",
        "trained_tokens": "train/trained_tokens",
        "learning_rates": "lr",
        "generated_tokens_per_s": "throughput/generated_tokens_per_s",
    }
    flat: dict[str, Any] = {}
    for key, value in out.items():
        name = renamed.get(key, key)
        if isinstance(value, dict):
            flat.update({f"{name}/{inner}": item for inner, item in value.items()})
        else:
            flat[name] = value
    flat["memory/peak_bytes"] = peak_memory_bytes()
    return flat


def check_start_checkpoint(config: GRPOConfig) -> None:
    """The SFT checkpoint must be of this bridge and architecture (named before anything is built)."""
    from pathlib import Path

    from protein_llm_nemo.conversion.megatron_io import CheckpointHeader
    from protein_llm_nemo.conversion.spec import ProteinLLMSpec
    from protein_llm_nemo.training.build import resolve_arch

    path = Path(config.checkpoint.load_model_from)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint.load_model_from={path} does not exist")
    step = step_folder(path)
    header = CheckpointHeader.read(step)
    spec = ProteinLLMSpec.from_header(header)
    if spec is not None and spec.bridge_config.name != config.bridge.name:
        raise ValueError(
            f"checkpoint.load_model_from={path} holds a {spec.bridge_config.name!r} bridge, this run is "
            f"{config.bridge.name!r}: start GRPO from an SFT checkpoint of the same bridge"
        )
    arch = resolve_arch(config.model)
    differing = [
        k
        for k, v in arch.to_dict().items()
        if header.arch.to_dict().get(k) != v and k != "max_position_embeddings"
    ]
    if differing:
        raise ValueError(
            f"checkpoint.load_model_from={path} is another architecture: {', '.join(differing)} differ from "
            f"model.preset={config.model.preset!r}"
        )
