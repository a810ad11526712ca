"""Protein placeholders in text and the slot positions they occupy in token ids.

A placeholder is ``<|protein_start|>`` + one ``<|protein_embed|>`` per bridge output + ``<|protein_end|>``;
at forward time each embed token is replaced by one bridge vector, so the finders here reject any malformed
group instead of splicing into the wrong positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .special_tokens import (
    PROTEIN_EMBED_TOKEN,
    PROTEIN_END_TOKEN,
    PROTEIN_SPECIAL_TOKENS,
    PROTEIN_START_TOKEN,
    PROTEIN_TOKEN_IDS,
    ProteinTokenIds,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ProteinSpan",
    "build_protein_user_text",
    "find_protein_slots",
    "protein_placeholder",
    "protein_slot_index",
]


def protein_placeholder(num_slots: int) -> str:
    """``<|protein_start|>`` + ``num_slots`` x ``<|protein_embed|>`` + ``<|protein_end|>``.

    ``num_slots`` is the bridge's output count (e.g. 32 queries); each embed token is replaced by one bridge
    vector at forward time.
    """
    if not isinstance(num_slots, int) or num_slots < 1:
        raise ValueError(f"num_slots must be a positive int (the bridge's slot count), got {num_slots!r}")
    return PROTEIN_START_TOKEN + PROTEIN_EMBED_TOKEN * num_slots + PROTEIN_END_TOKEN


def build_protein_user_text(
    instruction: str, num_slots: int, num_proteins: int = 1, separator: str = "\n"
) -> str:
    """User turn text: ``instruction + "\\n\\n" + placeholder`` (placeholders joined by ``separator``)."""
    if num_proteins < 1:
        raise ValueError(f"num_proteins must be >= 1, got {num_proteins}")
    if any(t in instruction for t in PROTEIN_SPECIAL_TOKENS):
        raise ValueError("instruction already contains protein tokens; pass the bare instruction text")
    placeholders = separator.join(protein_placeholder(num_slots) for _ in range(num_proteins))
    return f"{instruction}\n\n{placeholders}"


@dataclass(frozen=True)
class ProteinSpan:
    """One protein in a token sequence: ``start``/``end`` index its boundary tokens, slots lie between."""

    start: int
    end: int

    @property
    def num_slots(self) -> int:
        return self.end - self.start - 1

    @property
    def slot_positions(self) -> range:
        return range(self.start + 1, self.end)


def find_protein_slots(
    input_ids: Sequence[int] | torch.Tensor,
    ids: ProteinTokenIds = PROTEIN_TOKEN_IDS,
    num_slots: int | None = None,
) -> list[ProteinSpan]:
    """Locate every ``<|protein_start|> embed... <|protein_end|>`` group in a 1-D id sequence, in order.

    Raises ``ValueError`` on malformed groups (unbalanced, nested, embeds outside a group, other tokens inside,
    or a slot count different from ``num_slots`` when given): a silent mismatch would splice bridge vectors
    into the wrong positions.
    """
    seq = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
    if seq and isinstance(seq[0], list):
        raise ValueError("find_protein_slots expects one 1-D sequence; iterate over the batch rows")
    spans: list[ProteinSpan] = []
    open_at: int | None = None
    for pos, tok in enumerate(seq):
        if tok == ids.start:
            if open_at is not None:
                raise ValueError(
                    f"nested {PROTEIN_START_TOKEN} at position {pos} (group opened at {open_at})"
                )
            open_at = pos
        elif tok == ids.end:
            if open_at is None:
                raise ValueError(f"{PROTEIN_END_TOKEN} at position {pos} without a {PROTEIN_START_TOKEN}")
            span = ProteinSpan(open_at, pos)
            if span.num_slots < 1:
                raise ValueError(f"protein group at {open_at}..{pos} has no {PROTEIN_EMBED_TOKEN} slots")
            if num_slots is not None and span.num_slots != num_slots:
                raise ValueError(
                    f"protein group at {open_at}..{pos} has {span.num_slots} slots, expected {num_slots} "
                    "(the bridge's slot count)"
                )
            spans.append(span)
            open_at = None
        elif tok == ids.embed:
            if open_at is None:
                raise ValueError(f"{PROTEIN_EMBED_TOKEN} at position {pos} outside a protein group")
        elif open_at is not None:
            raise ValueError(f"token {tok} at position {pos} inside the protein group opened at {open_at}")
    if open_at is not None:
        raise ValueError(
            f"{PROTEIN_START_TOKEN} at position {open_at} is never closed by {PROTEIN_END_TOKEN}"
        )
    return spans


def protein_slot_index(
    input_ids: torch.Tensor, ids: ProteinTokenIds = PROTEIN_TOKEN_IDS, num_slots: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, position) of every slot of a ``[batch, seq]`` id tensor, protein by protein in row-major order.

    Made for splicing: ``decoder_input[rows, cols] = bridge_out.reshape(-1, hidden)`` when ``bridge_out`` is
    ``[num_proteins_in_batch, num_slots, hidden]`` in the same order as the proteins appear in the batch.
    With ``num_slots`` (the forward pass's case) the groups are located and checked with tensor ops on the
    ids' device and one host sync; a malformed group is then diagnosed by ``find_protein_slots``.
    """
    import torch

    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
    if num_slots is not None and num_slots >= 1:
        rows, starts = (input_ids == ids.start).nonzero(as_tuple=True)
        ends = starts + num_slots + 1
        width = input_ids.shape[1]
        offsets = torch.arange(1, num_slots + 1, device=input_ids.device)
        slot_cols = (starts[:, None] + offsets).reshape(-1)
        slot_rows = rows.repeat_interleave(num_slots)
        # Well-formed iff every start is followed by exactly num_slots embeds and an end, and no embed or
        # end stands anywhere else (the counts): one boolean crosses to the host.
        in_bounds = ends < width
        checks = [
            in_bounds.all(),
            (input_ids == ids.embed).sum() == slot_cols.numel(),
            (input_ids == ids.end).sum() == starts.numel(),
        ]
        if starts.numel():
            safe_ends = torch.where(in_bounds, ends, torch.zeros_like(ends))
            safe_cols = slot_cols.clamp(max=width - 1)
            checks += [
                (input_ids[slot_rows, safe_cols] == ids.embed).all(),
                (input_ids[rows, safe_ends] == ids.end).all(),
            ]
        if bool(torch.stack(checks).all()):
            return slot_rows, slot_cols
    out_rows: list[int] = []
    out_cols: list[int] = []
    for b in range(input_ids.shape[0]):  # the exact diagnosis (or the general case without num_slots)
        for span in find_protein_slots(input_ids[b], ids, num_slots):
            out_rows += [b] * span.num_slots
            out_cols += list(span.slot_positions)
    device = input_ids.device
    return torch.tensor(out_rows, dtype=torch.long, device=device), torch.tensor(
        out_cols, dtype=torch.long, device=device
    )
