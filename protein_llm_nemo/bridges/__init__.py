"""Bridges: what carries frozen protein-encoder embeddings into the Qwen3 decoder.

One registry, one file per bridge. A bridge is a `BridgeConfig` subclass registered with
`@register_bridge(name)`; it owns every fact about its kind: whether it uses an encoder, splices slot
vectors or cross-attends, which decoder layers get cross-attention blocks, its tiny test sizes and its
CPU-preset sizes, and its math (`build_module`), written once against a layer factory:

    config = get_bridge_config("mlp", encoder_dim=1536)
    bridge = config.build(language_config)     # megatron-core modules (tensor-parallel), or None for `text`
    twin = config.build_hf(hidden_size=4096)   # the same math on nn.Linear: what `transformers` loads
    slots = bridge(embeddings, mask)           # [num_proteins, num_slots, hidden]

| name      | what the LLM sees                                             |
|-----------|---------------------------------------------------------------|
| text      | the raw sequence inside the prompt                           |
| mlp       | 32 slot vectors: attention pooling -> MultimodalProjector     |
| perceiver | 32 slot vectors: Perceiver resampler -> projection            |
| flamingo  | cross-attention context (64 latents) in gated x-attn blocks  |
|           | before every k-th decoder layer                               |

Every top-level module of this package is imported when the registry is first read, so a new built-in
bridge is one file here (plus its test). A bridge defined elsewhere registers when its module is imported;
its exports record that module, so `transformers` can rebuild it.

Every bridge LayerNorm-normalises the encoder output first (ESM3 returns pre-norm states) and takes the
encoder's residue mask: no output depends on padding positions.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

__all__ = [
    "BridgeConfig",
    "build_bridge",
    "get_bridge_config",
    "get_bridge_config_class",
    "list_bridges",
    "register_bridge",
]

_BRIDGES: dict[str, type[BridgeConfig]] = {}
_builtin_loaded = False

C = TypeVar("C", bound="type[BridgeConfig]")


@dataclass
class BridgeConfig:
    """Fields every bridge shares.

    encoder_dim:    width of the encoder embeddings (ESM3-open 1536, ESM C 300M 960, 600M 1152).
    num_slots:      `<|protein_embed|>` tokens per protein in the prompt (what `protein_placeholder` expands).
    normalize_input: LayerNorm over the encoder output before anything else (ESM3 is pre-norm).
    init_seed:      the bridge is initialised from its own RNG stream, so its weights do not depend on
                    the LLM's size, the parallel layout or the pipeline stage that builds it.
    """

    name: ClassVar[str] = ""
    # Facts of the bridge kind.
    uses_encoder: ClassVar[bool] = True  # False: the sequence goes into the prompt as text
    splices: ClassVar[bool] = True  # True: outputs replace the slot embeddings in decoder_input
    cross_attention: ClassVar[bool] = False  # True: outputs are the decoder's cross-attention context
    # Sizes for the tiny test models (hidden 64) and for the CPU recipe preset; real sizes are the defaults.
    test_sizes: ClassVar[dict[str, Any]] = {}
    cpu_sizes: ClassVar[dict[str, Any]] = {}

    encoder_dim: int = 1536
    num_slots: int = 32
    normalize_input: bool = True
    init_seed: int = 20_251_121

    def __post_init__(self) -> None:
        if self.encoder_dim < 1:
            raise ValueError(f"encoder_dim must be >= 1, got {self.encoder_dim}")
        if self.num_slots < 0:
            raise ValueError(f"num_slots must be >= 0, got {self.num_slots}")

    # -- the math, once -------------------------------------------------------------------------------
    def build_module(self, layers: Any, hidden_size: int) -> Any:
        """The bridge module built from `layers` (a `bridges.blocks.layers.LayerFactory`) for an LLM of
        width `hidden_size`: `(embeddings [N, L, D], mask [N, L]) -> [N, slots, hidden]` (splicing) or
        the cross-attention context `[N, latents, context_dim]`. None for bridges without a module."""
        raise NotImplementedError(f"bridge {self.name!r} does not define build_module")

    def build(self, language_config: Any) -> Any:
        """The megatron-core module for a decoder with `TransformerConfig` `language_config`, initialised from
        the bridge's private RNG stream (same weights at every TP layout)."""
        if not self.uses_encoder:
            return None
        from protein_llm_nemo.bridges.blocks.megatron import MegatronLayers, isolated_rng

        with isolated_rng(self.init_seed):
            return self.build_module(MegatronLayers(language_config), language_config.hidden_size)

    def build_hf(self, hidden_size: int) -> Any:
        """The HF twin: the same module on plain torch layers (no megatron-core needed)."""
        if not self.uses_encoder:
            return None
        from protein_llm_nemo.bridges.blocks.layers import TorchLayers

        return self.build_module(TorchLayers(), hidden_size)

    # -- cross-attending bridges ------------------------------------------------------------------------
    @property
    def context_dim(self) -> int:
        """Width of the cross-attention context (cross-attending bridges)."""
        return self.encoder_dim

    @property
    def max_residues(self) -> int | None:
        """The longest protein the bridge accepts (None: no limit of its own)."""
        return None

    def cross_attention_layers(self, num_layers: int) -> list[int]:
        """Global 0-based indices of the decoder layers preceded by a cross-attention block."""
        return []

    def cross_attention_block(
        self, layers: Any, hidden_size: int, num_heads: int, head_dim: int, eps: float
    ) -> Any:
        """The block run before each of `cross_attention_layers` (cross-attending bridges)."""
        raise NotImplementedError(f"bridge {self.name!r} has no cross-attention blocks")

    def decoder_layer_spec(self, base_spec: Any) -> Any:
        """The megatron decoder layer spec: `base_spec`, or a layer that runs the cross-attention blocks."""
        if not self.cross_attention:
            return base_spec
        from protein_llm_nemo.bridges.blocks.flamingo_layer import flamingo_layer_spec

        return flamingo_layer_spec(base_spec, self, init_seed=self.init_seed + 1)

    # -- (de)serialisation --------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> BridgeConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, the name, and the module that registers the bridge (so a loader can import it)."""
        return {"name": self.name, "module": type(self).__module__, **dataclasses.asdict(self)}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> BridgeConfig:
        """The config `to_dict` wrote (importing the bridge's module when it is not registered yet)."""
        values = dict(values)
        name, module = values.pop("name"), values.pop("module", None)
        if module and name not in _BRIDGES:
            importlib.import_module(module)
        return get_bridge_config(name, **values)


