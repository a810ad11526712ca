"""Command lines of the converters: `protein-llm convert {import,export,roundtrip}` and `conversion/*.py`.

Both entry points share these parsers, so flags mean the same everywhere. Every command runs as a
single process or under `torchrun` (one process per rank).
"""

from __future__ import annotations

import argparse
import sys

from protein_llm_nemo.conversion.hf_io import CheckpointError


def _add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensor-model-parallel-size", "--tp", type=int, default=1, metavar="N")
    parser.add_argument("--pipeline-model-parallel-size", "--pp", type=int, default=1, metavar="M")


def add_import_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--hf-model",
        required=True,
        help="HF Qwen3 folder or hub id (org/name), or an exported ProteinLLM folder",
    )
    parser.add_argument("--out", required=True, help="Megatron dist checkpoint folder to write")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="parameter dtype (default: the checkpoint's)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    _add_parallel_arguments(parser)
    return parser


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", required=True, help="Megatron dist checkpoint folder")
    parser.add_argument("--out", required=True, help="HF folder to write")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="dtype of the exported tensors (default: the checkpoint's)")  # fmt: skip
    parser.add_argument("--max-shard-size-gb", type=float, default=2.0)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    # ProteinLLM checkpoints (header names a bridge); plain Qwen3 checkpoints ignore these.
    parser.add_argument("--format", dest="export_format", choices=["auto", "protein-llm", "qwen3"], default="auto",
                        help="ProteinLLM checkpoints: protein-llm (HF ProteinLLMForCausalLM), qwen3 (the LLM "
                        "alone, plain Qwen3), auto (qwen3 for the text bridge, else protein-llm)")  # fmt: skip
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer for the processor files: folder, hub id or 'offline' (default: the "
                        "checkpoint's hf_assets, else the offline Qwen3 copy)")  # fmt: skip
    parser.add_argument("--no-processor", action="store_true", help="write no tokenizer/processor files")
    parser.add_argument("--lora", choices=["merged", "adapter"], default="merged",
                        help="ProteinLLM checkpoints with LoRA: merge the adapters into the weights, or write "
                        "the base weights plus a PEFT adapter in <out>/lora_adapter")  # fmt: skip
    _add_parallel_arguments(parser)
    return parser


def add_roundtrip_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from protein_llm_nemo.models.qwen3 import QWEN3_PRESETS

    parser.add_argument("--preset", default="tiny", choices=sorted(QWEN3_PRESETS))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |logit diff| allowed (fp32)")
    parser.add_argument("--workdir", default=None, help="keep the intermediate checkpoints here")
    _add_parallel_arguments(parser)
    return parser


