"""`ProteinLLMForCausalLM`: the HuggingFace side of a ProteinLLM (what `conversion` exports).

    model = AutoModelForCausalLM.from_pretrained(folder)      # after `import protein_llm_nemo`
    out = model(input_ids, protein_embeddings=emb, protein_mask=mask)             # logits [B, S, V]
    ids = model.generate(**processor(prompt, proteins=["MKT..."]), max_new_tokens=64)

Layout (state-dict names mirror the megatron `ProteinLLMModel`, gathered over tensor parallelism):
- `language_model`: a stock `Qwen3ForCausalLM` (names `language_model.model.*`, `language_model.lm_head.*`);
- `bridge`: the bridge's twin (`BridgeConfig.build_hf`: the same module code on `nn.Linear`), same parameter
  names as the megatron bridge;
- `protein_token_embeddings`: the trainable rows of `<|protein_start|>`, `<|protein_embed|>`,
  `<|protein_end|>` that override the LLM's own rows (embedding bridges);
- `gated_cross_attention.{i}` (cross-attending bridges such as flamingo): the bridge's block run before
  decoder layer `i`, attached to
  the Qwen3 layer by a forward pre-hook, so the Qwen3 decoder stays the stock one. Its context (the
  resampler's latents of the sample's proteins) is fixed per sample and independent of the tokens, so the
  KV cache of the self-attention works unchanged during generation: `generate` computes it once.
- the protein encoder is a reference (`config.encoder`), built on first use by `encode_proteins`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel, Qwen3ForCausalLM

from protein_llm_nemo.bridges.blocks.gated_cross_attention import GATE_PARAMETER_NAMES
from protein_llm_nemo.bridges.blocks.inputs import (
    cross_attention_context,
    embed_protein_tokens,
    protein_counts,
    resolve_protein_inputs,
)
from protein_llm_nemo.bridges.blocks.layers import TorchLayers
from protein_llm_nemo.hf.configuration import ProteinLLMConfig

__all__ = ["ProteinLLMForCausalLM", "ProteinLLMPreTrainedModel"]

# transformers 5.24 renamed the KV-cache argument `past_key_values` to `cache`; pass the one Qwen3 takes.
_CACHE_ARGUMENT = (
    "cache" if "cache" in inspect.signature(Qwen3ForCausalLM.forward).parameters else "past_key_values"
)


class ProteinLLMPreTrainedModel(PreTrainedModel):
    config_class = ProteinLLMConfig
    config: ProteinLLMConfig
    base_model_prefix = "protein_llm"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen3DecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        ours = not type(module).__module__.startswith("transformers")
        for name, param in module.named_parameters(recurse=False) if ours else ():
            if name in GATE_PARAMETER_NAMES:
                nn.init.zeros_(param)  # gates start closed: the model starts as the plain LLM
            elif name not in ("weight", "bias"):  # learned queries, latents, positions
                nn.init.normal_(param, std=0.02)
        if hasattr(super(), "_init_weights") and type(module).__module__.startswith("transformers"):
            super()._init_weights(module)


class ProteinLLMForCausalLM(ProteinLLMPreTrainedModel, GenerationMixin):
    def __init__(self, config: ProteinLLMConfig) -> None:
        super().__init__(config)
        text = config.text_config
        if text.tie_word_embeddings:
            self._tied_weights_keys = {
                "language_model.lm_head.weight": "language_model.model.embed_tokens.weight"
            }
        self.language_model = Qwen3ForCausalLM(text)
        self.bridge_spec = spec = config.bridge_spec
        self.bridge = spec.build_hf(text.hidden_size)
        self.protein_token_embeddings = nn.Embedding(3, text.hidden_size) if spec.uses_encoder else None
        self.gated_cross_attention = None
        self._cross_attention_state: tuple[torch.Tensor, torch.Tensor | None] | None = None
        layers = config.cross_attention_layers()
        if layers:
            self.gated_cross_attention = nn.ModuleDict(
                {
                    str(i): spec.cross_attention_block(
                        TorchLayers(),
                        text.hidden_size,
                        text.num_attention_heads,
                        text.head_dim,
                        text.rms_norm_eps,
                    )
                    for i in layers
                }
            )
            for i in layers:
                self.language_model.model.layers[i].register_forward_pre_hook(
                    self._gated_block_hook(i), with_kwargs=True
                )
        self.protein_encoder: Any = None  # built on first use (encode_proteins), never saved here
        self.post_init()

    # -- plumbing -------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    @property
    def protein_token_ids(self):
        from protein_llm_nemo.tokenizer import ProteinTokenIds

        return ProteinTokenIds(*self.config.protein_token_ids)

    def _gated_block_hook(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            state = self._cross_attention_state or (None, None)  # no proteins: the gated FFN still runs
            block = self.gated_cross_attention[str(index)]
            if args:
                return (block(args[0], *state), *args[1:]), kwargs
            kwargs["hidden_states"] = block(kwargs["hidden_states"], *state)
            return args, kwargs

        return hook

    # -- proteins ---------------------------------------------------------------------------------
    def load_protein_encoder(self, encoder: Any = None) -> Any:
        """Attach `encoder` (anything with `encode(sequences) -> (embeddings, mask)`) or build the
        configured one (`config.encoder`, a registered name, with `config.encoder_config` overrides)."""
        if encoder is None:
            if not self.config.encoder:
                raise ValueError(
                    "this model names no protein encoder (config.encoder); pass protein_embeddings, or "
                    "attach one with model.load_protein_encoder(encoder)"
                )
            from protein_llm_nemo.encoders import build_protein_encoder

            encoder = build_protein_encoder(self.config.encoder, **(self.config.encoder_config or {}))
        dim = getattr(encoder, "embedding_dim", None)
        if dim is not None and dim != self.config.encoder_dim:
            raise ValueError(
                f"the protein encoder returns {dim}-d embeddings but the bridge expects {self.config.encoder_dim}"
            )
        self.protein_encoder = encoder
        return encoder

    @torch.no_grad()
    def encode_proteins(self, sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(embeddings [N, L, D], mask [N, L])` of amino-acid sequences with the referenced encoder.

        Invalid sequences raise `protein_llm_nemo.encoders.InvalidSequenceError` naming the problem."""
        if not self.config.uses_encoder:
            raise ValueError("the 'text' bridge takes no protein embeddings: put the sequence in the prompt")
        if isinstance(sequences, str):
            sequences = [sequences]
        encoder = self.protein_encoder or self.load_protein_encoder()
        embeddings, mask = encoder.encode(list(sequences))
        return embeddings.to(device=self.device, dtype=self.dtype), mask.to(self.device)

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        protein_embeddings: torch.Tensor | None = None,
        protein_mask: torch.Tensor | None = None,
        prefill: bool = True,
    ) -> torch.Tensor:
        """`inputs_embeds [B, S, H]`: word embeddings, boundary-token rows, bridge vectors at the slots."""
        spec = self.bridge_spec
        slot_vectors = None
        if spec.splices and protein_embeddings is not None:
            slot_vectors = self.bridge(protein_embeddings, protein_mask)
        table = None if self.protein_token_embeddings is None else self.protein_token_embeddings.weight
        return embed_protein_tokens(
            self.get_input_embeddings()(input_ids),
            input_ids,
            self.protein_token_ids,
            table,
            slot_vectors,
            spec.num_slots if spec.splices else 0,
            require_slot_vectors=prefill,
        )

    def cross_attention_context(
        self, input_ids: torch.Tensor, embeddings: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The cross-attention context `[B, C, D]` of the bridge's latents and its mask `[B, C]` (True =
        ignore): each sample sees the latents of its own proteins."""
        if embeddings is None:
            protein_counts(input_ids, self.protein_token_ids.start, None)  # no proteins may be expected
            return None, None
        latents = self.bridge(embeddings, mask)  # [N, Q, D]
        return cross_attention_context(latents, input_ids, self.protein_token_ids.start)

    # -- forward ----------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        protein_embeddings: torch.Tensor | None = None,
        protein_mask: torch.Tensor | None = None,
        protein_sequences: Sequence[str] | None = None,
        cross_attention_context: torch.Tensor | None = None,
        cross_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """Causal-LM outputs of the Qwen3 decoder fed with proteins.

        protein_embeddings [N, L, D] / protein_mask [N, L]: encoder outputs of the N proteins of the batch in
        row-major order (or `protein_sequences`, encoded with the referenced encoder). Flamingo also takes a
        precomputed `cross_attention_context [B, C, D]` + `cross_attention_mask [B, C]` (what `generate`
        passes at every step)."""
        protein_embeddings, protein_mask = resolve_protein_inputs(
            protein_sequences, protein_embeddings, protein_mask, self.encode_proteins, self.bridge_spec
        )
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)  # transformers < 5.24
        prefill = cache is None or cache.get_seq_length() == 0
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids (or inputs_embeds)")
            inputs_embeds = self.embed_inputs(input_ids, protein_embeddings, protein_mask, prefill)
        needs_context = cross_attention_context is None and input_ids is not None
        if self.bridge_spec.cross_attention and needs_context and (protein_embeddings is not None or prefill):
            cross_attention_context, cross_attention_mask = self.cross_attention_context(
                input_ids, protein_embeddings, protein_mask
            )
        state = None if cross_attention_context is None else (cross_attention_context, cross_attention_mask)
        self._cross_attention_state = state
        try:
            return self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **{_CACHE_ARGUMENT: cache},
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )
        finally:
            self._cross_attention_state = None

    # -- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        protein_embeddings: torch.Tensor | None = None,
        protein_mask: torch.Tensor | None = None,
        protein_sequences: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        """`GenerationMixin.generate` with proteins: the prompt (with its placeholders) in `input_ids`, the
        proteins as `protein_sequences` or precomputed `protein_embeddings`/`protein_mask`.

        Splicing bridges run once on the prompt (its embeddings become the prefill's `inputs_embeds`);
        flamingo's cross-attention context is computed once and passed to every decoding step."""
        protein_embeddings, protein_mask = resolve_protein_inputs(
            protein_sequences, protein_embeddings, protein_mask, self.encode_proteins, self.bridge_spec
        )
        if input_ids is not None and self.bridge_spec.uses_encoder and "inputs_embeds" not in kwargs:
            if self.bridge_spec.cross_attention:
                context, mask = self.cross_attention_context(input_ids, protein_embeddings, protein_mask)
                if context is not None:
                    kwargs.update(cross_attention_context=context, cross_attention_mask=mask)
            else:
                kwargs["inputs_embeds"] = self.embed_inputs(input_ids, protein_embeddings, protein_mask)
        return super().generate(input_ids=input_ids, **kwargs)
