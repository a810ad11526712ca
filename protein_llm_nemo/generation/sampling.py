"""Sampling parameters and the next-token choice: temperature, top-k, top-p, greedy at temperature 0.

Every sampled row draws from its own random stream, keyed by (seed, the prompt's tokens and proteins, the
sample's index): a sample is the same whether its prompt is generated alone or in a batch, on any
data-parallel rank. The reported log-probability of a token is the model's own (`log_softmax` of the raw
logits over the real vocabulary, before temperature and filtering): what the training forward computes for
the same completion, so GRPO's importance ratios start at exactly 1.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protein_llm_nemo.tokenizer import QWEN3_EOS_ID, QWEN3_PAD_ID

__all__ = ["SamplingParams", "row_generators", "sample_next_tokens"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `temperature == 0`: greedy (top_k / top_p ignored).

    max_new_tokens:  completion length limit (stop reason `length`).
    n:               samples per prompt (the prompt is prefilled once and its KV cache copied n times).
    seed:            with the prompt's content and the sample index, keys each row's random stream.
    eos_token_ids:   end of the assistant turn (stop reason `eos`): `<|im_end|>`, `<|endoftext|>`.
    stop_token_ids:  other tokens that end a completion (stop reason `stop`); the stop token is kept.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    n: int = 1
    seed: int = 0
    eos_token_ids: tuple[int, ...] = (QWEN3_EOS_ID, QWEN3_PAD_ID)  # <|im_end|>, <|endoftext|>
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n (samples per prompt) must be >= 1, got {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def row_generators(seed: int, keys: Sequence[bytes], device: torch.device) -> list[torch.Generator]:
    """One generator per row, seeded from (seed, the row's key)."""
    generators = []
    for key in keys:
        digest = hashlib.blake2b(struct.pack("<q", seed) + key, digest_size=8).digest()
        generator = torch.Generator(device=device)
        generator.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        generators.append(generator)
    return generators


def _filter(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Scores [B, V] with everything outside the top-k / top-p nucleus set to -inf."""
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
        # keep the smallest prefix whose mass reaches top_p (the token that crosses it included)
        outside = cumulative - torch.softmax(sorted_scores, dim=-1) >= top_p
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(outside, float("-inf")))
    return scores


def sample_next_tokens(
    logits: torch.Tensor,
    params: SamplingParams,
    generators: Sequence[torch.Generator],
    banned_token_ids: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens `[B]` and their log-probabilities `[B]` from logits `[B, V]` over the real vocabulary
    (overwritten: the banned columns are set to -inf in place).

    `banned_token_ids` (the protein placeholder tokens: inputs only) are never chosen; their probability
    stays in the reported log-probability's normaliser, like the training forward's."""
    logits = logits.float()  # the model's output, ours to overwrite (no copy when it is fp32 already)
    # log-probabilities from the raw logits: logit - logsumexp, without a [B, V] log_softmax copy
    log_normaliser = torch.logsumexp(logits, dim=-1)
    if banned_token_ids:
        logits[:, list(banned_token_ids)] = float("-inf")
    if params.greedy:
        tokens = logits.argmax(dim=-1)
    else:
        scores = _filter(logits / params.temperature, params.top_k, params.top_p)
        # Gumbel-max with each row's own stream: argmax(s + G) is a draw from softmax(s).
        noise = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=g.device) for g in generators]
        ).to(scores.device)
        gumbel = -torch.log(-torch.log(noise.clamp_min(torch.finfo(noise.dtype).tiny)))
        tokens = (scores + gumbel).argmax(dim=-1)
    chosen = logits.gather(-1, tokens[:, None]).squeeze(-1)  # never a banned token: its raw logit
    return tokens, chosen - log_normaliser
