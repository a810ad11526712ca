"""`protein-llm eval`: evaluate a model on test records, and `protein-llm eval report` to compare runs.

    protein-llm eval --model runs/demo/hf-mlp --data test.jsonl --go-obo go.obo --out runs/eval/hf-mlp
    protein-llm eval --checkpoint runs/sft-mlp-tiny-cpu --data test.jsonl --train train.jsonl \\
        --baselines naive,homology --go-obo go.obo --out runs/eval/sft-mlp
    torchrun --nproc-per-node 2 -m protein_llm_nemo.cli eval --checkpoint RUN --tensor-model-parallel-size 2 ...
    protein-llm eval report runs/eval/sft-mlp runs/eval/hf-mlp --out runs/eval/report

A run folder holds predictions.jsonl (appended per batch: run the same command again after a kill and it
continues where it stopped) and results.json. `nemo-run recipes/eval.py` runs the same evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="exported HF folder (transformers generate)")
    source.add_argument(
        "--checkpoint", help="megatron checkpoint: a step folder or a run folder (its latest step)"
    )
    parser.add_argument("--data", help="test records (JSONL or Arrow)")
    parser.add_argument("--out", help="run folder (default runs/eval/<model or checkpoint folder name>)")
    parser.add_argument("--train", help="training records: baselines, GO information accretion")
    parser.add_argument("--baselines", default="", help="comma-separated: naive (GO), homology (all tasks)")
    parser.add_argument(
        "--go-obo", help="the GO release the records were built with (or $PROTEIN_LLM_GO_OBO)"
    )
    parser.add_argument("--limit", type=int, help="evaluate the first N usable records")
    parser.add_argument("--tasks", help="comma-separated tasks to evaluate (default: all)")
    parser.add_argument("--samples", type=int, default=5, help="sampled completions per GO record (k)")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="for the k samples (greedy always too)"
    )
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--system-prompt", default="default",
                        help="'default' (training's), 'none' (no system turn) or the text")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="records per appended batch")
    parser.add_argument(
        "--micro-batch-size", type=int, default=None, help="prompts per prefill (default: batch)"
    )
    parser.add_argument(
        "--tensor-model-parallel-size", type=int, default=1, help="--checkpoint under torchrun"
    )
    parser.add_argument(
        "--pipeline-model-parallel-size", type=int, default=1, help="--checkpoint under torchrun"
    )
    parser.add_argument("--tokenizer", default="offline", help="--checkpoint: tokenizer source")
    parser.add_argument("--device", default=None, help="--model: cuda | cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    parser.add_argument("--bootstrap-resamples", type=int, default=1000)
    parser.add_argument("--name", help="label in reports (default <run folder>@<step>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace):
    from protein_llm_nemo.evaluation.config import EvalConfig, EvalDataConfig, EvalGenerationConfig

    if not args.model and not args.checkpoint:
        raise ValueError("give --model (an exported HF folder) or --checkpoint (megatron)")
    if not args.data:
        raise ValueError("give --data (the test records)")
    system_prompt = None if args.system_prompt.lower() == "none" else args.system_prompt
    source = Path(args.model or args.checkpoint).resolve()
    name = f"{source.parent.name}-{source.name}" if source.name.startswith("step_") else source.name
    out = args.out or str(Path("runs/eval") / name)
    return EvalConfig(
        out_dir=out,
        checkpoint=args.checkpoint,
        model=args.model,
        data=EvalDataConfig(
            test_path=args.data,
            train_path=args.train,
            go_obo=args.go_obo,
            limit=args.limit,
            tasks=args.tasks,
            micro_batch_size=args.micro_batch_size or args.batch_size,
            global_batch_size=args.batch_size,
        ),
        generation=EvalGenerationConfig(
            samples=args.samples,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            system_prompt=system_prompt,
        ),
        baselines=args.baselines,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        tokenizer=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
        bootstrap_resamples=args.bootstrap_resamples,
        progress=not args.no_progress,
        name=args.name,
    )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_eval(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) == "report":
        return run_report(args)
    from protein_llm_nemo.evaluation.runner import run_evaluation

    try:
        config = _config(args)
        results = run_evaluation(config)
    except (OSError, ValueError) as error:  # missing files, bad records / ontology, mismatched run folder
        return _fail(str(error))
    if results is not None:
        print(
            f"eval: {results['records']['evaluated']} records; results in {Path(config.out_dir) / 'results.json'}"
        )
    return 0


def run_report(args: argparse.Namespace) -> int:
    from protein_llm_nemo.evaluation.report import write_report

    try:
        page = write_report(args.runs, args.report_out)
    except (OSError, ValueError) as error:
        return _fail(str(error))
    print(f"eval report: {page}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (HF export or megatron checkpoint) on test records; `eval report`"
    )
    _add_run_arguments(parser)
    commands = parser.add_subparsers(dest="eval_command", metavar="report")
    report = commands.add_parser(
        "report", help="Markdown + PNG report of evaluation runs and their baselines"
    )
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evaluation run folders (results.json)")
    report.add_argument("--out", dest="report_out", required=True, help="report folder")
    parser.set_defaults(handler=run_eval)
