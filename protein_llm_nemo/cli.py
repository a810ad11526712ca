"""`protein-llm`: the library's command line for everything that is not a NeMo-Run recipe.

Each command group lives next to the code it drives, in a module that exposes
`register(subparsers)`; adding a group is one line in `_COMMAND_MODULES`. A group whose packages are not
installed (an inference-only install has no megatron-core) is listed with the command that installs them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module -> the commands it registers (named here so a group that cannot import still shows up)
_COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "protein_llm_nemo.conversion.cli": ("convert",),
    "protein_llm_nemo.encoders.cli": ("encode",),
    "protein_llm_nemo.data.cli": ("data",),
    "protein_llm_nemo.models.cli": ("bridge-sizes",),
    "protein_llm_nemo.generation.cli": ("generate",),
    "protein_llm_nemo.evaluation.cli": ("eval",),
}


def _unavailable(error: ModuleNotFoundError):
    def handler(args: argparse.Namespace) -> int:
        from protein_llm_nemo.optional import INSTALL

        print(f"error: {args.command} needs {error.name!r}: {INSTALL['train']}", file=sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protein-llm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name, commands in _COMMAND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or error.name.startswith("protein_llm_nemo"):
                raise  # our own module missing is a bug, not an install choice
            for command in commands:
                stub = subparsers.add_parser(
                    command, help=f"(not installed: needs {error.name})", add_help=False
                )
                stub.add_argument("rest", nargs=argparse.REMAINDER)
                stub.set_defaults(handler=_unavailable(error))
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from protein_llm_nemo.runtime.logging import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()  # long commands (split, encode, convert) report progress through the package logger
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