def register_bridge(name: str) -> Callable[[C], C]:
    """Class decorator: register a `BridgeConfig` subclass under `name`."""

    def decorator(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, BridgeConfig)):
            raise TypeError(f"@register_bridge({name!r}) expects a BridgeConfig subclass, got {cls!r}")
        if name in _BRIDGES and _BRIDGES[name] is not cls:
            raise ValueError(f"bridge {name!r} is already registered by {_BRIDGES[name].__qualname__}")
        cls.name = name
        _BRIDGES[name] = cls
        return cls

    return decorator


def _load_builtin() -> None:
    """Import every top-level module of this package once (the built-in bridges register themselves)."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def list_bridges() -> list[str]:
    _load_builtin()
    return sorted(_BRIDGES)


def get_bridge_config_class(name: str) -> type[BridgeConfig]:
    _load_builtin()
    try:
        return _BRIDGES[name]
    except KeyError:
        raise ValueError(f"unknown bridge {name!r}; choose one of {sorted(_BRIDGES)}") from None


def get_bridge_config(name: str, **overrides: Any) -> BridgeConfig:
    """The default config of bridge `name` with dataclass-field `overrides`."""
    cls = get_bridge_config_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"bridge {name!r} has no fields {unknown}; its fields are {sorted(known)}")
    return cls(**overrides)


def build_bridge(config: BridgeConfig | str, language_config: Any) -> Any:
    if isinstance(config, str):
        config = get_bridge_config(config)
    return config.build(language_config)
