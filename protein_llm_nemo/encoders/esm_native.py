"""ESM3 and ESM C through EvolutionaryScale's `esm` package (the upstream implementation; not a dependency of
the base install: `pip install 'protein-llm-nemo[esm]'` then `pip install --no-deps esm==3.2.1.post1`)."""

from __future__ import annotations

from pathlib import Path

import torch

from protein_llm_nemo.encoders.base import ProteinEncoder, resolve_device
from protein_llm_nemo.encoders.config import EncoderConfig
from protein_llm_nemo.encoders.registry import register_encoder, register_family
from protein_llm_nemo.encoders.weights import (
    EncoderWeightsError,
    find_state_dict_file,
    load_state_dict,
    resolve_weights,
)
from protein_llm_nemo.optional import optional_import

_ESMC_LICENCE_300M = "ESM C 300M: EvolutionaryScale Cambrian Open License (commercial use allowed)"
_ESMC_LICENCE_600M = "ESM C 600M: EvolutionaryScale Cambrian Non-Commercial License"
_ESM3_LICENCE = "ESM3-open (esm3-sm-open-v1): EvolutionaryScale Cambrian Non-Commercial License"
_RANDOM_LICENCE = "random weights built offline: no licence constraints"


class _NativeEsmEncoder(ProteinEncoder):
    def _new_module(self) -> torch.nn.Module:
        raise NotImplementedError

    def _build_model(self) -> torch.nn.Module:
        c = self.config
        state = path = None
        if not c.random_init:  # find and read the weights first: fail before building a large model
            assert c.weights is not None
            patterns = [c.weights_file] if c.weights_file else ["model.safetensors"]
            source = resolve_weights(c.name, c.weights, allow_patterns=patterns)
            path = source if source.is_file() else find_state_dict_file(source, c.weights_file)
            state = load_state_dict(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            model = self._new_module()
        if state is not None:
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise EncoderWeightsError(
                    f"{path}: does not match encoder {c.name!r} (d={c.embedding_dim}, layers={c.num_layers}): {err}"
                ) from err
        return model

    def save_weights(self, directory: str | Path) -> Path:
        """Write `model.safetensors` (loadable with `weights=directory`)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        return directory


@register_family("esmc")
class EsmcEncoder(_NativeEsmEncoder):
    """ESM C (`esm.models.esmc.ESMC`); `embeddings` are post-final-LayerNorm."""

    def _new_module(self) -> torch.nn.Module:
        with optional_import("the ESM C encoder", "esm"):
            from esm.models.esmc import ESMC
            from esm.tokenization import get_esmc_model_tokenizers

        c = self.config
        return ESMC(
            d_model=c.embedding_dim,
            n_heads=c.num_heads,
            n_layers=c.num_layers,
            tokenizer=get_esmc_model_tokenizers(),
            use_flash_attn=self.device.type == "cuda",
        )

    def _forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.model(sequence_tokens=tokens, sequence_id=pad_mask).embeddings


def _no_structure_model(device):  # the esm callback signature; never called for the sequence track
    raise EncoderWeightsError(
        "this ESM3 is a sequence-only protein encoder: structure/function decoders are not loaded"
    )


@register_family("esm3")
class Esm3Encoder(_NativeEsmEncoder):
    """ESM3, sequence track only.

    Padding: ESM3 builds no padding mask itself, so `_forward` passes `sequence_id = tokens != pad`;
    without it a sequence's embeddings depend on how much padding its batch neighbours add.
    Output: ESM3's `embeddings` are the state *before* the final LayerNorm (large norms, unlike
    ESM C); they are returned as is, and the bridge normalises its input.
    """

    def __init__(self, config: EncoderConfig):
        if resolve_device(config.device).type == "cpu" and config.dtype not in (None, "float32"):
            raise ValueError(f"{config.name}: ESM3 runs in float32 on CPU (its bf16/fp16 CPU path fails)")
        super().__init__(config)

    def _new_module(self) -> torch.nn.Module:
        with optional_import("the ESM3 encoder", "esm"):
            from esm.models.esm3 import ESM3
            from esm.tokenization import (
                EsmSequenceTokenizer,
                InterProQuantizedTokenizer,
                ResidueAnnotationsTokenizer,
                SASADiscretizingTokenizer,
                SecondaryStructureTokenizer,
                StructureTokenizer,
                TokenizerCollection,
            )

        c = self.config
        tokenizers = TokenizerCollection(
            sequence=EsmSequenceTokenizer(),
            structure=StructureTokenizer(),
            secondary_structure=SecondaryStructureTokenizer(kind="ss8"),
            sasa=SASADiscretizingTokenizer(),
            function=InterProQuantizedTokenizer(),
            # Its default csv_path downloads from the hub; the sequence track never reads it.
            residue_annotations=ResidueAnnotationsTokenizer(csv_path="<unused: sequence-only encoder>"),
        )
        return ESM3(
            d_model=c.embedding_dim,
            n_heads=c.num_heads,
            v_heads=c.v_heads,
            n_layers=c.num_layers,
            structure_encoder_fn=_no_structure_model,
            structure_decoder_fn=_no_structure_model,
            function_decoder_fn=_no_structure_model,
            tokenizers=tokenizers,
        )

    def _forward(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        return self.model(sequence_tokens=tokens, sequence_id=pad_mask).embeddings


# -- registered encoders -------------------------------------------------------------------------
@register_encoder("esm3-open")
def esm3_open() -> EncoderConfig:
    return EncoderConfig(
        name="esm3-open",
        family="esm3",
        embedding_dim=1536,
        num_layers=48,
        num_heads=24,
        v_heads=256,
        max_length=2046,
        licence=_ESM3_LICENCE,
        weights="EvolutionaryScale/esm3-sm-open-v1",
        weights_file="data/weights/esm3_sm_open_v1.pth",
    )


@register_encoder("esm3-tiny")
def esm3_tiny() -> EncoderConfig:
    return EncoderConfig(
        name="esm3-tiny",
        family="esm3",
        embedding_dim=64,
        num_layers=2,
        num_heads=4,
        v_heads=4,
        max_length=1022,
        licence=_RANDOM_LICENCE,
        random_init=True,
        max_residues_per_batch=4096,
    )


@register_encoder("esmc-300m")
def esmc_300m() -> EncoderConfig:
    return EncoderConfig(
        name="esmc-300m",
        family="esmc",
        embedding_dim=960,
        num_layers=30,
        num_heads=15,
        max_length=2046,
        licence=_ESMC_LICENCE_300M,
        weights="EvolutionaryScale/esmc-300m-2024-12",
        weights_file="data/weights/esmc_300m_2024_12_v0.pth",
    )


@register_encoder("esmc-600m")
def esmc_600m() -> EncoderConfig:
    return EncoderConfig(
        name="esmc-600m",
        family="esmc",
        embedding_dim=1152,
        num_layers=36,
        num_heads=18,
        max_length=2046,
        licence=_ESMC_LICENCE_600M,
        weights="EvolutionaryScale/esmc-600m-2024-12",
        weights_file="data/weights/esmc_600m_2024_12_v0.pth",
    )


@register_encoder("esmc-tiny")
def esmc_tiny() -> EncoderConfig:
    return EncoderConfig(
        name="esmc-tiny",
        family="esmc",
        embedding_dim=64,
        num_layers=2,
        num_heads=4,
        max_length=1022,
        licence=_RANDOM_LICENCE,
        random_init=True,
        max_residues_per_batch=4096,
    )
