"""`protein-llm eval report RUN_DIR... --out report/`: a Markdown page comparing evaluation runs and their
baselines, with PNG figures.

- the runs: what each evaluated (model, step, records, what was left out and why, parse failures);
- per task, a table with one column per run and per baseline, each cell the value and its 95% bootstrap
  interval; a bar chart of the task's main metrics; for GO tasks the precision-recall curves;
- when several checkpoints of one run are given (same run folder, different steps), each task's main
  metric against the training step, the baselines as horizontal lines.

A baseline appears once (from the first run that has it) when the runs evaluated the same test file;
runs on different test files keep theirs apart (``naive (run label)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protein_llm_nemo.evaluation import plots
from protein_llm_nemo.evaluation.results import read_results

__all__ = ["HEADLINES", "System", "write_report"]

# kind -> (metric key, label, higher is better); the first is the task's main metric
HEADLINES: dict[str, list[tuple[str, str, bool]]] = {
    "go": [
        ("f_max", "F-max", True),
        ("s_min", "S-min (IA-weighted)", False),
        ("weighted_f_max", "weighted F-max", True),
        ("s_min_unweighted", "S-min (unweighted)", False),
        ("f1_greedy", "F1 of the greedy answer", True),
        ("parse_failure_rate", "parse failures (greedy)", False),
    ],
    "text": [
        ("rouge_l", "ROUGE-L", True),
        ("corpus_bleu", "corpus BLEU", True),
        ("sentence_bleu", "sentence BLEU", True),
        ("empty_answer_rate", "empty answers", False),
    ],
    "ppi": [
        ("accuracy", "accuracy", True),
        ("mcc", "MCC", True),
        ("parse_failure_rate", "parse failures", False),
        ("mean_reward", "mean reward", True),
    ],
    "binary_property": [
        ("accuracy", "accuracy", True),
        ("mcc", "MCC", True),
        ("parse_failure_rate", "parse failures", False),
        ("mean_reward", "mean reward", True),
    ],
    "multiple_choice": [
        ("accuracy", "accuracy", True),
        ("mcc", "MCC", True),
        ("parse_failure_rate", "parse failures", False),
        ("mean_reward", "mean reward", True),
    ],
    "stability": [
        ("spearman", "Spearman", True),
        ("mae", "MAE (kcal/mol)", False),
        ("rmse", "RMSE (kcal/mol)", False),
        ("parse_failure_rate", "parse failures", False),
        ("mean_reward", "mean reward", True),
    ],
    "structure_quality": [
        ("category_accuracy", "category accuracy", True),
        ("plddt_mae", "pLDDT MAE", False),
        ("parse_failure_rate", "parse failures", False),
        ("mean_reward", "mean reward", True),
    ],
}
# a rewarded task without a metric module of its own
OTHER_REWARDED = [("mean_reward", "mean reward", True), ("parse_failure_rate", "parse failures", False)]
BARS = 3  # metrics per bar chart


@dataclass(frozen=True)
class System:
    label: str
    results: dict[str, Any]  # the run's results.json
    key: str  # "model" or a baseline name


def _systems(runs: Sequence[dict[str, Any]]) -> list[System]:
    systems: list[System] = []
    labels: set[str] = set()
    for run in runs:
        label = run.get("name") or Path(run["_path"]).parent.name
        if label in labels:  # two runs with one name: tell them apart by their folder
            label = f"{label} ({Path(run['_path']).parent.name})"
        labels.add(label)
        systems.append(System(label, run, "model"))
    test_files = {run["data"]["test_path"] for run in runs}
    seen: set[str] = set()
    for system in list(systems):
        for name in system.results.get("baselines", {}):
            label = name if len(test_files) == 1 else f"{name} ({system.label})"
            if label not in seen:
                seen.add(label)
                systems.append(System(label, system.results, name))
    return systems


def _cell(metric: Any, notes: dict[str, int]) -> str:
    """The value and its interval, with a footnote for a note (one footnote per distinct note)."""
    if metric is None:
        return "—"
    if not isinstance(metric, dict):
        return f"{metric:.3g}" if isinstance(metric, float) else str(metric)
    value, low, high, note = metric.get("value"), metric.get("low"), metric.get("high"), metric.get("note")
    mark = ""
    if note:
        mark = f" [^{notes.setdefault(note, len(notes) + 1)}]"
    if value is None:
        return f"n/a{mark}"
    text = f"{value:.3f}"
    if low is not None and high is not None:
        text += f" [{low:.3f}, {high:.3f}]"
    return text + mark


def _scores(system: System, task: str) -> dict[str, Any] | None:
    return system.results.get("tasks", {}).get(task, {}).get("systems", {}).get(system.key)


def _run_table(runs: Sequence[System]) -> list[str]:
    lines = [
        "| run | model | step | test records | evaluated | left out | samples (k) | temperature |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system in runs:
        r = system.results
        skipped = ", ".join(f"{k}: {v}" for k, v in r["records"]["skipped"].items()) or "none"
        model = f"{r['model']['kind']} `{r['model']['path']}`"
        lines.append(
            f"| {system.label} | {model} | {r['model'].get('step') if r['model'].get('step') is not None else '—'} | `{r['data']['test_path']}` | "
            f"{r['records']['evaluated']} | {skipped} | {r['generation']['samples']} | "
            f"{r['generation']['temperature']} |"
        )
    return lines


def _task_section(task: str, systems: Sequence[System], out: Path, notes: dict[str, int]) -> list[str]:
    present = [(s, scores) for s in systems if (scores := _scores(s, task)) is not None]
    kind = next(s.results["tasks"][task]["kind"] for s, _ in present)
    records = {s.results["tasks"][task]["records"] for s, _ in present if s.key == "model"}
    headline = HEADLINES.get(kind, OTHER_REWARDED)
    lines = [f"### {task} ({kind}; {', '.join(map(str, sorted(records)))} records)", ""]
    lines.append("| metric | " + " | ".join(s.label for s, _ in present) + " |")
    lines.append("|---|" + "---|" * len(present))
    for key, label, higher in headline:
        if all(scores.get(key) is None for _, scores in present):
            continue
        arrow = "↑" if higher else "↓"
        cells = [_cell(scores.get(key), notes) for s, scores in present]
        lines.append(f"| {label} {arrow} | " + " | ".join(cells) + " |")
    lines.append("")
    bars = [
        (key, label)
        for key, label, _ in headline
        if any(scores.get(key) is not None for _, scores in present)
    ]
    if bars:
        path = plots.metric_bars(task, bars[:BARS], [(s.label, scores) for s, scores in present],
                                 out / f"bars_{task}.png")  # fmt: skip
        lines += [f"![{task}: main metrics with 95% intervals]({path.name})", ""]
    if kind == "go":
        path = plots.precision_recall(f"{task}: precision-recall over score thresholds",
                                      [(s.label, scores) for s, scores in present], out / f"pr_{task}.png")  # fmt: skip
        lines += [f"![{task}: precision-recall curves]({path.name})", ""]
    return lines


def _step_section(systems: Sequence[System], tasks: Sequence[str], out: Path) -> list[str]:
    by_run: dict[str, list[System]] = {}
    for system in systems:
        model = system.results["model"]
        if system.key == "model" and model.get("step") is not None:
            by_run.setdefault(f"{model['kind']}:{model['run']}", []).append(system)
    lines: list[str] = []
    baselines = [s for s in systems if s.key != "model"]
    for run, members in sorted(by_run.items()):
        if len({m.results["model"]["step"] for m in members}) < 2:
            continue
        name = run.split(":", 1)[1]
        lines += [f"### {name}: metrics by training step", ""]
        for task in tasks:
            scored = [(m.results["model"]["step"], _scores(m, task)) for m in members]
            scored = [(step, scores) for step, scores in scored if scores is not None]
            if len(scored) < 2:
                continue
            kind = members[0].results["tasks"][task]["kind"]
            key, label, _ = HEADLINES.get(kind, OTHER_REWARDED)[0]
            lines_baseline = [(b.label, (_scores(b, task) or {}).get(key)) for b in baselines]
            path = plots.metric_by_step(
                f"{name}, {task}: {label} by step",
                label,
                [(step, scores.get(key)) for step, scores in scored],
                [(lab, metric) for lab, metric in lines_baseline if metric is not None],
                out / f"steps_{name}_{task}.png",
            )
            lines += [f"![{name} {task} {label} by step]({path.name})", ""]
    return lines


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` and its PNGs from the runs' results.json; returns the page's path."""
    if not run_dirs:
        raise ValueError("give at least one evaluation run folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [read_results(path) for path in run_dirs]
    systems = _systems(runs)
    tasks = sorted({task for run in runs for task in run.get("tasks", {})})
    notes: dict[str, int] = {}  # note -> its footnote number
    created = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Evaluation report",
        "",
        f"Generated {created} from {len(runs)} run(s). Cells: value [95% bootstrap interval over records; over "
        "proteins for GO F-max and S-min]; ↑ higher is better, ↓ lower is better; — not measured for that "
        "system; n/a undefined (see the note).",
        "",
        "## Runs",
        "",
        *_run_table([s for s in systems if s.key == "model"]),
        "",
        "## Results by task",
        "",
    ]
    for task in tasks:
        lines += _task_section(task, systems, out, notes)
    steps = _step_section(systems, tasks, out)
    if steps:
        lines += ["## Checkpoints of one run", "", *steps]
    if notes:
        lines += ["## Notes", "", *[f"[^{i}]: {note}" for note, i in notes.items()], ""]
    page = out / "report.md"
    page.write_text("\n".join(lines) + "\n")
    return page
