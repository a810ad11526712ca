"""Optional packages: a missing one is reported with the install command that brings it.

The base install serves HF exports (torch, transformers, safetensors); `[train]` adds megatron-core, NeMo-Run
and the data pipeline; `[esm]` the runtime needs of EvolutionaryScale's `esm`, itself installed without its
(conflicting) pins. `make setup` installs all of them into `.venv`.

    with optional_import("the nemo-run command", "train"):
        import nemo_run as run
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["INSTALL", "MissingPackageError", "optional_import", "require"]

ESM_VERSION = "3.2.1.post1"
INSTALL = {
    "train": "pip install 'protein-llm-nemo[train]'",
    "inference": "pip install 'protein-llm-nemo[inference]'",
    "esm": f"pip install 'protein-llm-nemo[esm]' && pip install --no-deps esm=={ESM_VERSION}",
}


class MissingPackageError(ModuleNotFoundError):
    """An optional package is not installed; the message names the command that installs it."""


def _message(module: str, purpose: str, extra: str) -> str:
    return f"No module named {module!r} (used by {purpose}); install it with: {INSTALL[extra]} (a checkout: make setup)"


@contextmanager
def optional_import(purpose: str, extra: str) -> Iterator[None]:
    """Turn a ModuleNotFoundError of a third-party package inside the block into a `MissingPackageError`
    that says how to install it (a missing module of this package itself is a bug: left as it is)."""
    try:
        yield
    except MissingPackageError:
        raise
    except ModuleNotFoundError as error:
        if not error.name or error.name.split(".")[0] == "protein_llm_nemo":
            raise
        raise MissingPackageError(_message(error.name, purpose, extra), name=error.name) from error


def require(module: str, purpose: str, extra: str) -> None:
    """Raise `MissingPackageError` unless `module` (a top-level package name) is importable."""
    if importlib.util.find_spec(module) is None:
        raise MissingPackageError(_message(module, purpose, extra), name=module)
