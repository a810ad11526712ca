"""results.json: what one evaluation run measured, and reading it back for reports.

Layout (``version`` 1)::

    {
      "format": "protein-llm-nemo/eval-results", "version": 1, "created": ISO time,
      "model": {"kind": "megatron" | "hf", "path", "run", "step", ...},
      "name": label in reports,
      "data": {"test_path", "train_path", "go_obo", "limit", "tasks"},
      "generation": {"samples", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "system_prompt"},
      "records": {"read": reader counts, "evaluated": n, "per_task": {task: n},
                  "skipped": {reason: n}, "predictions": {unknown_records, torn_lines, duplicate_lines, ...},
                  "empty_completions": {"greedy": n, "samples": n}},
      "go": {"obo", "information_accretion": "train" | "test" | null, "bootstrap_resamples"},
      "tasks": {task: {"kind": "go" | "text" | "ppi" | ..., "records": n,
                       "systems": {"model": {metric: Metric | value, ...},
                                   "naive": {...}, "homology": {...}}}},
      "baselines": {name: {"counts": {...}}}
    }

A Metric is ``{"value", "low", "high", "n", "note"}`` (95% percentile bootstrap over records; proteins for
GO F-max / S-min). Undefined numbers (NaN) are written as null with the reason in ``note``, never as 0.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from protein_llm_nemo.evaluation.metrics.bootstrap import Metric

__all__ = [
    "FORMAT",
    "RESULTS_FILE",
    "VERSION",
    "jsonable",
    "metric_dict",
    "read_results",
    "write_results",
]

FORMAT = "protein-llm-nemo/eval-results"
VERSION = 1
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"


def jsonable(value: Any) -> Any:
    """Plain JSON values: dataclasses as dicts, tuples as lists, NaN / infinity as None."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_dict(metric: Metric | tuple[float, float, float], n: int | None = None, note: str = "") -> dict:
    """A Metric (or a (value, low, high) triple with its n) as results.json writes it."""
    if isinstance(metric, Metric):
        return jsonable(asdict(metric))
    value, low, high = metric
    return jsonable({"value": value, "low": low, "high": high, "n": n, "note": note})


def write_results(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Write results.json atomically (a reader never sees half a file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(
        jsonable({"format": FORMAT, "version": VERSION, **results}), indent=2, allow_nan=False
    )
    handle, temporary = tempfile.mkstemp(prefix=".results-", dir=out_dir)
    with os.fdopen(handle, "w") as out:
        out.write(payload + "\n")
    os.chmod(temporary, 0o644)  # mkstemp creates it private
    os.replace(temporary, out_dir / RESULTS_FILE)
    return out_dir / RESULTS_FILE


def read_results(path: str | Path) -> dict[str, Any]:
    """results.json of a run folder (or the file itself); a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json (run `protein-llm eval` first)")
    results = json.loads(path.read_text())
    if results.get("format") != FORMAT:
        raise ValueError(f"{path}: not an evaluation results file (format {results.get('format')!r})")
    if results.get("version") != VERSION:
        raise ValueError(f"{path}: results version {results.get('version')}, this code reads {VERSION}")
    results["_path"] = str(path)
    return results
