"""`protein-llm data ...`: convert, build-go, split, leakage-report, mix, pack-stats, converters.

Every command reports what it read (items seen, kept, dropped by reason) and checks those counts: an item
neither kept nor dropped is a counting bug and an error. Outputs and their reports are written together,
atomically, or not at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from tqdm import tqdm

Handler = Callable[[argparse.Namespace], int]


def _data_errors_exit(handler: Handler) -> Handler:
    """An unreadable input file ends the command with its message (file and position), not a traceback."""
    from protein_llm_nemo.data.files import DataFileError

    @wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except DataFileError as exc:
            raise SystemExit(f"error: {exc}") from exc

    return run


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2))


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = value
    return out


def _quality_config(args: argparse.Namespace):
    from protein_llm_nemo.data.quality import QualityConfig

    return QualityConfig(min_length=args.min_length, max_length=args.max_length)


def _cmd_converters(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.converters import list_converters

    for name, spec in list_converters().items():
        opts = f"  [options: {', '.join(spec.options)}]" if spec.options else ""
        print(f"{name:18s} {spec.description}{opts}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.converters import convert
    from protein_llm_nemo.data.files import AtomicOutputs
    from protein_llm_nemo.data.quality import QualityGate, check_conversion_counts
    from protein_llm_nemo.data.report import ReasonCounter, write_json_report
    from protein_llm_nemo.data.storage import write_records

    counter = ReasonCounter()
    records = convert(args.source, args.input, counter, **_options(args.option))
    records = tqdm(records, desc=f"convert {args.source}", unit="rec")
    gate = None if args.no_quality else QualityGate(_quality_config(args))
    report_path = (
        Path(args.report) if args.report else Path(str(args.out).removesuffix(".gz") + ".report.json")
    )
    with AtomicOutputs() as outputs:
        written = write_records(records if gate is None else gate(records), outputs.stage(args.out))
        check_conversion_counts(counter, gate, written)
        report = {
            "source": args.source,
            "input": str(args.input),
            "written": written,
            "conversion": counter.to_dict(),
        }
        if gate is not None:
            report.update(gate.report())
        write_json_report(report, outputs.stage(report_path))
    _print({"written": written, "conversion": counter.to_dict(), "report": str(report_path)})
    return 0


def _cmd_build_go(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.go.build import (
        GoBuildConfig,
        build_demo_go,
        build_metastudent_go,
        fetch_demo_assets,
    )

    if args.source == "demo":
        assets = fetch_demo_assets(args.assets_dir or Path(args.out) / "assets")
        summary = build_demo_go(assets, args.out, _quality_config(args))
    else:
        config = GoBuildConfig(
            out_dir=Path(args.out),
            dataset_dir=Path(args.dataset_dir),
            aspects=tuple(a.strip() for a in args.aspects.split(",")),
            limit_per_aspect=args.limit_per_aspect,
            output_name=args.output_name,
            quality=_quality_config(args),
        )
        summary = build_metastudent_go(config)
    summary.pop("config", None)
    _print(summary)
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.homology import PurgeNotConverged, SplitConfig, split_file

    config = SplitConfig(
        identity=args.identity,
        coverage=args.coverage,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        linclust=args.linclust,
        purge=not args.no_purge,
        purge_sensitivity=args.sensitivity,
        purge_max_seqs=args.max_seqs,
        leakage_sensitivity=args.leakage_sensitivity,
        leakage_max_seqs=args.leakage_max_seqs,
        purge_max_iterations=args.max_iterations,
        reverse_search=not args.no_reverse_search,
        grow_eval_families=args.grow_eval_families,
        family_seed_factor=args.family_seed_factor,
        threads=args.threads,
        eval_fastas=tuple(args.eval_fasta),
        tmp_root=args.tmp_dir,
    )
    try:
        report = split_file(args.input, args.out_dir, config)
    except PurgeNotConverged as exc:
        raise SystemExit(f"error: {exc}") from exc
    _print({k: v for k, v in report.items() if k != "config"})
    return 0


def _cmd_leakage(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.leakage import LeakageConfig, leakage_report, load_proteins
    from protein_llm_nemo.data.report import ReasonCounter, write_json_report

    config = LeakageConfig(
        threshold=args.threshold,
        coverage=args.coverage,
        sensitivity=args.sensitivity,
        max_seqs=args.max_seqs,
        threads=args.threads,
        tmp_root=args.tmp_dir,
        sample=args.sample,
        seed=args.seed,
    )
    train_read, eval_read = ReasonCounter(), ReasonCounter()
    train, evaluation = load_proteins(args.train, train_read), load_proteins(args.eval, eval_read)
    report = leakage_report(train, evaluation, config)
    report.update(
        train=str(args.train),
        evaluation=str(args.eval),
        train_read=train_read.to_dict(),
        evaluation_read=eval_read.to_dict(),
    )
    if args.out:
        write_json_report(report, args.out)
    _print(report)
    leaked = report["exact_overlaps"] > 0 or report["at_or_above_threshold"] > 0
    return 1 if leaked and args.fail_on_leak else 0


def _cmd_mix(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.mixing import MixingConfig, mix_files

    caps = {}
    for name, value in _options(args.cap).items():
        if not value.isdigit():
            raise SystemExit(f"--cap expects source=N with N a positive integer, got {name}={value}")
        caps[name] = int(value)
    report_path = (
        Path(args.report) if args.report else Path(str(args.out).removesuffix(".gz") + ".report.json")
    )
    try:
        config = MixingConfig(alpha=args.alpha, caps=caps, seed=args.seed, epoch_size=args.epoch_size)
        report = mix_files(args.input, args.out, config, epochs=args.epochs, report_path=report_path)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    _print({k: v for k, v in report.items() if k != "config"})
    return 0


def _cmd_pack_stats(args: argparse.Namespace) -> int:
    from protein_llm_nemo.data.formatting import FormattingConfig, RecordFormatter, SegmentCachingTokenizer
    from protein_llm_nemo.data.packing import best_fit_decreasing, padding_stats, token_budget_batches
    from protein_llm_nemo.data.report import ReasonCounter
    from protein_llm_nemo.data.storage import read_records
    from protein_llm_nemo.tokenizer import ChatFormatter, load_tokenizer

    chat = ChatFormatter(SegmentCachingTokenizer(load_tokenizer()))
    formatter = RecordFormatter(chat, FormattingConfig(bridge=args.bridge, num_slots=args.num_slots))
    read = ReasonCounter()
    records = itertools.islice(read_records(args.input, read), args.limit)
    lengths = [len(ex) for ex in tqdm(formatter(records), desc="format", unit="rec")]
    read.check(f"records read from {args.input}")
    formatter.counter.check("formatting")
    packing = ReasonCounter()
    packed = padding_stats(
        lengths, best_fit_decreasing(lengths, args.max_tokens, packing), args.max_tokens, packed=True
    )
    padded = padding_stats(
        lengths, token_budget_batches(lengths, args.max_tokens), args.max_tokens, packed=False
    )
    _print(
        {
            "samples": len(lengths),
            "mean_tokens": round(sum(lengths) / max(len(lengths), 1), 1),
            "max_tokens": args.max_tokens,
            "packed": packed,
            "padded_token_budget": padded,
            "read": read.to_dict(),
            "formatting": formatter.counter.to_dict(),
            "packing": packing.to_dict(),
        }
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="data pipeline: convert, build-go, split, leakage-report, mix, pack-stats"
    )
    sub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    def quality_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--min-length", type=int, default=50, help="shortest protein kept (residues)")
        p.add_argument("--max-length", type=int, default=1000, help="longest protein kept (residues)")

    p = sub.add_parser("converters", help="list the registered converters")
    p.set_defaults(handler=_cmd_converters)

    p = sub.add_parser(
        "convert", help="run one converter + quality gates; write JSONL or Arrow and a JSON report"
    )
    p.add_argument("--source", required=True, help="converter name (see `protein-llm data converters`)")
    p.add_argument("--input", required=True, type=Path)
    p.add_argument("--out", required=True, help="*.jsonl / *.jsonl.gz, or a folder for Arrow")
    p.add_argument(
        "--option", action="append", default=[], help="converter option key=value (e.g. fasta=x.fasta)"
    )
    p.add_argument("--report", help="JSON report path (default: <out>.report.json)")
    p.add_argument("--no-quality", action="store_true", help="skip the quality gates")
    quality_args(p)
    p.set_defaults(handler=_data_errors_exit(_cmd_convert))

    p = sub.add_parser(
        "build-go", help="build GO-term instruction data offline (metastudent-data or the demo set)"
    )
    p.add_argument("--source", choices=("metastudent", "demo"), default="metastudent")
    p.add_argument("--out", required=True)
    p.add_argument("--dataset-dir", default="/usr/share/metastudent-data/dataset_201401")
    p.add_argument("--aspects", default="MFO,BPO,CCO")
    p.add_argument("--limit-per-aspect", type=int, default=None)
    p.add_argument(
        "--output-name", default="records.jsonl", help="records.jsonl, or a name without .jsonl for Arrow"
    )
    p.add_argument("--assets-dir", default=None, help="demo: where the pip-downloaded files go")
    quality_args(p)
    p.set_defaults(handler=_data_errors_exit(_cmd_build_go))

    p = sub.add_parser("split", help="mmseqs2 homology split of a record file into train/validation/test")
    p.add_argument("--input", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--identity", type=float, default=0.3)
    p.add_argument("--coverage", type=float, default=0.8)
    p.add_argument("--validation-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--linclust", action="store_true", help="mmseqs easy-linclust (linear time) instead of easy-cluster"
    )
    p.add_argument(
        "--no-purge", action="store_true", help="keep train proteins homologous to evaluation proteins"
    )
    p.add_argument("--eval-fasta", action="append", default=[], help="registered evaluation set (repeatable)")
    p.add_argument("--sensitivity", type=float, default=5.7, help="mmseqs -s of the purge search")
    p.add_argument("--max-seqs", type=int, default=300, help="mmseqs --max-seqs of the purge search")
    p.add_argument(
        "--leakage-sensitivity",
        type=float,
        default=5.7,
        help="mmseqs -s of the leakage search the purge repeats until it finds nothing (leakage-report's default)",
    )
    p.add_argument("--leakage-max-seqs", type=int, default=300, help="mmseqs --max-seqs of that search")
    p.add_argument(
        "--max-iterations", type=int, default=20, help="fail if the purge still finds leaks after this many"
    )
    p.add_argument(
        "--no-reverse-search",
        action="store_true",
        help="skip the first pass's train -> evaluation search (its cost grows with the training set; the "
        "iterated leakage search still runs to a fixed point)",
    )
    p.add_argument(
        "--grow-eval-families",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="grow evaluation clusters into homology families (one search from seed clusters) before the purge, "
        "so fragmented families move whole instead of being purged from training (default: on)",
    )
    p.add_argument(
        "--family-seed-factor",
        type=float,
        default=2.0,
        help="seed proteins searched per evaluation protein needed",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tmp-dir", default=None)
    p.set_defaults(handler=_data_errors_exit(_cmd_split))

    p = sub.add_parser(
        "mix", help="temperature-mix record files by source (alpha, caps), seeded, epochs reshuffled"
    )
    p.add_argument("--input", action="append", required=True, help="record file or Arrow folder (repeatable)")
    p.add_argument("--out", required=True, help="*.jsonl / *.jsonl.gz, or a folder for Arrow")
    p.add_argument("--alpha", type=float, default=0.7, help="p_source ~ records^alpha (1: natural, 0: equal)")
    p.add_argument(
        "--cap", action="append", default=[], help="source=N: count at most N records (repeatable)"
    )
    p.add_argument("--epoch-size", type=int, default=None, help="records per epoch (default: capped total)")
    p.add_argument("--epochs", type=int, default=1, help="consecutive epochs written, each reshuffled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="JSON report path (default: <out>.report.json)")
    p.set_defaults(handler=_data_errors_exit(_cmd_mix))

    p = sub.add_parser("leakage-report", help="max identity of each evaluation protein to training (mmseqs2)")
    p.add_argument("--train", required=True, help="records (JSONL/Arrow) or FASTA")
    p.add_argument("--eval", required=True, help="records (JSONL/Arrow) or FASTA")
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument(
        "--coverage", type=float, default=0.5, help="min fraction of the evaluation protein aligned"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument(
        "--fail-on-leak", action="store_true", help="exit 1 on exact overlaps or hits >= threshold"
    )
    p.add_argument("--sample", type=int, default=None, help="search a seeded subset of evaluation proteins")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sensitivity", type=float, default=5.7, help="mmseqs -s")
    p.add_argument("--max-seqs", type=int, default=300, help="mmseqs --max-seqs")
    p.add_argument("--tmp-dir", default=None)
    p.set_defaults(handler=_data_errors_exit(_cmd_leakage))

    p = sub.add_parser("pack-stats", help="format + tokenize records, compare packing with padded batching")
    p.add_argument("--input", required=True)
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--bridge", default="mlp")
    p.add_argument("--num-slots", type=int, default=32)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(handler=_data_errors_exit(_cmd_pack_stats))
