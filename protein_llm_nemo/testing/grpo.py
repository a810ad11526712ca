"""Rank bodies of the GRPO equivalence checks: our policy loss and gradients against TRL's `GRPOTrainer` on
the HF export (the fixed groups and tiny policy are shared with `testing.grpo_layouts`).

The groups are fixed (no generation): two prompts x four completions of a tiny ProteinLLM, with proteins for
the embedding bridges, one length-cut (overlong) completion, deterministic protein embeddings per sequence.

- `megatron_trl_cases`: our side of the TRL comparison. Builds the tiny model (full fine-tuning: the LLM,
  and the bridge and protein-token rows of the embedding bridges, train), exports it as a HF folder, takes the
  policy's log-probs of the completions, makes old / reference / generation log-probs from them by fixed
  perturbations, and for every case runs `train_step` (lr 0) with `make_grpo_forward_step`; returns the
  losses, the gradients under HF names and TRL's inputs.
- `trl_cases`: TRL's side: `GRPOTrainer._compute_loss` on the HF folder with those inputs, then backward.
- the layout check (`grpo_step` at TP / PP / DP vs one rank) is `testing.grpo_layouts`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

import torch

from protein_llm_nemo.bridges import get_bridge_config_class
from protein_llm_nemo.testing.tiny import (
    PAD_ID,
    TINY_ENCODER_DIM,
    TINY_TOKEN_IDS,
    build_tiny_model,
    from_portable,
    tiny_arch,
    tiny_bridge_config,
    to_portable,
)

__all__ = [
    "EPS_HIGH",
    "EPS_LOW",
    "GENERATIONS",
    "MAX_NEW_TOKENS",
    "SEED",
    "TRL_LOSS_AGG",
    "bridge_config",
    "build_policy",
    "build_training_parts",
    "fixed_groups",
    "megatron_trl_cases",
    "protein_embed",
    "trl_cases",
    "TrlCase",
]

GENERATIONS = 4
MAX_NEW_TOKENS = 8  # TRL's max_completion_length: Dr. GRPO's normaliser on both sides
EPS_LOW, EPS_HIGH = 0.2, 0.28  # clip-higher: eps_high != eps_low
# TRL loss_type -> our loss_agg_mode
TRL_LOSS_AGG = {"grpo": "seq-mean-token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm"}
SEED = 1234


@dataclasses.dataclass(frozen=True)
class TrlCase:
    """One comparison: TRL `loss_type`, the KL coefficient, and whether the importance-sampling weight
    exp(old - generation) multiplies the policy-gradient term (TRL's vLLM correction, our
    `importance_sampling_correction`)."""

    loss_type: str
    beta: float
    importance_sampling: bool = False

    @property
    def name(self) -> str:
        return f"{self.loss_type}-beta{self.beta}" + ("-is" if self.importance_sampling else "")


# -- fixed data ---------------------------------------------------------------------------------------------
def protein_embed(sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(embeddings [N, L, D], mask [N, L])`: a fixed random embedding per sequence (seeded by its text), so
    every micro-batch split and the HF side see the same protein whatever it is batched with."""
    lengths = [len(s) for s in sequences]
    embeddings = torch.zeros(len(sequences), max(lengths), TINY_ENCODER_DIM)
    mask = torch.zeros(len(sequences), max(lengths), dtype=torch.bool)
    for i, sequence in enumerate(sequences):
        generator = torch.Generator().manual_seed(zlib.crc32(sequence.encode()))
        # pre-norm-like encoder states: a large offset and scale
        embeddings[i, : lengths[i]] = torch.randn(lengths[i], TINY_ENCODER_DIM, generator=generator) * 4 + 3
        mask[i, : lengths[i]] = True
    return embeddings, mask


def _prompt(bridge_config, pieces: list[list[int]]) -> list[int]:
    """Text pieces joined by one protein placeholder each (text residues for the text bridge)."""
    ids = TINY_TOKEN_IDS
    tokens = list(pieces[0])
    for piece in pieces[1:]:
        if bridge_config.uses_encoder:
            tokens += [ids.start] + [ids.embed] * bridge_config.num_slots + [ids.end]
        else:
            tokens += [300, 301, 302]
        tokens += piece
    return tokens


