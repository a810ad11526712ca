"""Converters: one module per upstream source, each turning its native format into `ProteinRecord`s.

A converter is a generator function ``fn(path, counter, **options) -> Iterator[ProteinRecord]`` registered
with ``@register_converter("name", ...)``. It counts raw items (lines, rows, entries) in ``counter.seen``,
each skipped item with ``counter.drop(reason)`` and each kept item with ``counter.keep(records)`` (one raw
item may emit several records, e.g. one ProtDescribe row gives naming, function, location and similarity
questions), so that ``seen == kept + dropped`` and ``emitted`` is the number of records yielded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter

ConvertFn = Callable[..., Iterator[ProteinRecord]]

_MODULES: tuple[str, ...] = (
    "mol_instructions",
    "swissprot",
    "protein_lm_dataset",
    "swissprot_clap",
    "protdescribe",
    "protein2text_qa",
    "go_annotations",
    "megascale",
    "structure_plddt",
    "ppi",
    "proteinlmbench",
    "biotext",
)


@dataclass(frozen=True)
class ConverterSpec:
    name: str
    fn: ConvertFn
    description: str
    # Keyword options the converter understands besides (path, counter), e.g. ("fasta",).
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, ConverterSpec] = {}


def register_converter(
    name: str, description: str, options: tuple[str, ...] = ()
) -> Callable[[ConvertFn], ConvertFn]:
    def decorator(fn: ConvertFn) -> ConvertFn:
        if name in _REGISTRY:
            raise ValueError(f"converter {name!r} registered twice")
        _REGISTRY[name] = ConverterSpec(name, fn, description, options)
        return fn

    return decorator


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


def list_converters() -> dict[str, ConverterSpec]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_converter(name: str) -> ConverterSpec:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def convert(name: str, path: str | Path, counter: ReasonCounter, **options: Any) -> Iterator[ProteinRecord]:
    """Run converter ``name`` on ``path``, counting its items in ``counter`` (the caller reports it); unknown
    options are an error naming the accepted ones."""
    spec = get_converter(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        raise TypeError(f"converter {name!r} accepts options {list(spec.options)}, got {sorted(unknown)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: input {path} does not exist")
    return spec.fn(path, counter, **options)
