"""Rank bodies of the layout checks: the same tiny ProteinLLM at TP=1/PP=1 and at TP=2 or PP=2.

`reference_run` builds a tiny ProteinLLM per bridge on one rank, runs a forward pass (logits) and a
forward-backward pass (masked token loss) through megatron's own pipeline schedule and returns the full
parameters, logits and gradients. `layout_run` loads those parameters into a TP/PP layout, runs the same
passes and returns the largest logit and gradient differences. `checkpoint_run` and
`language_model_checkpoint_run` save and reload dist checkpoints across layouts. Tests call them through
`protein_llm_nemo.testing.multiprocess.run_distributed`.
"""

from __future__ import annotations

from typing import Any

import torch

from protein_llm_nemo.models.parallel_weights import load_full_parameters, shard_full_tensor
from protein_llm_nemo.testing.pipeline import pipeline_logits, pipeline_loss_backward, trainable_grads
from protein_llm_nemo.testing.tiny import (
    TINY_TOKEN_IDS,
    build_tiny_model,
    from_portable,
    set_gates,
    tiny_arch,
    tiny_batch,
    tiny_bridge_config,
    to_portable,
)

__all__ = ["checkpoint_run", "language_model_checkpoint_run", "layout_run", "reference_run"]


def reference_run(rank: int, world_size: int, bridge_names: list[str], seed: int = 1234) -> dict[str, Any]:
    """TP=1, PP=1: full parameters, logits, loss and trainable gradients per bridge."""
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(ParallelConfig(), seed=seed)
    results: dict[str, Any] = {}
    for name in bridge_names:
        config = tiny_bridge_config(name)
        model = build_tiny_model(config, seed)
        if name == "text":
            model.freeze(language_model=False)  # something must train
        set_gates(model, 0.5)  # open the flamingo gates so the cross-attention path matters
        batch = tiny_batch(config)
        logits = pipeline_logits(model, batch)
        loss = pipeline_loss_backward(model, batch)
        grads = {key: grad.clone() for key, (_, grad) in trainable_grads(model).items() if grad is not None}
        results[name] = {
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "logits": logits,
            "loss": loss,
            "grads": grads,
            "trainable": sorted(key for key in trainable_grads(model)),
        }
    return to_portable(results)


def layout_run(
    rank: int,
    world_size: int,
    reference: dict[str, Any],
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    seed: int = 1234,
) -> dict[str, Any]:
    """Load each bridge's reference parameters into this layout; return max |difference| of logits and grads."""
    from megatron.core import parallel_state

    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(
        ParallelConfig(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        ),
        seed=seed,
    )
    results: dict[str, Any] = {}
    reference = from_portable(reference)
    for name, ref in reference.items():
        config = tiny_bridge_config(name)
        model = build_tiny_model(config, seed)
        if name == "text":
            model.freeze(language_model=False)
        load_full_parameters(model, ref["params"])
        batch = tiny_batch(config)
        logits = pipeline_logits(model, batch)
        loss = pipeline_loss_backward(model, batch)
        grad_diffs: dict[str, float] = {}
        missing: list[str] = []
        for key, (local_name, grad) in trainable_grads(model).items():
            if grad is None:
                missing.append(key)
                continue
            expected = shard_full_tensor(model, local_name, ref["grads"][key])
            grad_diffs[key] = float((grad - expected).abs().max())
        results[name] = {
            "stage": parallel_state.get_pipeline_model_parallel_rank(),
            "logits_diff": None if logits is None else float((logits - ref["logits"]).abs().max()),
            "loss_diff": None if loss is None else abs(loss - ref["loss"]),
            "grad_diffs": grad_diffs,
            "missing_grads": missing,
            "bridge_parameters": sum(p.numel() for p in model.bridge.parameters()) if model.bridge else 0,
            "bridge_shared": bool(model.bridge)
            and all(getattr(p, "shared", False) for p in model.bridge.parameters()),
        }
    return results