def fixed_groups(bridge_name: str, seed: int = 7) -> list[Any]:
    """Two prompt groups of four completions (different prompt and completion lengths; the last completion of
    the second group is cut at `MAX_NEW_TOKENS`: overlong), with rewards of non-zero variance."""
    from protein_llm_nemo.training.grpo.rollout import Group

    config = bridge_config(bridge_name)
    generator = torch.Generator().manual_seed(seed)
    specs = [
        ([[11, 12], [13, 14, 15]], ["MKTAYIAKQR"], [3, 8, 5, 2], [0.1, 0.9, 0.4, 0.6]),
        ([[21], [22], [23, 24, 25, 26, 27]], ["GSHMLEDP", "ACDEFGHIKLW"], [6, 4, 7, 8], [1.0, 0.0, 0.3, 0.7]),
    ]
    groups = []
    for pieces, sequences, lengths, rewards in specs:
        completions = [torch.randint(30, 900, (n,), generator=generator).tolist() for n in lengths]
        groups.append(
            Group(
                record=None,
                prompt_ids=_prompt(config, pieces),
                sequences=sequences if config.uses_encoder else [],
                completions=completions,
                generation_logprobs=[[-1.0] * n for n in lengths],
                stop_reasons=["length" if n == MAX_NEW_TOKENS else "stop" for n in lengths],
                texts=["" for _ in lengths],
                rewards=torch.tensor(rewards),
                format_ok=torch.ones(len(lengths), dtype=torch.bool),
            )
        )
    return groups


def bridge_config(bridge_name: str):
    """The bridge at its test sizes without dropout: the bridges' dropout is functional (`F.dropout`), so
    TRL's `disable_dropout` (which zeroes `nn.Dropout` modules) would leave it on in the HF twin."""
    fields = {f.name for f in dataclasses.fields(get_bridge_config_class(bridge_name))}
    return tiny_bridge_config(bridge_name, **{f: 0.0 for f in fields if f.endswith("dropout")})


def build_policy(bridge_name: str, seed: int):
    """The tiny model with everything trainable (full fine-tuning: both implementations train the same
    named weights)."""
    model = build_tiny_model(bridge_config(bridge_name), seed)
    model.freeze(language_model=False)
    return model


def build_training_parts(model, lr: float):
    """DDP, megatron's Adam and a constant lr. Adam's eps is 1e-4, not 1e-8: a first Adam step moves a weight
    by about lr * g / (|g| + eps), which turns fp32 noise on gradients that are ~0 (1e-10 vs 2e-10) into
    lr-sized differences between layouts; with eps 1e-4 equal gradients give equal updates to fp32 noise."""
    from protein_llm_nemo.training.build import build_training
    from protein_llm_nemo.training.config import OptimizerConfig, SchedulerConfig, TrainConfig

    return build_training(
        model,
        OptimizerConfig(lr=lr, bridge_lr=lr, eps=1e-4, clip_grad=0.0),
        SchedulerConfig(warmup_steps=0, decay_style="constant"),
        TrainConfig(max_steps=10, progress_bar=False),
    )


