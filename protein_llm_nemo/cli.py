"""`protein-llm`: the library's command line for everything that is not a NeMo-Run recipe.

Each command group lives next to the code it drives, in a module that exposes
`register(subparsers)`; adding a group is one line in `_COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

_COMMAND_MODULES: tuple[str, ...] = (
    "protein_llm_nemo.conversion.cli",
    "protein_llm_nemo.encoders.cli",
    "protein_llm_nemo.data.cli",
    "protein_llm_nemo.models.cli",
    "protein_llm_nemo.hf.generate_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protein-llm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from protein_llm_nemo.runtime.logging import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()  # long commands (split, encode, convert) report progress through the package logger
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
