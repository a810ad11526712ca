"""`ProteinLLMModel`: protein encoder (frozen, optional) -> bridge -> megatron-core Qwen3 `GPTModel`.

    model = build_protein_llm(qwen3_preset("8b"), get_bridge_config("mlp"))
    out = model(input_ids, position_ids, attention_mask=None,
                protein_embeddings=emb, protein_mask=mask,      # or sequences=[...] with a live encoder
                labels=labels)                                  # -> per-token loss [B, S] (else logits)

How proteins reach the decoder:
- splicing bridges (`mlp`, `perceiver`): the prompt holds `<|protein_start|>` + `num_slots` x
  `<|protein_embed|>` + `<|protein_end|>` per protein (expanded at formatting time, so positions and packing
  are static). The bridge output `[num_proteins, num_slots, H]` replaces the embeddings of those slots in
  `decoder_input`, protein by protein in row-major order (several proteins per sample are fine).
- `flamingo`: one placeholder group per protein; the resampler's latents become the cross-attention
  context of the gated blocks (`extra_block_kwargs`), built on every pipeline stage.
- `text`: the sequence is prompt text; no encoder, no bridge.
The three boundary tokens get their own small trainable table (`protein_token_embeddings`, 3 x H) that
overrides the frozen LLM embedding rows; it is initialised from those rows (call
`reset_protein_token_embeddings()` again after loading LLM weights) and is part of the saved state.

Parameter groups (`models/parameter_groups.py`): `language_model`, `lora`, `bridge`, `gates`,
`protein_tokens`, for per-group learning rates, grad norms and freezing.

Pipeline parallelism: the bridge lives on the first stage for splicing bridges; for flamingo every stage
holds a resampler replica (see `bridges/flamingo.py`); sum their gradients with
`allreduce_pipeline_replicated_grads()` before the optimizer step. Sequence parallelism is not supported
yet (splicing needs the full sequence on every TP rank).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.transformer.module import MegatronModule
from torch import nn

from protein_llm_nemo.bridges import BridgeConfig
from protein_llm_nemo.bridges.blocks.inputs import (
    cross_attention_context,
    embed_protein_tokens,
    protein_counts,
    resolve_protein_inputs,
)
from protein_llm_nemo.bridges.blocks.megatron import sharded_state_dict_of
from protein_llm_nemo.models.parameter_groups import ParameterGroups
from protein_llm_nemo.tokenizer import IGNORE_INDEX, PROTEIN_TOKEN_IDS, ProteinTokenIds

__all__ = ["ProteinLLMModel", "build_protein_llm"]


class ProteinLLMModel(ParameterGroups, MegatronModule):
    def __init__(
        self,
        language_model: nn.Module,
        bridge_config: BridgeConfig,
        bridge: nn.Module | None = None,
        protein_encoder: Any | None = None,
        protein_token_ids: ProteinTokenIds = PROTEIN_TOKEN_IDS,
    ) -> None:
        super().__init__(config=language_model.config)
        if self.config.sequence_parallel:
            raise ValueError(
                "ProteinLLMModel does not support sequence_parallel yet; set sequence_parallel=False"
            )
        if protein_encoder is not None and not bridge_config.uses_encoder:
            raise ValueError(f"the {bridge_config.name!r} bridge takes no protein encoder")
        encoder_dim = getattr(protein_encoder, "embedding_dim", None)
        if encoder_dim is not None and encoder_dim != bridge_config.encoder_dim:
            raise ValueError(
                f"the protein encoder returns {encoder_dim}-d embeddings but the {bridge_config.name!r} bridge "
                f"expects encoder_dim={bridge_config.encoder_dim}"
            )
        self.language_model = language_model
        self.model_type = language_model.model_type  # read by megatron's pipeline schedules
        self.bridge_config = bridge_config
        self.bridge = bridge
        # Not an nn.Module attribute on purpose: the frozen encoder is neither trained nor saved here.
        self.protein_encoder = protein_encoder
        self.protein_token_ids = protein_token_ids
        self.pre_process = language_model.pre_process
        self.post_process = language_model.post_process
        self.protein_token_embeddings: nn.Embedding | None = None
        if bridge is not None and bridge_config.cross_attention and not self.pre_process:
            # Flamingo's resampler replica on a later pipeline stage: megatron's grad-norm clipping skips
            # `shared` parameters, so the replicated weights are counted once (on the first stage).
            for param in bridge.parameters():
                param.shared = True
        if self.pre_process and bridge_config.uses_encoder:
            self.protein_token_embeddings = nn.Embedding(
                len(protein_token_ids.all), self.config.hidden_size, dtype=self.config.params_dtype
            )
            self.reset_protein_token_embeddings()

    # -- pipeline plumbing ----------------------------------------------------------------------
    def set_input_tensor(self, input_tensor: Any) -> None:
        self.language_model.set_input_tensor(input_tensor)

    # megatron's `finalize_model_grads` asks the pre_process module for the tied embedding (PP > 1).
    @property
    def share_embeddings_and_output_weights(self) -> bool:
        return self.language_model.share_embeddings_and_output_weights

    def shared_embedding_or_output_weight(self) -> torch.Tensor:
        return self.language_model.shared_embedding_or_output_weight()

    # -- boundary tokens ------------------------------------------------------------------------
    @torch.no_grad()
    def reset_protein_token_embeddings(self) -> None:
        """Copy the LLM's embedding rows of the boundary tokens into the trainable table (all TP ranks)."""
        if self.protein_token_embeddings is None:
            return
        word_embeddings = self.language_model.embedding.word_embeddings
        weight = word_embeddings.weight
        ids = torch.tensor([list(self.protein_token_ids.all)], dtype=torch.long, device=weight.device)
        rows = word_embeddings(ids)  # vocab-parallel lookup, all-reduced over TP: full rows everywhere
        rows = rows.reshape(len(self.protein_token_ids.all), -1)
        self.protein_token_embeddings.weight.copy_(rows.to(self.protein_token_embeddings.weight))

    # -- proteins --------------------------------------------------------------------------------
    def encode_proteins(self, sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.protein_encoder is None:
            raise ValueError(
                "sequences were given but the model has no protein_encoder; pass protein_embeddings"
            )
        embeddings, mask = self.protein_encoder.encode(list(sequences))
        device = next(self.parameters()).device
        return embeddings.to(device=device, dtype=self.config.params_dtype), mask.to(device)

    def embed_tokens(self, input_ids: torch.Tensor, slot_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """`decoder_input [S, B, H]`: word embeddings, boundary-token rows, bridge vectors at the slots."""
        embedding = self.language_model.embedding
        words = embed_protein_tokens(
            embedding.word_embeddings(input_ids),  # [B, S, H]
            input_ids,
            self.protein_token_ids,
            None if self.protein_token_embeddings is None else self.protein_token_embeddings.weight,
            slot_vectors,
            self.bridge_config.num_slots if self.bridge_config.splices else 0,
        )
        decoder_input = words.transpose(0, 1).contiguous()
        if self.config.fp32_residual_connection:
            decoder_input = decoder_input.float()
        return embedding.embedding_dropout(decoder_input)

    def cross_attention_context(
        self,
        input_ids: torch.Tensor,
        embeddings: torch.Tensor | None,
        mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The cross-attention context `[C, B, D]` (megatron's layout) and its mask (True = ignore) of the
        bridge's latents: `[B, C]`, or per token `[B, S, C]` with `segment_ids [B, S]` (packed rows)."""
        if embeddings is None:
            protein_counts(input_ids, self.protein_token_ids.start, None)  # no proteins may be expected
            return None, None
        latents = self.bridge(embeddings, mask)  # [N, Q, D]
        context, ignore = cross_attention_context(
            latents, input_ids, self.protein_token_ids.start, segment_ids
        )
        return context.transpose(0, 1).contiguous(), ignore

    @staticmethod
    def segment_ids_from_packed(packed_seq_params: Any, input_ids: torch.Tensor) -> torch.Tensor:
        """Sample index of every token of a THD-packed row (`cu_seqlens_q`, batch of one row)."""
        if input_ids.shape[0] != 1:
            raise ValueError(
                "packed sequences (packed_seq_params) expect input_ids of shape [1, total_tokens]"
            )
        from protein_llm_nemo.models.attention import packed_cu_seqlens

        cu = packed_cu_seqlens(packed_seq_params)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return torch.searchsorted(cu[1:].to(input_ids.device), positions, right=True).unsqueeze(0)

    # -- forward ---------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        protein_embeddings: torch.Tensor | None = None,
        protein_mask: torch.Tensor | None = None,
        sequences: Sequence[str] | None = None,
        labels: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        packed_seq_params: Any = None,
        inference_context: Any = None,
        runtime_gather_output: bool | None = None,
        segment_ids: torch.Tensor | None = None,
        cross_attention: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Logits `[B, S, V]` (last stage), per-token loss `[B, S]` when `labels` are given (zeroed where
        `loss_mask` is 0), or the hidden states `[S, B, H]` on other pipeline stages.

        `segment_ids [B, S]` (or `packed_seq_params`) mark packed samples: flamingo's tokens then attend
        only to their own sample's proteins. Splicing bridges need nothing: slots are positions.
        `cross_attention`: a precomputed `cross_attention_context(...)` (generation computes it once per
        prompt and passes it to every decoding step)."""
        config = self.bridge_config
        protein_embeddings, protein_mask = resolve_protein_inputs(
            sequences, protein_embeddings, protein_mask, self.encode_proteins, config
        )
        decoder_input = None
        extra_block_kwargs = None
        if self.pre_process:
            slot_vectors = None
            if config.splices and protein_embeddings is not None:
                slot_vectors = self.bridge(protein_embeddings, protein_mask)
            decoder_input = self.embed_tokens(input_ids, slot_vectors)
        if config.cross_attention and cross_attention is not None:
            context, context_mask = cross_attention
            extra_block_kwargs = {"context": context, "context_mask": context_mask}
        elif config.cross_attention:
            if segment_ids is None and packed_seq_params is not None:
                segment_ids = self.segment_ids_from_packed(packed_seq_params, input_ids)
            context, context_mask = self.cross_attention_context(
                input_ids, protein_embeddings, protein_mask, segment_ids
            )
            extra_block_kwargs = {"context": context, "context_mask": context_mask}
        if labels is not None and loss_mask is not None:
            # A position without loss needs no target, and one without target is not projected (Qwen3GPTModel).
            labels = labels.masked_fill(loss_mask == 0, IGNORE_INDEX)
        output = self.language_model(
            input_ids,
            position_ids,
            attention_mask,
            decoder_input=decoder_input,
            labels=labels,
            inference_context=inference_context,
            packed_seq_params=packed_seq_params,
            extra_block_kwargs=extra_block_kwargs,
            runtime_gather_output=runtime_gather_output,
        )
        if labels is not None and loss_mask is not None and self.post_process:
            output = output * loss_mask.to(output.dtype)
        return output

    # -- distributed checkpointing ----------------------------------------------------------------
    def load_language_model(self, checkpoint: Any) -> None:
        """Load a Qwen3 megatron dist checkpoint into `language_model` (any TP/PP layout), then re-copy the
        boundary-token rows from it.

        Accepted: a plain Qwen3 checkpoint (`protein-llm convert import`), or the language model inside a
        ProteinLLM / training checkpoint such as an SSL run's (its keys carry `language_model.`); a training
        run folder resolves to its `latest` step. The gated cross-attention blocks and LoRA adapters
        (`models/lora.py`) keep their initialisation (gates 0, LoRA B 0: the model is the loaded LLM exactly).

        The LLM loaded must be the LLM configured: the checkpoint's header (`protein_llm_checkpoint.json`,
        written by the importer and by training runs) must name this model's architecture (rope base, norm
        eps, hidden, heads, head dim, vocabulary, layers, tying), else `CheckpointMismatchError` lists every
        differing field. A checkpoint without a header (a bare `dist_checkpointing.save`) still loads, with a
        warning: its tensor shapes are checked by the load, its rope base and norm eps cannot be.
        """
        from pathlib import Path

        from protein_llm_nemo.models.dist_checkpoint import (
            CHECKPOINT_HEADER,
            CheckpointMismatchError,
            arch_differences,
            load_sharded_state,
            read_checkpoint_arch,
            read_tensors_metadata,
        )
        from protein_llm_nemo.models.qwen3 import qwen3_arch_of
        from protein_llm_nemo.runtime.logging import get_logger

        checkpoint = Path(checkpoint)
        if (checkpoint / "latest").is_file():
            checkpoint = checkpoint / (checkpoint / "latest").read_text().strip()
        stored_arch = read_checkpoint_arch(checkpoint)
        if stored_arch is None:
            get_logger(__name__).warning(
                "%s has no %s: loading it unchecked (tensor shapes must match; the rope base and norm eps "
                "of the checkpoint cannot be compared with the model's)",
                checkpoint,
                CHECKPOINT_HEADER,
            )
        else:
            differences = arch_differences(qwen3_arch_of(self.language_model), stored_arch)
            if differences:
                raise CheckpointMismatchError(
                    f"{checkpoint} holds another language model than the one configured "
                    f"({len(differences)} field(s) differ, per its {CHECKPOINT_HEADER}): {'; '.join(differences)}"
                )
        stored = read_tensors_metadata(checkpoint)
        prefix = "language_model." if any(key.startswith("language_model.") for key in stored) else ""
        if any(".adapter." in key for key in stored):
            raise ValueError(
                f"{checkpoint} holds LoRA adapters: merge them first (export with --lora merged and import the "
                "result), or continue that run with `checkpoint.load_model_from`"
            )

        def not_in_an_llm_checkpoint(name: str) -> bool:
            return "gated_cross_attention" in name or ".adapter." in name

        load_sharded_state(self.language_model, checkpoint, prefix=prefix, skip=not_in_an_llm_checkpoint)
        self.reset_protein_token_embeddings()

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata: dict | None = None):
        """megatron dist-checkpoint entries: `language_model.*` (megatron's own layout), `bridge.*`,
        `protein_token_embeddings.*`. A checkpoint saved at one TP/PP layout loads at any other.

        Flamingo's resampler is replicated over pipeline stages; only stage 0's copy is the main replica.
        """
        from megatron.core.dist_checkpointing.dict_utils import nested_values
        from megatron.core.transformer.utils import sharded_state_dict_default

        state = self.language_model.sharded_state_dict(f"{prefix}language_model.", sharded_offsets, metadata)
        if self.protein_token_embeddings is not None:
            # A plain nn.Embedding: replicated over TP, so its replica id must carry the TP rank.
            kwargs = {}
            if "tp_group" in inspect.signature(sharded_state_dict_default).parameters:
                kwargs["tp_group"] = parallel_state.get_tensor_model_parallel_group()
            state.update(
                sharded_state_dict_default(
                    self.protein_token_embeddings,
                    f"{prefix}protein_token_embeddings.",
                    sharded_offsets,
                    metadata,
                    **kwargs,
                )
            )
        if self.bridge is not None:
            bridge_state = sharded_state_dict_of(self.bridge, f"{prefix}bridge.", sharded_offsets, metadata)
            pp_rank = parallel_state.get_pipeline_model_parallel_rank()
            if self.bridge_config.cross_attention and pp_rank > 0:
                for entry in nested_values(bridge_state):
                    replica = entry.replica_id
                    entry.replica_id = (pp_rank, *replica[1:]) if isinstance(replica, tuple) else pp_rank
            state.update(bridge_state)
        return state

    # -- pipeline-replicated bridge (flamingo) ------------------------------------------------------
    def pipeline_replicated_parameters(self) -> Iterator[nn.Parameter]:
        """Bridge parameters held by every pipeline stage (flamingo's resampler when PP > 1)."""
        if self.bridge is None or not self.bridge_config.cross_attention:
            return iter(())
        if parallel_state.get_pipeline_model_parallel_world_size() == 1:
            return iter(())
        return (p for p in self.bridge.parameters() if p.requires_grad)

    def allreduce_pipeline_replicated_grads(self, main_grad: bool = False) -> None:
        """Sum the replicas' gradients over the pipeline group (each stage saw only its own blocks).

        `main_grad=True` reduces megatron DDP's fp32 `main_grad` buffers (the training loop, after
        `finalize_model_grads`); otherwise the plain `.grad` of a model used without DDP."""
        attribute = "main_grad" if main_grad else "grad"
        grads = [getattr(p, attribute, None) for p in self.pipeline_replicated_parameters()]
        grads = [g for g in grads if g is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat, group=parallel_state.get_pipeline_model_parallel_group())
        for grad, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
            grad.copy_(reduced)


def build_protein_llm(
    arch: Any,
    bridge_config: BridgeConfig,
    *,
    language_config: Any = None,
    protein_encoder: Any | None = None,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    parallel_output: bool = True,
    freeze_language_model: bool = True,
    protein_token_ids: ProteinTokenIds = PROTEIN_TOKEN_IDS,
) -> ProteinLLMModel:
    """This rank's stage of a ProteinLLM (megatron parallel groups must be initialised).

    The LLM is frozen by default (LoRA or full fine-tuning unfreezes it explicitly); the bridge, the gated
    blocks and the boundary-token table are trainable.
    """
    from protein_llm_nemo.models.qwen3 import build_qwen3_model, layer_spec, transformer_config

    if language_config is None:
        language_config = transformer_config(
            arch,
            tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
            pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        )
    if bridge_config.uses_encoder and protein_token_ids.end >= arch.vocab_size:
        raise ValueError(
            f"protein token ids {protein_token_ids.all} do not fit the vocabulary of {arch.vocab_size} tokens"
        )
    spec = bridge_config.decoder_layer_spec(layer_spec(arch))
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    language_model = build_qwen3_model(
        arch,
        config=language_config,
        pre_process=pre_process,
        post_process=post_process,
        spec=spec,
        parallel_output=parallel_output,
    )
    bridge = None
    if bridge_config.uses_encoder and (bridge_config.cross_attention or pre_process):
        bridge = bridge_config.build(language_config)
    model = ProteinLLMModel(language_model, bridge_config, bridge, protein_encoder, protein_token_ids)
    if freeze_language_model:
        model.freeze(language_model=True)
    return model
