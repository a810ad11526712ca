"""`protein-llm bridge-sizes`: trainable parameters of each bridge at a Qwen3 preset's shapes (meta device, no memory)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bridge-sizes",
        help="trainable parameters per bridge at real shapes, without allocating them",
        description=__doc__,
    )
    parser.add_argument(
        "--encoder", default="esm3-open", help="registered encoder whose width feeds the bridge"
    )
    parser.add_argument("--encoder-dim", type=int, default=None, help="override the encoder width")
    parser.add_argument("--llm", default="8b", help="Qwen3 preset (tiny, 0.6b, 1.7b, 4b, 8b, 14b, 32b)")
    parser.add_argument(
        "--bridge", action="append", default=None, help="bridge name (repeatable); default all"
    )
    parser.set_defaults(handler=run_bridge_sizes)


def run_bridge_sizes(args: argparse.Namespace) -> int:
    from protein_llm_nemo.bridges.sizes import bridge_size_report, format_size_report
    from protein_llm_nemo.models.qwen3 import qwen3_preset

    encoder_dim = args.encoder_dim
    if encoder_dim is None:
        from protein_llm_nemo.encoders import get_encoder_config

        encoder_dim = get_encoder_config(args.encoder).embedding_dim
    arch = qwen3_preset(args.llm)
    rows = bridge_size_report(encoder_dim, arch, args.bridge)
    title = f"encoder {args.encoder} (d={encoder_dim}) -> Qwen3-{args.llm} (H={arch.hidden_size}, {arch.num_hidden_layers} layers)"
    print(format_size_report(rows, title))
    return 0
