"""Register the ProteinLLM classes with transformers' Auto classes without importing transformers early.

`install()` (run by `import protein_llm_nemo`) adds an import hook; each Auto module registers our class
right after it is first imported:

- `configuration_auto` -> `AutoConfig.register("protein_llm", ProteinLLMConfig)`;
- `processing_auto`    -> `AutoProcessor.register(ProteinLLMConfig, ProteinLLMProcessor)`;
- `modeling_auto`      -> `AutoModelForCausalLM`: the model class is resolved at its first lookup, because
  `modeling_auto` is often imported half-way through importing a model module (`modeling_layers`), when
  `ProteinLLMForCausalLM`'s own imports (Qwen3, PreTrainedModel) cannot run yet.
If transformers' Auto modules are already imported, registration happens at once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

MODEL_TYPE = "protein_llm"
_CONFIG = "transformers.models.auto.configuration_auto"
_MODELING = "transformers.models.auto.modeling_auto"
_PROCESSING = "transformers.models.auto.processing_auto"
_done: set[str] = set()


def _being_imported(module: str, name: str) -> bool:
    """Our module is half-way through its own import (it imported transformers, whose Auto module called
    us back): registering now would be a circular import. The module registers itself when it is done."""
    loaded = sys.modules.get(module)
    return loaded is not None and not hasattr(loaded, name)


def register_config() -> None:
    if _CONFIG in _done or _being_imported("protein_llm_nemo.hf.configuration", "ProteinLLMConfig"):
        return
    _done.add(_CONFIG)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig

    from protein_llm_nemo.hf.configuration import ProteinLLMConfig

    if MODEL_TYPE not in CONFIG_MAPPING._extra_content:
        AutoConfig.register(MODEL_TYPE, ProteinLLMConfig)


class _LazyClasses(dict):
    """`_LazyAutoMapping._extra_content` with entries whose value ("module:Class") is imported on lookup."""

    def _resolve(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if isinstance(value, str):
            module, name = value.split(":")
            value = getattr(importlib.import_module(module), name)
            dict.__setitem__(self, key, value)
        return value

    def __getitem__(self, key: Any) -> Any:
        return self._resolve(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._resolve(key) if key in self else default

    def values(self):  # type: ignore[override]
        return [self._resolve(key) for key in list(self.keys())]

    def items(self):  # type: ignore[override]
        return [(key, self._resolve(key)) for key in list(self.keys())]


def register_model() -> None:
    if _MODELING in _done:
        return
    _done.add(_MODELING)
    register_config()
    from transformers.models.auto import modeling_auto

    from protein_llm_nemo.hf.configuration import ProteinLLMConfig

    mapping = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING
    if not isinstance(mapping._extra_content, _LazyClasses):
        mapping._extra_content = _LazyClasses(mapping._extra_content)
    mapping._extra_content.setdefault(ProteinLLMConfig, "protein_llm_nemo.hf.modeling:ProteinLLMForCausalLM")


def register_processor() -> None:
    if _PROCESSING in _done or _being_imported("protein_llm_nemo.hf.processing", "ProteinLLMProcessor"):
        return
    _done.add(_PROCESSING)
    register_config()
    from transformers.models.auto.processing_auto import AutoProcessor

    from protein_llm_nemo.hf.configuration import ProteinLLMConfig
    from protein_llm_nemo.hf.processing import ProteinLLMProcessor

    AutoProcessor.register(ProteinLLMConfig, ProteinLLMProcessor, exist_ok=True)


_HOOKS = {_CONFIG: register_config, _MODELING: register_model, _PROCESSING: register_processor}


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, callback) -> None:
        self.loader, self.callback = loader, callback

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        try:
            self.callback()
        except Exception as error:  # never break the user's transformers import
            import warnings

            warnings.warn(
                f"protein_llm_nemo: could not register the HF ProteinLLM classes ({error!r})", stacklevel=2
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None):
        callback = _HOOKS.get(fullname)
        if callback is None or fullname in _done:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, callback)
                return spec
        return None


def install() -> None:
    """Register now for Auto modules already imported; hook the others (idempotent)."""
    for name, callback in _HOOKS.items():
        if name in sys.modules:
            callback()
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