# -- TRL comparison: our side ----------------------------------------------------------------------------
def _completion_values(
    microbatch_values: list[torch.Tensor], samples, micro_batch_size: int
) -> list[list[float]]:
    """Per-sample lists of a `[B, S]` per-micro-batch quantity over each sample's completion tokens."""
    out = []
    for i, sample in enumerate(samples):
        row = microbatch_values[i // micro_batch_size][i % micro_batch_size]
        first = len(sample.prompt_ids) - 1
        out.append(row[first : first + len(sample.completion)].tolist())
    return out


def _as_rows(values: list[list[float]], samples, width: int, micro_batch_size: int) -> list[torch.Tensor]:
    """Per-sample completion lists -> `[B, S]` tensors per micro-batch, aligned as `build_microbatches` aligns
    labels (0 elsewhere)."""
    out = []
    for start in range(0, len(samples), micro_batch_size):
        part = range(start, min(start + micro_batch_size, len(samples)))
        rows = torch.zeros(len(part), width)
        for row, i in enumerate(part):
            first = len(samples[i].prompt_ids) - 1
            rows[row, first : first + len(values[i])] = torch.tensor(values[i])
        out.append(rows)
    return out


@torch.no_grad()
def _hf_named_grads(model, spec) -> dict[str, torch.Tensor]:
    """The finalised gradients (`main_grad`) under HF names: the export's name and layout mapping is linear
    (slices, concatenations, transposes), so exporting a model whose weights are its gradients maps them.
    Frozen weights are swapped for NaN so an HF tensor built from one is recognisable (and left out)."""
    from protein_llm_nemo.conversion.protein_llm_export import iter_protein_llm_hf_tensors
    from protein_llm_nemo.conversion.qwen3_export import iter_hf_tensors

    saved = {}
    for param in model.parameters():
        saved[param] = param.data
        grad = getattr(param, "main_grad", None) if param.requires_grad else None
        param.data = grad.clone() if grad is not None else torch.full_like(param.data, float("nan"))
    try:
        if spec.bridge_config.uses_encoder:
            tensors = dict(iter_protein_llm_hf_tensors(model, spec, torch.float32))
        else:
            tensors = dict(iter_hf_tensors(model.language_model, spec.arch, torch.float32))
    finally:
        for param, data in saved.items():
            param.data = data
    return {name: t.clone() for name, t in tensors.items() if not torch.isnan(t).any()}


def _shifted(values: list[list[float]], samples, spread: float, seed: int) -> list[list[float]]:
    """`values` plus fixed uniform noise in [-spread, spread] per completion token."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for row, sample in zip(values, samples, strict=True):
        noise = (torch.rand(len(sample.completion), generator=generator) * 2 - 1) * spread
        out.append([v + float(d) for v, d in zip(row, noise, strict=True)])
    return out


def megatron_trl_cases(
    rank: int, world_size: int, bridge_name: str, folder: str, cases: list[TrlCase], micro_batch_size: int = 4
) -> dict[str, Any]:
    """Our loss and HF-named gradients for every case, and TRL's `_compute_loss` inputs (see the module
    docstring). The HF export goes to `folder`."""
    from protein_llm_nemo.conversion.protein_llm_export import export_language_model, export_protein_llm
    from protein_llm_nemo.conversion.spec import ProteinLLMSpec
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
    from protein_llm_nemo.training.grpo.advantages import group_advantages
    from protein_llm_nemo.training.grpo.batching import build_microbatches, flatten_groups
    from protein_llm_nemo.training.grpo.logprobs import token_logprobs
    from protein_llm_nemo.training.grpo.loss import PolicyLossConfig
    from protein_llm_nemo.training.grpo.step import make_grpo_forward_step
    from protein_llm_nemo.training.step import train_step

    initialize_distributed(ParallelConfig(), seed=SEED)
    model = build_policy(bridge_name, SEED)
    spec = ProteinLLMSpec(tiny_arch(), bridge_config(bridge_name), TINY_TOKEN_IDS)
    if spec.bridge_config.uses_encoder:
        export_protein_llm(model, spec, folder, tokenizer=None)
    else:
        export_language_model(model, spec.arch, folder, tokenizer=None)
    chunks, optimizer, scheduler = build_training_parts(model, lr=0.0)  # lr 0: only the gradients matter here

    groups = fixed_groups(bridge_name)
    advantages, _ = group_advantages(torch.stack([g.rewards for g in groups]))
    # every completion trains: TRL averages its seq-mean losses over every row, masked or not
    samples = flatten_groups(groups, list(advantages), overlong_filtering=False)
    embed = protein_embed if spec.bridge_config.uses_encoder else None
    width = max(len(s.prompt_ids) + len(s.completion) for s in samples) - 1
    microbatches = build_microbatches(samples, micro_batch_size, PAD_ID, embed, width)
    current = token_logprobs(chunks, microbatches, width, micro_batch_size)
    policy = _completion_values(current, samples, micro_batch_size)
    # old policy within +-0.6 nats of the current one: ratios in [0.55, 1.82], clipped on both sides
    old = _shifted(policy, samples, 0.6, seed=1)
    ref = _shifted(policy, samples, 0.3, seed=2)
    generation = _shifted(old, samples, 0.2, seed=3)  # the generator's numerics: importance weights != 1
    samples = [
        dataclasses.replace(s, generation_logprobs=g) for s, g in zip(samples, generation, strict=True)
    ]
    microbatches = build_microbatches(samples, micro_batch_size, PAD_ID, embed, width)
    old_rows = _as_rows(old, samples, width, micro_batch_size)
    ref_rows = _as_rows(ref, samples, width, micro_batch_size)
    results: dict[str, Any] = {}
    for case in cases:
        config = PolicyLossConfig(
            eps_low=EPS_LOW,
            eps_high=EPS_HIGH,
            beta=case.beta,
            loss_agg_mode=TRL_LOSS_AGG[case.loss_type],
            max_new_tokens=MAX_NEW_TOKENS,
            importance_sampling_correction=case.importance_sampling,
        )
        batches = [
            dataclasses.replace(mb, old_logprobs=o, ref_logprobs=r if case.beta > 0 else None)
            for mb, o, r in zip(microbatches, old_rows, ref_rows, strict=True)
        ]
        out = train_step(
            chunks, optimizer, scheduler, batches, make_grpo_forward_step(config), width, micro_batch_size,
            clip_grad=0.0,
        )  # fmt: skip
        if out.skipped:
            raise RuntimeError(f"{case.name}: the step was skipped (non-finite loss or gradient)")
        metrics = torch.stack([r["grpo_metrics"] for r in out.reports]).sum(dim=0)
        clip = float(metrics[2] / metrics[-1])  # clipped tokens / tokens: the clip range is exercised
        results[case.name] = {"loss": out.loss, "grads": _hf_named_grads(model, spec), "clip_fraction": clip}
    return to_portable(
        {"cases": results, "trl_inputs": _trl_inputs(samples, advantages, old, ref, generation)}
    )


def _trl_inputs(samples, advantages, old, ref, generation) -> dict[str, Any]:
    """What TRL's `_generate_and_score_completions` hands `_compute_loss`: left-padded prompts, right-padded
    completions, one advantage per row, per-completion-token old / reference log-probs, the token count."""
    prompt_width = max(len(s.prompt_ids) for s in samples)
    completion_width = max(len(s.completion) for s in samples)
    rows = len(samples)
    prompt_ids = torch.full((rows, prompt_width), PAD_ID, dtype=torch.long)
    prompt_mask = torch.zeros(rows, prompt_width, dtype=torch.long)
    completion_ids = torch.full((rows, completion_width), PAD_ID, dtype=torch.long)
    completion_mask = torch.zeros(rows, completion_width, dtype=torch.long)
    per_token = {name: torch.zeros(rows, completion_width) for name in ("old", "ref", "generation")}
    for i, sample in enumerate(samples):
        p, c = len(sample.prompt_ids), len(sample.completion)
        prompt_ids[i, prompt_width - p :] = torch.tensor(sample.prompt_ids)
        prompt_mask[i, prompt_width - p :] = 1
        completion_ids[i, :c] = torch.tensor(sample.completion)
        completion_mask[i, :c] = 1
        for name, values in (("old", old), ("ref", ref), ("generation", generation)):
            per_token[name][i, :c] = torch.tensor(values[i])
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([s.advantage for s in samples]),
        "old_per_token_logps": per_token["old"],
        "ref_per_token_logps": per_token["ref"],
        # TRL's vLLM importance-sampling ratio exp(old - sampler), untruncated
        "importance_sampling_ratio": torch.exp(per_token["old"] - per_token["generation"]) * completion_mask,
        "num_items_in_batch": completion_mask.sum(),
        "sequences": [s.sequences for s in samples],
    }


# -- TRL comparison: TRL's side --------------------------------------------------------------------------
def _protein_policy(inner, sequences: list[list[str]]):
    """`ProteinLLMForCausalLM` as TRL's fused log-prob head calls a model: `model.base_model(input_ids,
    attention_mask)` must return the decoder's hidden states and `get_output_embeddings()` the LM head. TRL
    passes only tokens, so the proteins of the batch's rows are fixed here (`sequences`: each row's)."""
    from transformers.modeling_outputs import BaseModelOutputWithPast

    from protein_llm_nemo.hf.modeling import ProteinLLMPreTrainedModel

    embeddings, mask = protein_embed([s for row in sequences for s in row])

    class Backbone(torch.nn.Module):
        """Word and protein embeddings -> the Qwen3 decoder's last hidden states."""

        def forward(self, input_ids, attention_mask=None, **kwargs):
            if input_ids.shape[0] != len(sequences):
                raise ValueError(f"built for {len(sequences)} rows, got {input_ids.shape[0]}")
            embeds = inner.embed_inputs(input_ids, embeddings, mask)
            out = inner.language_model.model(
                inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False
            )
            return BaseModelOutputWithPast(last_hidden_state=out.last_hidden_state)

    class ProteinPolicy(ProteinLLMPreTrainedModel):
        base_model_prefix = "backbone"

        def __init__(self, inner):
            super().__init__(inner.config)
            self.inner = inner
            self.generation_config = inner.generation_config
            object.__setattr__(self, "backbone", Backbone())  # not a submodule: no second parameter path

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            return self.inner(
                input_ids,
                attention_mask=attention_mask,
                protein_embeddings=embeddings,
                protein_mask=mask,
                **kwargs,
            )

    return ProteinPolicy(inner)


def trl_cases(
    rank: int, world_size: int, bridge_name: str, folder: str, inputs: dict[str, Any], cases: list[TrlCase],
    output_dir: str,
) -> dict[str, Any]:  # fmt: skip
    """TRL's loss and gradients (by HF name) for every case: a real `GRPOTrainer` on the HF export, its
    `_compute_loss` on `inputs`, backward."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    import protein_llm_nemo.hf  # noqa: F401 - registers ProteinLLMForCausalLM with the Auto classes
    from protein_llm_nemo.tokenizer import load_tokenizer

    inputs = from_portable(inputs)
    sequences = inputs.pop("sequences")
    rows = inputs["completion_ids"].shape[0]
    tokenizer = load_tokenizer()
    results: dict[str, Any] = {}
    for case in cases:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        trained = _protein_policy(model, sequences) if bridge_config(bridge_name).uses_encoder else model
        args = GRPOConfig(
            output_dir=output_dir,
            use_cpu=True,
            report_to=[],
            bf16=False,  # TRL's default is bf16: the comparison is in fp32
            gradient_checkpointing=False,
            per_device_train_batch_size=rows,
            num_generations=GENERATIONS,
            max_completion_length=MAX_NEW_TOKENS,
            loss_type=case.loss_type,
            beta=case.beta,
            epsilon=EPS_LOW,
            epsilon_high=EPS_HIGH,
            temperature=1.0,  # TRL divides the logits by it before the log-softmax
            # TRL 1.x weights the k3 KL by the (differentiable) ratio by default; NeMo-RL's k3 (ours) is plain
            use_bias_correction_kl=False,
            disable_dropout=True,
            save_strategy="no",
            seed=SEED,
            # beta > 0 loads a reference model from the folder; TRL infers the class of an architecture
            # outside `transformers` only for remote code, so name the Auto class (ours is registered there)
            model_init_kwargs={"architecture": AutoModelForCausalLM},
        )
        trainer = GRPOTrainer(
            model=trained,
            reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": ["a", "b"]}),
            processing_class=tokenizer,
        )
        if case.importance_sampling:
            # TRL applies its importance ratio only after vLLM generation; switched on here to reach the same
            # loss code without vLLM (the ratio itself comes with the inputs)
            trainer.use_vllm = True
            trainer.vllm_importance_sampling_correction = True
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets for one micro-batch a step
        case_inputs = {
            k: v for k, v in inputs.items() if k != "importance_sampling_ratio" or case.importance_sampling
        }
        loss = trainer._compute_loss(trainer.model, case_inputs)
        loss.backward()
        prefix = "inner." if trained is not model else ""
        grads = {
            name[len(prefix) :]: p.grad.detach().clone()
            for name, p in trained.named_parameters()
            if p.requires_grad and p.grad is not None
        }
        results[case.name] = {"loss": float(loss.detach()), "grads": grads}
    return to_portable(results)


# -- layouts ------------------------------------------------------------------------------------------------