def checkpoint_run(
    rank: int,
    world_size: int,
    bridges: dict[str, tuple[str, dict[str, Any]]],
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    load_from: str | None,
    save_to: str | None,
    seed: int = 1234,
) -> dict[str, Any]:
    """Build each tiny model (`bridges`: label -> (bridge name, config overrides)) at a layout, optionally
    load a megatron dist checkpoint saved at any layout, return the logits (last stage) and optionally save.

    Without `load_from` the gates are opened to 0.5 so the flamingo path shows in the logits; with it the
    model starts from a different seed, so equal logits prove the load.
    """
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed

    initialize_distributed(
        ParallelConfig(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        ),
        seed=seed,
    )
    results: dict[str, Any] = {}
    for label, (name, overrides) in bridges.items():
        config = tiny_bridge_config(name, **overrides)
        model = build_tiny_model(config, seed + 1 if load_from else seed)
        if load_from:
            results[f"{label}_fresh_logits"] = pipeline_logits(model, tiny_batch(config))  # before loading
            loaded = dist_checkpointing.load(model.sharded_state_dict(), f"{load_from}/{label}")
            missing, unexpected = model.load_state_dict(loaded, strict=False)
            results[f"{label}_load_mismatch"] = sorted(
                k for k in [*missing, *unexpected] if not k.endswith("_extra_state")
            )
        else:
            set_gates(model, 0.5)
        results[f"{label}_logits"] = pipeline_logits(model, tiny_batch(config))
        if save_to:
            dist_checkpointing.save(model.sharded_state_dict(), f"{save_to}/{label}")
    return to_portable(results)


def language_model_checkpoint_run(
    rank: int,
    world_size: int,
    tensor_model_parallel_size: int,
    pipeline_model_parallel_size: int,
    folder: str,
    save: bool,
    seed: int = 1234,
) -> dict[str, Any]:
    """`save`: write a plain Qwen3 GPTModel checkpoint and return its logits on the flamingo batch's tokens.
    Otherwise: build flamingo and mlp ProteinLLMs from another seed, `load_language_model(folder)`, and
    return flamingo's logits and whether mlp's boundary-token table now holds the loaded LLM's rows."""
    from megatron.core import dist_checkpointing

    from protein_llm_nemo.models.qwen3 import build_qwen3_model
    from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed, seed_everything

    initialize_distributed(
        ParallelConfig(
            tensor_model_parallel_size=tensor_model_parallel_size,
            pipeline_model_parallel_size=pipeline_model_parallel_size,
        ),
        seed=seed,
    )
    batch = tiny_batch(tiny_bridge_config("flamingo"))
    if save:
        seed_everything(seed)
        plain = build_qwen3_model(tiny_arch()).eval()
        plain_batch = dict(batch, protein_embeddings=None, protein_mask=None)

        class _Plain(torch.nn.Module):  # the schedule's forward_step passes protein kwargs
            def __init__(self, model):
                super().__init__()
                self.model, self.config, self.model_type = model, model.config, model.model_type

            def set_input_tensor(self, tensor):
                self.model.set_input_tensor(tensor)

            def forward(self, input_ids, position_ids, attention_mask, runtime_gather_output=None, **_):
                return self.model(
                    input_ids, position_ids, attention_mask, runtime_gather_output=runtime_gather_output
                )

        logits = pipeline_logits(_Plain(plain), plain_batch)
        dist_checkpointing.save(plain.sharded_state_dict(), folder)
        return to_portable({"logits": logits})
    flamingo = build_tiny_model(tiny_bridge_config("flamingo"), seed + 1)
    before = pipeline_logits(flamingo, batch)
    flamingo.load_language_model(folder)
    after = pipeline_logits(flamingo, batch)
    mlp = build_tiny_model(tiny_bridge_config("mlp"), seed + 1)
    mlp.load_language_model(folder)
    table_ok = None
    if mlp.protein_token_embeddings is not None:
        ids = torch.tensor([list(TINY_TOKEN_IDS.all)])
        with torch.no_grad():
            rows = mlp.language_model.embedding.word_embeddings(ids)[0]
        table_ok = torch.equal(rows, mlp.protein_token_embeddings.weight)
    return to_portable({"before": before, "after": after, "table_ok": table_ok})
