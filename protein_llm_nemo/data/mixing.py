"""Mixing sources: temperature sampling (``p_i ∝ n_i^alpha``), per-source caps, seeded and reshuffled per epoch.

``alpha = 1`` keeps natural proportions, ``alpha = 0`` gives every source the same share; caps bound a
source's size before the temperature is applied. An epoch draws ``epoch_size`` samples (default: the sum
of the capped sizes); a source asked for more than it has is repeated with fresh permutations.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class MixingConfig:
    alpha: float = 0.7
    caps: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    epoch_size: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ValueError(f"epoch_size must be >= 1, got {self.epoch_size}")
        bad = {k: v for k, v in self.caps.items() if v < 1}
        if bad:
            raise ValueError(f"caps must be >= 1, got {bad}")


def mixing_weights(sizes: dict[str, int], config: MixingConfig) -> dict[str, float]:
    capped = {name: min(n, config.caps.get(name, n)) for name, n in sizes.items() if n > 0}
    raw = {name: float(n) ** config.alpha for name, n in capped.items()}
    total = sum(raw.values())
    return {name: value / total for name, value in raw.items()}


def _seed(config: MixingConfig, epoch: int, name: str) -> np.random.Generator:
    digest = sum((i + 1) * ord(c) for i, c in enumerate(name)) % (2**31)
    return np.random.default_rng([config.seed, epoch, digest])


def epoch_plan(sizes: dict[str, int], config: MixingConfig, epoch: int = 0) -> list[tuple[str, int]]:
    """The epoch's ordered samples as (source, index within source); same inputs -> same plan."""
    weights = mixing_weights(sizes, config)
    capped_total = sum(min(n, config.caps.get(name, n)) for name, n in sizes.items())
    total = config.epoch_size if config.epoch_size is not None else capped_total
    names = sorted(weights)
    counts = {name: int(np.floor(weights[name] * total)) for name in names}
    # Hand out the rounding remainder by largest fractional part (deterministic).
    remainder = total - sum(counts.values())
    fractions = sorted(names, key=lambda n: (-(weights[n] * total - counts[n]), n))
    for name in fractions[:remainder]:
        counts[name] += 1
    plan: list[tuple[str, int]] = []
    for name in names:
        rng = _seed(config, epoch, name)
        need, size = counts[name], sizes[name]
        picks: list[np.ndarray] = []
        while need > 0:
            perm = rng.permutation(size)[:need]
            picks.append(perm)
            need -= len(perm)
        plan += [(name, int(i)) for p in picks for i in p]
    order = np.random.default_rng([config.seed, epoch, 7]).permutation(len(plan))
    return [plan[i] for i in order]


def mix_files(
    inputs: list[str | Path],
    out: str | Path,
    config: MixingConfig,
    epochs: int = 1,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Records of several files, grouped by their ``source`` field, written as ``epochs`` consecutive
    epoch plans (each reshuffled) to ``out`` (JSONL or Arrow, by name). Returns the mixture's report, also
    written to `report_path` when given: records and report appear together, or neither does.

    The report's ``read`` counts every input line (per input and in total; malformed ones dropped by
    reason); each source's ``records`` are the records read for it. Records are held serialized (one JSON
    string each) between reading and writing: memory ~ input size.
    """
    from tqdm import tqdm

    from protein_llm_nemo.data.files import AtomicOutputs
    from protein_llm_nemo.data.record import ProteinRecord
    from protein_llm_nemo.data.report import ReasonCounter, write_json_report
    from protein_llm_nemo.data.storage import read_records, write_records

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    by_source: dict[str, list[str]] = {}
    read = ReasonCounter()
    read_per_input: dict[str, dict[str, Any]] = {}
    for path in inputs:
        counter = ReasonCounter()
        for record in tqdm(read_records(path, counter), desc=f"read {Path(path).name}", unit="rec"):
            by_source.setdefault(record.source, []).append(json.dumps(record.to_dict(), ensure_ascii=False))
        counter.check(f"records read from {path}")
        read_per_input[str(path)] = counter.to_dict()
        read.merge(counter)
    sizes = {name: len(lines) for name, lines in by_source.items()}
    if sum(sizes.values()) != read.kept:
        raise AssertionError(f"{sum(sizes.values())} records grouped by source, {read.kept} read")
    unknown = sorted(set(config.caps) - set(sizes))
    if unknown:
        raise ValueError(f"caps name sources absent from the inputs: {unknown} (sources: {sorted(sizes)})")
    if not sizes:
        raise ValueError(f"no records in {[str(p) for p in inputs]} (read: {read.to_dict()})")
    plans = [epoch_plan(sizes, config, epoch) for epoch in range(epochs)]

    def mixed() -> Any:
        for plan in plans:
            for name, index in plan:
                yield ProteinRecord.from_dict(json.loads(by_source[name][index]))

    total = sum(len(plan) for plan in plans)
    weights = mixing_weights(sizes, config)
    drawn = Counter(name for name, _ in plans[0])
    with AtomicOutputs() as outputs:
        written = write_records(
            tqdm(mixed(), total=total, desc="write mixture", unit="rec"), outputs.stage(out)
        )
        if written != total:
            raise AssertionError(f"{written} records written, {total} planned")
        report = {
            "inputs": [str(p) for p in inputs],
            "output": str(out),
            "config": asdict(config),
            "epochs": epochs,
            "records_written": written,
            "read": read.to_dict(),
            "read_per_input": read_per_input,
            "sources": {
                name: {
                    "records": sizes[name],
                    "cap": config.caps.get(name),
                    "weight": round(weights[name], 6),
                    "drawn_per_epoch": drawn[name],
                    "passes_per_epoch": round(drawn[name] / sizes[name], 3),
                }
                for name in sorted(sizes)
            },
        }
        if report_path is not None:
            write_json_report(report, outputs.stage(report_path))
    return report
