"""Tiny ProteinLLM fixtures shared by the tests: a 2-layer Qwen3 with a 1,024-token vocabulary, each
bridge at its registered test sizes, a two-sample batch (three proteins), and helpers that carry results
across process boundaries.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from protein_llm_nemo.bridges import BridgeConfig, get_bridge_config, get_bridge_config_class, list_bridges
from protein_llm_nemo.tokenizer import ProteinTokenIds

__all__ = [
    "PAD_ID",
    "TINY_ENCODER_DIM",
    "TINY_TOKEN_IDS",
    "build_tiny_model",
    "built_in_bridges",
    "from_portable",
    "set_gates",
    "tiny_arch",
    "tiny_batch",
    "tiny_bridge_config",
    "to_portable",
]

TINY_ENCODER_DIM = 32
TINY_TOKEN_IDS = ProteinTokenIds(start=1000, embed=1001, end=1002)
PAD_ID = 0


def tiny_arch():
    """The `tiny` Qwen3 preset with a 1,024-token vocabulary (same padding at TP=1 and TP=2)."""
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    return dataclasses.replace(qwen3_preset("tiny"), vocab_size=1024)


def built_in_bridges() -> list[str]:
    """The bridges this package defines (`protein_llm_nemo/bridges/<name>.py`), not plug-ins a test may
    have registered in this process: what parametrised tests iterate, so a new built-in bridge file is
    covered by every one of them."""
    names = list_bridges()
    return [n for n in names if get_bridge_config_class(n).__module__.startswith("protein_llm_nemo.bridges.")]


def tiny_bridge_config(name: str, **overrides: Any) -> BridgeConfig:
    """Bridge `name` at its registered test sizes (`BridgeConfig.test_sizes`) for the tiny encoder."""
    cls = get_bridge_config_class(name)
    values = dict(cls.test_sizes)
    if cls.uses_encoder:
        values["encoder_dim"] = TINY_ENCODER_DIM
    values.update(overrides)
    return get_bridge_config(name, **values)


def _sample_tokens(config: BridgeConfig, text: list[list[int]]) -> list[int]:
    """Text pieces joined by one protein placeholder each (or by text residues for the text bridge)."""
    ids = TINY_TOKEN_IDS
    tokens: list[int] = list(text[0])
    for piece in text[1:]:
        if config.uses_encoder:
            tokens += [ids.start] + [ids.embed] * config.num_slots + [ids.end]
        else:
            tokens += [300, 301, 302]  # a "sequence" written as text
        tokens += piece
    return tokens


def tiny_batch(config: BridgeConfig, seed: int = 7) -> dict[str, Any]:
    """Two right-padded samples: one with a 5-residue protein, one with two proteins (9 and 7 residues)."""
    generator = torch.Generator().manual_seed(seed)
    samples = [
        _sample_tokens(config, [[11, 12], [13, 14, 15, 16, 17]]),
        _sample_tokens(config, [[21], [22], [23, 24, 25, 26]]),
    ]
    lengths = [5, 9, 7]
    width = max(len(s) for s in samples)
    input_ids = torch.full((2, width), PAD_ID, dtype=torch.long)
    attention = torch.zeros(2, width, dtype=torch.bool)
    for row, sample in enumerate(samples):
        input_ids[row, : len(sample)] = torch.tensor(sample)
        attention[row, : len(sample)] = True
    labels = torch.cat([input_ids[:, 1:], torch.full((2, 1), PAD_ID)], dim=1)
    protein = torch.isin(labels, torch.tensor(TINY_TOKEN_IDS.all))
    loss_mask = torch.cat([attention[:, 1:], torch.zeros(2, 1, dtype=torch.bool)], dim=1) & ~protein
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "position_ids": torch.arange(width).unsqueeze(0).expand(2, width).contiguous(),
        "labels": labels,
        "loss_mask": loss_mask.float(),
        "attention": attention,
        "proteins_per_sample": [1, 2],
        "protein_lengths": lengths,
        "protein_embeddings": None,
        "protein_mask": None,
    }
    if config.uses_encoder:
        mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
        for i, n in enumerate(lengths):
            mask[i, :n] = True
        # Pre-norm-like states: large offset and scale; zeros at padding like the encoders return.
        embeddings = (
            torch.randn(len(lengths), max(lengths), TINY_ENCODER_DIM, generator=generator) * 4 + 3
        ) * mask[..., None]
        batch["protein_embeddings"], batch["protein_mask"] = embeddings, mask
    return batch


def build_tiny_model(config: BridgeConfig, seed: int, parallel_output: bool = True):
    from protein_llm_nemo.models.protein_llm import build_protein_llm
    from protein_llm_nemo.runtime import seed_everything

    seed_everything(seed)
    model = build_protein_llm(
        tiny_arch(), config, protein_token_ids=TINY_TOKEN_IDS, parallel_output=parallel_output
    )
    model.eval()  # no dropout: layouts must agree exactly up to reduction order
    return model


def to_portable(value: Any) -> Any:
    """Tensors -> numpy arrays, recursively: results cross process boundaries as plain pickles (torch's
    shared-memory tensor pickling needs the sending process alive)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: to_portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_portable(v) for v in value)
    return value


def from_portable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {k: from_portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(from_portable(v) for v in value)
    return value


def set_gates(model, value: float) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("attn_gate", "ffn_gate")):
                param.fill_(value)
