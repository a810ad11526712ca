"""Batched, KV-cached generation on the megatron `ProteinLLMModel` itself, at the layout it trains in.

    rollouts = generate(model, [Prompt(ids, sequences=["MKT..."])], SamplingParams(temperature=0.7, n=4))

How a batch runs (every rank of the TP x PP layout calls `generate` with the same prompts):
1. prompts are checked (length, proteins, residues) before any compute; data-parallel rank r takes
   prompts r, r + DP, ...;
2. prefill: the left-padded prompts in one forward with a megatron `StaticInferenceContext` (the KV cache,
   allocated by megatron's attention layers) and a key-padding + causal mask; the bridge runs here, once per
   prompt (splicing bridges: slot vectors spliced into the prompt; cross-attending bridges: the context is
   computed once and passed to every step); only the last position's logits are materialised;
3. with `n > 1` the prompt's KV cache is copied n times (prefill once per prompt);
4. decode: one token per row per step; the last pipeline stage samples (`sampling.py`) and broadcasts the
   tokens to the other stages; finished rows are dropped from the KV cache (and from the compute) once a
   quarter of the batch has finished.

Rotary positions are the cache slots, so a left-padded prompt's tokens sit k slots later than alone; RoPE
attention depends only on relative positions, so the logits agree with an unpadded run up to fp rounding.
The padded vocabulary rows (megatron pads to 128 x TP) are never sampled, nor the protein placeholder
tokens (prompt inputs only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from protein_llm_nemo.generation.prompts import Prompt, PromptBatch, left_padded_batch
from protein_llm_nemo.generation.rollouts import Rollouts, Sample
from protein_llm_nemo.generation.sampling import SamplingParams, row_generators, sample_next_tokens
from protein_llm_nemo.tokenizer import QWEN3_PAD_ID

__all__ = ["generate"]

COMPACT_FRACTION = 0.25  # drop finished rows from the KV cache once this share of the batch has finished


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Prompt],
    sampling: SamplingParams | None = None,
    *,
    encoder: Any = None,
    batch_size: int | None = None,
    pad_id: int = QWEN3_PAD_ID,
    gather: bool = True,
    progress: bool = False,
) -> Rollouts:
    """Sample `sampling.n` completions per prompt from `model` (a megatron `ProteinLLMModel`, eval mode).

    encoder:    encodes prompts' protein sequences (default: the model's own `protein_encoder`);
    batch_size: prompts per prefill (default: all of this rank's prompts at once);
    gather:     join every data-parallel rank's share (else each rank returns its own share).
    """
    from megatron.core import parallel_state

    sampling = sampling or SamplingParams()
    model = _unwrap(model)
    prompts = list(prompts)
    _check_prompts(model, prompts, sampling, encoder)
    dp_rank, dp_size = _data_parallel()
    mine = list(range(dp_rank, len(prompts), dp_size))
    size = batch_size or max(len(mine), 1)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    samples: list[Sample] = []
    batches = [mine[i : i + size] for i in range(0, len(mine), size)]
    show = progress and (not dist.is_initialized() or dist.get_rank() == 0)
    if show:
        from tqdm import tqdm

        batches = tqdm(batches, desc="generate", unit="batch")
    was_training = model.training
    model.eval()
    try:
        for indices in batches:
            samples += _generate_batch(
                model, [prompts[i] for i in indices], indices, sampling, encoder, pad_id
            )
    finally:
        model.train(was_training)
    rollouts = Rollouts(sorted(samples, key=lambda s: (s.prompt_index, s.sample_index)))
    if gather and parallel_state.model_parallel_is_initialized():
        rollouts = rollouts.gather_data_parallel()
    return rollouts


# -- checks before any compute -------------------------------------------------------------------------
def _check_prompts(model: Any, prompts: list[Prompt], sampling: SamplingParams, encoder: Any) -> None:
    from protein_llm_nemo.encoders.config import ESM_ALPHABET
    from protein_llm_nemo.encoders.sequences import normalize_sequences

    if not prompts:
        raise ValueError("no prompts to generate from")
    if not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
    config = model.bridge_config
    limit = model.language_model.max_sequence_length
    start_id = model.protein_token_ids.start
    for index, prompt in enumerate(prompts):
        total = len(prompt.input_ids) + sampling.max_new_tokens
        if total > limit:
            raise ValueError(
                f"prompt {index}: {len(prompt.input_ids)} tokens + max_new_tokens {sampling.max_new_tokens} = "
                f"{total} exceed the model's {limit} positions"
            )
        groups = sum(1 for t in prompt.input_ids if t == start_id)
        if not config.uses_encoder and prompt.num_proteins:
            raise ValueError(
                f"prompt {index}: the {config.name!r} bridge takes no proteins (put them in the text)"
            )
        if config.uses_encoder and groups != prompt.num_proteins:
            raise ValueError(
                f"prompt {index}: {groups} protein groups in input_ids but {prompt.num_proteins} proteins given"
            )
        if prompt.sequences:
            embedder = encoder if encoder is not None else model.protein_encoder
            if embedder is None:
                raise ValueError(
                    f"prompt {index} gives protein sequences but there is no encoder to embed them"
                )
            names = [f"prompt {index} protein {k}" for k in range(len(prompt.sequences))]
            # the encoder's own alphabet and length limit; InvalidSequenceError names residue and position
            prepare = getattr(embedder, "prepare", None)
            if prepare is not None:
                prepare(prompt.sequences, names)
            else:
                normalize_sequences(prompt.sequences, names, alphabet=ESM_ALPHABET, max_length=1 << 30)
        if prompt.embeddings is not None and prompt.embeddings.shape[-1] != config.encoder_dim:
            raise ValueError(
                f"prompt {index}: protein embeddings of width {prompt.embeddings.shape[-1]}, the bridge "
                f"expects {config.encoder_dim}"
            )


# -- one batch -------------------------------------------------------------------------------------------
@dataclass
class _Rows:
    """The rows still in the KV cache: which sample each is, its random stream, its key-padding mask."""

    samples: list[Sample]
    generators: list[torch.Generator]
    key_mask: torch.Tensor  # [B, cached + 1]: True where a key may be attended
    finished: list[bool]

    def select(self, keep: list[int]) -> _Rows:
        index = torch.tensor(keep, device=self.key_mask.device)
        return _Rows(
            [self.samples[i] for i in keep],
            [self.generators[i] for i in keep],
            self.key_mask.index_select(0, index),
            [self.finished[i] for i in keep],
        )


def _generate_batch(
    model: Any,
    prompts: list[Prompt],
    indices: list[int],
    sampling: SamplingParams,
    encoder: Any,
    pad_id: int,
) -> list[Sample]:
    from megatron.core.inference.contexts import StaticInferenceContext

    device = next(model.parameters()).device
    # padding is never attended; it only has to be a row of the embedding table
    batch = left_padded_batch(prompts, pad_id if pad_id < model.language_model.real_vocab_size else 0, device)
    embeddings, mask = _protein_inputs(model, prompts, encoder, device)
    width = batch.input_ids.shape[1]
    n = sampling.n
    context = StaticInferenceContext(len(prompts) * n, width + sampling.max_new_tokens)
    cross_attention = None
    if model.bridge_config.cross_attention:
        cross_attention = model.cross_attention_context(batch.input_ids, embeddings, mask)
    logits = _forward(
        model,
        batch.input_ids,
        _prefill_attention_mask(batch),
        context,
        protein_embeddings=embeddings if model.bridge_config.splices else None,
        protein_mask=mask if model.bridge_config.splices else None,
        cross_attention=cross_attention,
    )
    context.increment_sequence_len_offset(width)
    # n samples per prompt: copy each prompt's KV cache (and everything per row) n times
    repeat = torch.arange(len(prompts), device=device).repeat_interleave(n)
    if n > 1:
        _select_cache_rows(context, repeat)
        cross_attention = _select_context_rows(cross_attention, repeat)
        logits = None if logits is None else logits.index_select(0, repeat)
    rows = _Rows(
        samples=[
            Sample(prompt_index=indices[i], sample_index=j, prompt_length=batch.lengths[i])
            for i in range(len(prompts))
            for j in range(n)
        ],
        generators=row_generators(
            sampling.seed,
            [prompt.key + j.to_bytes(4, "little") for prompt in prompts for j in range(n)],
            device,
        ),
        key_mask=torch.cat(
            [
                batch.attention_mask.index_select(0, repeat),
                torch.ones(len(repeat), 1, dtype=torch.bool, device=device),
            ],
            dim=1,
        ),
        finished=[False] * len(repeat),
    )
    done: list[Sample] = []
    banned = list(model.protein_token_ids.all)
    real_vocab = model.language_model.real_vocab_size
    for step in range(sampling.max_new_tokens):
        tokens, logprobs = _sample_and_share(logits, real_vocab, sampling, rows.generators, banned, device)
        for row, (token, logprob) in enumerate(zip(tokens.tolist(), logprobs.tolist(), strict=True)):
            if rows.finished[row]:
                continue
            sample = rows.samples[row]
            sample.token_ids.append(token)
            sample.logprobs.append(logprob)
            if token in sampling.eos_token_ids:
                sample.stop_reason, rows.finished[row] = "eos", True
            elif token in sampling.stop_token_ids:
                sample.stop_reason, rows.finished[row] = "stop", True
            elif sample.num_tokens == sampling.max_new_tokens:
                sample.stop_reason, rows.finished[row] = "length", True
        if step == sampling.max_new_tokens - 1 or all(rows.finished):
            break
        finished = sum(rows.finished)
        if finished and finished >= COMPACT_FRACTION * len(rows.finished):
            keep = [i for i, f in enumerate(rows.finished) if not f]
            done += [rows.samples[i] for i, f in enumerate(rows.finished) if f]
            index = torch.tensor(keep, device=device)
            _select_cache_rows(context, index)
            cross_attention = _select_context_rows(cross_attention, index)
            tokens = tokens.index_select(0, index)
            rows = rows.select(keep)
        logits = _forward(
            model,
            tokens[:, None],
            ~rows.key_mask[:, None, None, :],  # megatron: True = masked
            context,
            cross_attention=cross_attention,
        )
        context.increment_sequence_len_offset(1)
        rows.key_mask = torch.cat([rows.key_mask, rows.key_mask.new_ones(len(rows.finished), 1)], dim=1)
    return done + rows.samples


def _protein_inputs(
    model: Any, prompts: list[Prompt], encoder: Any, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Every protein of the batch, in row-major order: `[N, L_max, D]` embeddings and their mask."""
    if not model.bridge_config.uses_encoder or not any(p.num_proteins for p in prompts):
        return None, None
    sequences = [s for p in prompts for s in p.sequences]
    encoded = iter(())
    if sequences:
        encode = encoder.encode if encoder is not None else model.protein_encoder.encode
        embeddings, mask = encode(sequences)
        encoded = iter(zip(embeddings, mask, strict=True))
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    for prompt in prompts:
        if prompt.embeddings is not None:
            parts += list(zip(prompt.embeddings, prompt.mask, strict=True))
        else:
            parts += [next(encoded) for _ in prompt.sequences]
    longest = max(int(m.shape[0]) for _, m in parts)
    dtype = model.config.params_dtype
    embeddings = torch.zeros(len(parts), longest, parts[0][0].shape[-1], dtype=dtype, device=device)
    mask = torch.zeros(len(parts), longest, dtype=torch.bool, device=device)
    for i, (e, m) in enumerate(parts):
        embeddings[i, : e.shape[0]] = e.to(device=device, dtype=dtype)
        mask[i, : m.shape[0]] = m.to(device)
    return embeddings, mask


def _prefill_attention_mask(batch: PromptBatch) -> torch.Tensor:
    """`[B, 1, L, L]`, True = masked: causal, and no query attends to a padding key."""
    width = batch.input_ids.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=batch.input_ids.device).tril()
    allowed = causal[None] & batch.attention_mask[:, None, :]
    return ~allowed[:, None]


