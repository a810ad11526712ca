"""Data pipeline benchmark (one run, side by side).

(a) Throughput of convert -> quality gates -> format + tokenize (Qwen3, exact masks) -> pack, in ONE process
    (= one core; the pipeline is embarrassingly parallel across shards), records/s per stage and end to end.
    Target: >= 2,000 records/s per core.
(b) Padding waste on the real GO data's length distribution: best-fit-decreasing packing vs the reference's
    token-budget padded batching (shuffled order, batch_size * longest <= budget). Target: <= 5% pad tokens.

Input: the real Swiss-Prot GO annotations of Debian `metastudent-data` (converted live through blastdbcmd);
falls back to the small fixture set when the package is absent.

    .venv/bin/python benchmarks/data_pipeline.py --per-aspect 4000 --max-tokens 8192
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

# One core means one core: the Rust tokenizer would otherwise spread batch encodes over a thread pool.
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from protein_llm_nemo.data import QualityGate, ReasonCounter
from protein_llm_nemo.data.converters import convert
from protein_llm_nemo.data.formatting import FormattingConfig, RecordFormatter, SegmentCachingTokenizer
from protein_llm_nemo.data.go.build import METASTUDENT_DIR
from protein_llm_nemo.data.packing import (
    PackingConfig,
    best_fit_decreasing,
    build_pack,
    padding_stats,
    token_budget_batches,
)
from protein_llm_nemo.tokenizer import ChatFormatter, load_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "fixtures"


def _timed(raw, gate: QualityGate):
    """(records, seconds to the first record = one-time setup, seconds for the rest = streaming)."""
    start = time.perf_counter()
    iterator = iter(gate(raw))
    first = next(iterator, None)
    setup_s = time.perf_counter() - start
    t0 = time.perf_counter()
    records = [] if first is None else [first, *iterator]
    return records, setup_s, time.perf_counter() - t0


def load_records(per_aspect: int):
    counter = ReasonCounter()
    gate = QualityGate()
    records, setup_s, stream_s = [], 0.0, 0.0
    if (METASTUDENT_DIR / "nameMapping.txt").exists():
        source = f"metastudent-data GOASP, {per_aspect} proteins per aspect"
        for aspect in ("MFO", "BPO", "CCO"):
            raw = convert("goasp", METASTUDENT_DIR, counter, aspects=aspect, limit=per_aspect, progress=False)
            part, a, b = _timed(raw, gate)
            records += part
            setup_s += a
            stream_s += b
    else:
        source = "fixtures (metastudent-data not installed)"
        raw = convert(
            "gaf", FIXTURES / "goa_human_sample.gaf", counter,
            fasta=FIXTURES / "uniprot_sample.fasta", obo=FIXTURES / "go_sample.obo",
        )  # fmt: skip
        records, setup_s, stream_s = _timed(raw, gate)
    return records, setup_s, stream_s, counter.seen, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-aspect", type=int, default=4000)
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--num-slots", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here too")
    args = parser.parse_args(argv)

    records, setup_s, convert_s, converted, source = load_records(args.per_aspect)
    tokenizer = load_tokenizer()
    result: dict = {
        "input": source,
        "records_after_quality": len(records),
        "convert_plus_quality": {"records": converted, "one_time_setup_s": round(setup_s, 2),
                                 "streaming_s": round(convert_s, 2), "records_per_s": round(converted / convert_s)},
        "max_tokens": args.max_tokens,
        "bridges": {},
    }  # fmt: skip
    order = list(range(len(records)))
    random.Random(args.seed).shuffle(order)
    for bridge in ("mlp", "text"):
        chat = ChatFormatter(SegmentCachingTokenizer(tokenizer))
        formatter = RecordFormatter(chat, FormattingConfig(bridge=bridge, num_slots=args.num_slots))
        t0 = time.perf_counter()
        examples = list(formatter(records))
        format_s = time.perf_counter() - t0
        config = PackingConfig(max_tokens=args.max_tokens)
        t0 = time.perf_counter()
        lengths = [len(e) for e in examples]
        bins = best_fit_decreasing(lengths, args.max_tokens)
        for b in bins:
            build_pack([examples[i] for i in b], config)
        pack_s = time.perf_counter() - t0
        shuffled = [lengths[i] for i in order if i < len(lengths)]
        total_s = convert_s + format_s + pack_s  # streaming work; one-time setup reported apart
        result["bridges"][bridge] = {
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
            "max_sample_tokens": max(lengths),
            "format_tokenize_records_per_s": round(len(examples) / format_s),
            "pack_records_per_s": round(len(examples) / pack_s),
            "end_to_end_records_per_s_per_core": round(len(examples) / total_s),
            "packed": padding_stats(lengths, bins, args.max_tokens, packed=True),
            "reference_padded_token_budget": padding_stats(
                shuffled, token_budget_batches(shuffled, args.max_tokens), args.max_tokens, packed=False
            ),
        }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