def _parallel(args: argparse.Namespace):
    from protein_llm_nemo.runtime import ParallelConfig

    return ParallelConfig(args.tensor_model_parallel_size, args.pipeline_model_parallel_size)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_import(args: argparse.Namespace) -> int:
    from protein_llm_nemo.conversion.megatron_io import DTYPES
    from protein_llm_nemo.conversion.qwen3_import import import_hf_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed, setup_logging

    setup_logging()
    try:
        initialize_distributed(_parallel(args))
        dtype = DTYPES[args.dtype] if args.dtype else None
        if _is_protein_llm_folder(args.hf_model):
            from protein_llm_nemo.conversion.protein_llm_import import import_protein_llm

            header = import_protein_llm(args.hf_model, args.out, dtype, overwrite=args.overwrite)
        else:
            header = import_hf_checkpoint(args.hf_model, args.out, dtype, overwrite=args.overwrite)
    except (CheckpointError, ValueError) as error:
        return _fail(str(error))
    _print_rank0(
        f"imported {args.hf_model} -> {args.out} ({header.arch.num_parameters() / 1e6:.1f}M parameters)"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from protein_llm_nemo.conversion.megatron_io import DTYPES
    from protein_llm_nemo.conversion.qwen3_export import export_hf_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed, setup_logging

    setup_logging()
    try:
        initialize_distributed(_parallel(args))
        if _is_protein_llm_checkpoint(args.checkpoint):
            from protein_llm_nemo.conversion.protein_llm_export import export_protein_llm_checkpoint

            export_protein_llm_checkpoint(
                args.checkpoint,
                args.out,
                DTYPES[args.dtype] if args.dtype else None,
                export_format=args.export_format,
                tokenizer=False if args.no_processor else args.tokenizer,
                overwrite=args.overwrite,
                max_shard_bytes=int(args.max_shard_size_gb * 1024**3),
                lora=args.lora,
            )
            _print_rank0(f"exported {args.checkpoint} -> {args.out}")
            return 0
        if args.export_format == "protein-llm":
            raise CheckpointError(
                f"{args.checkpoint} is a plain Qwen3 checkpoint; it exports as --format qwen3"
            )
        export_hf_checkpoint(
            args.checkpoint,
            args.out,
            DTYPES[args.dtype] if args.dtype else None,
            overwrite=args.overwrite,
            max_shard_bytes=int(args.max_shard_size_gb * 1024**3),
        )
    except (CheckpointError, ValueError) as error:
        return _fail(str(error))
    _print_rank0(f"exported {args.checkpoint} -> {args.out}")
    return 0


def run_roundtrip_command(args: argparse.Namespace) -> int:
    from protein_llm_nemo.conversion.roundtrip import (
        RoundtripConfig,
        format_result,
        roundtrip_passed,
        run_roundtrip,
    )
    from protein_llm_nemo.runtime import setup_logging

    setup_logging()
    config = RoundtripConfig(
        preset=args.preset,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        seed=args.seed,
        tolerance=args.tolerance,
        workdir=args.workdir,
    )
    try:
        result = run_roundtrip(config)
    except (CheckpointError, ValueError) as error:
        return _fail(str(error))
    _print_rank0(format_result(result))
    return 0 if roundtrip_passed(result, args.tolerance) else 1


def _is_protein_llm_folder(source: str) -> bool:
    from pathlib import Path

    from protein_llm_nemo.conversion.hf_io import read_json_file

    config = Path(source) / "config.json"
    if not config.is_file():
        return False
    values = read_json_file(config)
    return isinstance(values, dict) and values.get("model_type") == "protein_llm"


def _is_protein_llm_checkpoint(checkpoint: str) -> bool:
    from protein_llm_nemo.conversion.megatron_io import CheckpointHeader
    from protein_llm_nemo.conversion.spec import PROTEIN_LLM_HEADER_KEY

    return PROTEIN_LLM_HEADER_KEY in CheckpointHeader.read(checkpoint).extra


def _print_rank0(message: str) -> None:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(message, flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser("convert", help="HF <-> Megatron checkpoint conversion")
    commands = convert.add_subparsers(dest="convert_command", required=True, metavar="ACTION")
    add_import_arguments(
        commands.add_parser("import", help="HF Qwen3 -> Megatron dist checkpoint")
    ).set_defaults(handler=run_import)
    add_export_arguments(
        commands.add_parser("export", help="Megatron dist checkpoint -> HF Qwen3")
    ).set_defaults(handler=run_export)
    add_roundtrip_arguments(
        commands.add_parser("roundtrip", help="random HF Qwen3 -> Megatron -> logits check -> HF, bit-exact")
    ).set_defaults(handler=run_roundtrip_command)


def script_main(name: str, argv: list[str] | None = None) -> int:
    """Entry of the thin `conversion/<name>.py` scripts."""
    builders = {
        "import_hf": (
            add_import_arguments,
            run_import,
            "HF folder (Qwen3 or ProteinLLM) -> Megatron dist checkpoint",
        ),
        "export_hf": (
            add_export_arguments,
            run_export,
            "Megatron dist checkpoint (Qwen3 or ProteinLLM) -> HF folder",
        ),
        "roundtrip": (
            add_roundtrip_arguments,
            run_roundtrip_command,
            "HF -> Megatron -> HF conversion check",
        ),
    }
    add_arguments, handler, description = builders[name]
    parser = add_arguments(argparse.ArgumentParser(prog=f"conversion/{name}.py", description=description))
    return handler(parser.parse_args(argv))
