"""How proteins meet the token sequence, shared by the megatron `ProteinLLMModel` and the HF twin. torch only.

- `resolve_protein_inputs`: sequences xor precomputed embeddings, checked against the bridge;
- `check_encoder_inputs`: the encoder-output contract every bridge checks on entry;
- `embed_protein_tokens`: the trainable boundary-token rows and the bridge's slot vectors written into the
  word embeddings (splicing bridges);
- `cross_attention_context`: flamingo's per-sample context and mask from per-protein latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "check_encoder_inputs",
    "cross_attention_context",
    "embed_protein_tokens",
    "protein_counts",
    "resolve_protein_inputs",
]

EncodeFn = Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]]


def resolve_protein_inputs(
    sequences: Sequence[str] | None,
    embeddings: torch.Tensor | None,
    mask: torch.Tensor | None,
    encode: EncodeFn,
    bridge_config,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`(embeddings, mask)`: encoded `sequences`, or the embeddings given; never both."""
    if sequences is not None:
        if embeddings is not None:
            raise ValueError("pass either protein sequences or protein embeddings, not both")
        if isinstance(sequences, str):
            sequences = [sequences]
        embeddings, mask = encode(list(sequences))
    if embeddings is not None and not bridge_config.uses_encoder:
        raise ValueError(
            f"the {bridge_config.name!r} bridge takes no protein embeddings: put the sequence in the prompt"
        )
    return embeddings, mask


def check_encoder_inputs(
    embeddings: torch.Tensor, mask: torch.Tensor | None, encoder_dim: int
) -> torch.Tensor:
    """Validate `(embeddings [N, L, D], mask [N, L])`; returns the boolean residue mask (True = residue)."""
    if embeddings.dim() != 3:
        raise ValueError(
            f"protein embeddings must be [num_proteins, residues, dim], got {tuple(embeddings.shape)}"
        )
    if embeddings.shape[-1] != encoder_dim:
        raise ValueError(
            f"protein embeddings have width {embeddings.shape[-1]} but the bridge expects encoder_dim={encoder_dim}"
        )
    if mask is None:
        return torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
    if tuple(mask.shape) != tuple(embeddings.shape[:2]):
        raise ValueError(
            f"protein mask {tuple(mask.shape)} does not match embeddings {tuple(embeddings.shape[:2])}"
        )
    mask = mask.to(device=embeddings.device, dtype=torch.bool)
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"proteins {empty} have no residues in the mask")
    return mask


def protein_counts(
    input_ids: torch.Tensor, start_token_id: int, embeddings: torch.Tensor | None
) -> torch.Tensor:
    """Proteins per row (counted by `<|protein_start|>`), checked against the embeddings given."""
    counts = (input_ids == start_token_id).sum(dim=1)
    total = int(counts.sum())
    given = 0 if embeddings is None else embeddings.shape[0]
    if embeddings is None and total:
        raise ValueError(f"input_ids hold {total} proteins but no protein embeddings were given")
    if embeddings is not None and given != total:
        raise ValueError(f"input_ids hold {total} proteins but {given} protein embeddings were given")
    return counts


def embed_protein_tokens(
    words: torch.Tensor,
    input_ids: torch.Tensor,
    token_ids,
    table: torch.Tensor | None,
    slot_vectors: torch.Tensor | None = None,
    num_slots: int = 0,
    require_slot_vectors: bool = True,
) -> torch.Tensor:
    """Word embeddings `[B, S, H]` with the boundary-token rows replaced by `table [3, H]` (start, embed,
    end) and, for splicing bridges (`num_slots > 0`), the bridge's `slot_vectors [N, num_slots, H]` written
    at the `<|protein_embed|>` positions, protein by protein in row-major order.

    `require_slot_vectors=False` lets slots pass without vectors (a decoding step whose prompt was
    spliced at prefill)."""
    if table is not None:
        table = table.to(words.dtype)
        for row, token_id in enumerate(token_ids.all):
            words = torch.where((input_ids == token_id).unsqueeze(-1), table[row], words)
    if num_slots == 0:
        return words
    if slot_vectors is None:
        if require_slot_vectors and bool((input_ids == token_ids.embed).any()):
            raise ValueError("input_ids hold protein slots but no protein embeddings were given")
        return words
    from protein_llm_nemo.tokenizer import protein_slot_index

    rows, cols = protein_slot_index(input_ids, token_ids, num_slots)
    if rows.numel() != slot_vectors.shape[0] * slot_vectors.shape[1]:
        raise ValueError(
            f"input_ids hold {rows.numel() // num_slots} proteins but "
            f"{slot_vectors.shape[0]} protein embeddings were given"
        )
    return words.index_put((rows, cols), slot_vectors.reshape(-1, words.shape[-1]).to(words.dtype))


def cross_attention_context(
    latents: torch.Tensor,
    input_ids: torch.Tensor,
    start_token_id: int,
    segment_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flamingo context `[B, P_max * Q, D]` from per-protein latents `[N, Q, D]` (row-major protein order),
    and its mask (True = ignore): `[B, P_max * Q]` when each row is one sample, so a row sees only its own
    proteins; with `segment_ids [B, S]` (packed rows) a per-token `[B, S, P_max * Q]` mask, so a token sees
    only the proteins of its own sample."""
    counts = protein_counts(input_ids, start_token_id, latents)
    total, num_latents, width = latents.shape
    batch, most = counts.shape[0], max(int(counts.max()), 1)
    sample = torch.repeat_interleave(torch.arange(batch, device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(total, device=counts.device) - first[sample]
    context = latents.new_zeros(batch, most, num_latents, width).index_put((sample, slot), latents)
    present = torch.zeros(batch, most, dtype=torch.bool, device=counts.device)
    present[sample, slot] = True
    context = context.reshape(batch, most * num_latents, width)
    if segment_ids is None:
        return context, ~present.unsqueeze(-1).expand(batch, most, num_latents).reshape(batch, -1)
    if segment_ids.shape != input_ids.shape:
        raise ValueError(
            f"segment_ids {tuple(segment_ids.shape)} must match input_ids {tuple(input_ids.shape)}"
        )
    rows, positions = (input_ids == start_token_id).nonzero(as_tuple=True)  # row-major: the proteins' order
    protein_segment = torch.full((batch, most), -1, dtype=segment_ids.dtype, device=segment_ids.device)
    protein_segment[sample, slot] = segment_ids[rows, positions]
    allowed = present[:, None, :] & (segment_ids[:, :, None] == protein_segment[:, None, :])  # [B, S, P]
    ignore = ~allowed.unsqueeze(-1).expand(*allowed.shape, num_latents)
    return context, ignore.reshape(batch, allowed.shape[1], -1)
