"""LoRA's optional TransformerEngine import: absent TE (an ImportError) falls back to megatron's own
parallel linears; a TE that is installed but fails to load is an error, not silently ignored (LoRA would
then skip every TE linear of the model)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

import pytest

TE_MODULE = "megatron.core.extensions.transformer_engine"


@pytest.fixture
def te_unloaded(monkeypatch):
    """No cached TE extension module: the next `from megatron.core.extensions import transformer_engine`
    imports it again."""
    import megatron.core.extensions as extensions

    monkeypatch.delitem(sys.modules, TE_MODULE, raising=False)
    monkeypatch.delattr(extensions, "transformer_engine", raising=False)
    return monkeypatch


class _FailingLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise OSError("libcudart.so.12: cannot open shared object file")


class _BrokenTE(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == TE_MODULE:
            return importlib.machinery.ModuleSpec(name, _FailingLoader())
        return None


def test_without_transformer_engine_megatron_linears_remain(te_unloaded):
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    from protein_llm_nemo.models.lora import _parallel_classes

    te_unloaded.setitem(sys.modules, TE_MODULE, None)  # importing it raises ImportError
    column, row = _parallel_classes()
    assert column == (ColumnParallelLinear,) and row == (RowParallelLinear,)


def test_a_transformer_engine_that_fails_to_load_is_an_error(te_unloaded):
    from protein_llm_nemo.models.lora import _parallel_classes

    te_unloaded.setattr(sys, "meta_path", [_BrokenTE(), *sys.meta_path])
    with pytest.raises(OSError, match="libcudart"):
        _parallel_classes()