def _select_cache_rows(context: Any, index: torch.Tensor) -> None:
    """Keep (or repeat) rows `index` of every layer's KV cache on this rank."""
    for layer, (keys, values) in list(context.key_value_memory_dict.items()):
        context.key_value_memory_dict[layer] = (keys.index_select(1, index), values.index_select(1, index))


def _select_context_rows(cross_attention: Any, index: torch.Tensor) -> Any:
    if cross_attention is None:
        return None
    context, ignore = cross_attention  # [C, B, D], [B, C]
    return context.index_select(1, index), ignore.index_select(0, index)


# -- forward and sampling across the layout ----------------------------------------------------------------
def _forward(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    context: Any,
    **kwargs: Any,
) -> torch.Tensor | None:
    """Last-position logits `[B, V_padded]` on the last pipeline stage (None on the others)."""
    from megatron.core import parallel_state

    position_ids = torch.zeros_like(input_ids)  # rotary positions come from the cache slots

    def call(step_model: Any) -> torch.Tensor:
        return step_model(
            input_ids,
            position_ids,
            attention_mask,
            inference_context=context,
            runtime_gather_output=True,
            **kwargs,
        )

    if parallel_state.get_pipeline_model_parallel_world_size() == 1:
        return call(model)[:, -1]
    from megatron.core.pipeline_parallel import get_forward_backward_func

    def forward_step(data_iterator: Any, step_model: Any):
        next(data_iterator)

        def keep(output: torch.Tensor, non_loss_data: bool = True) -> torch.Tensor:
            return output

        return call(step_model), keep

    outputs = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter([None]),
        model=[model],
        num_microbatches=1,
        seq_length=input_ids.shape[1],
        micro_batch_size=input_ids.shape[0],
        forward_only=True,
        collect_non_loss_data=True,
    )
    return outputs[0][:, -1] if parallel_state.is_pipeline_last_stage() else None


def _sample_and_share(
    logits: torch.Tensor | None,
    real_vocab: int,
    sampling: SamplingParams,
    generators: list[torch.Generator],
    banned: list[int],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample on the last pipeline stage, broadcast (tokens, log-probs) to the other stages."""
    from megatron.core import parallel_state

    rows = len(generators)
    if logits is not None:
        tokens, logprobs = sample_next_tokens(logits[:, :real_vocab], sampling, generators, banned)
    else:
        tokens = torch.zeros(rows, dtype=torch.long, device=device)
        logprobs = torch.zeros(
            rows, dtype=torch.float32, device=device
        )  # the row streams live on the last stage
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        packed = torch.stack([tokens.double(), logprobs.double()])
        dist.broadcast(
            packed,
            src=parallel_state.get_pipeline_model_parallel_last_rank(),
            group=parallel_state.get_pipeline_model_parallel_group(),
        )
        tokens, logprobs = packed[0].long(), packed[1].float()
    return tokens, logprobs


def _data_parallel() -> tuple[int, int]:
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return 0, 1
    return parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and not hasattr(model, "bridge_config"):
        model = model.module
    return model
