"""PNG figures of an evaluation report (matplotlib, Agg backend: no display needed).

- `metric_bars`: one panel per metric, one bar per system with its bootstrap interval as whiskers;
- `precision_recall`: a GO namespace's precision-recall curves over the score thresholds, F-max marked,
  iso-F lines in grey;
- `metric_by_step`: a metric of several checkpoints of one run against the training step, with the
  interval as a band and the baselines as horizontal lines.

Metrics come as results.json writes them: ``{"value", "low", "high", "n", "note"}`` (None: undefined).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["metric_bars", "metric_by_step", "precision_recall"]

COLORS = plt.get_cmap("tab10").colors


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _value(metric: Any) -> float | None:
    if isinstance(metric, dict):
        return metric.get("value")
    return metric if isinstance(metric, int | float) else None


def metric_bars(
    title: str,
    metrics: Sequence[tuple[str, str]],
    systems: Sequence[tuple[str, dict[str, Any]]],
    path: str | Path,
) -> Path:
    """`metrics`: (key, label); `systems`: (label, metric key -> metric dict)."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 0.6, 3.4), squeeze=False)
    labels = [label for label, _ in systems]
    for axis, (key, label) in zip(axes[0], metrics, strict=True):
        tallest = 0.0
        for index, (_, scores) in enumerate(systems):
            metric = scores.get(key)
            value = _value(metric)
            color = COLORS[index % len(COLORS)]
            if value is None:
                axis.text(index, 0, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
                continue
            axis.bar(index, value, color=color, width=0.7)
            low = metric.get("low") if isinstance(metric, dict) else None
            high = metric.get("high") if isinstance(metric, dict) else None
            if low is not None and high is not None:
                axis.errorbar(index, value, yerr=[[max(value - low, 0)], [max(high - value, 0)]], color="black",
                              capsize=4, linewidth=1)  # fmt: skip
            top = high if high is not None and high > value else value
            tallest = max(tallest, top)
            axis.annotate(f"{value:.3g}", (index, top), xytext=(0, 2), textcoords="offset points", ha="center",
                          va="bottom", fontsize=7)  # fmt: skip
        if tallest > 0:  # room above the tallest whisker for its value label
            axis.set_ylim(top=tallest * 1.15)
        axis.set_title(label, fontsize=10)
        axis.set_xticks(range(len(labels)))
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        axis.set_xlim(-0.6, len(labels) - 0.4)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return _save(figure, Path(path))


def precision_recall(title: str, systems: Sequence[tuple[str, dict[str, Any]]], path: str | Path) -> Path:
    """`systems`: (label, a GO system's results: ``curve`` points and ``f_max``)."""
    figure, axis = plt.subplots(figsize=(5, 4.4))
    grid = np.linspace(0.01, 1, 200)
    for f in (0.2, 0.4, 0.6, 0.8):
        precision = f * grid / (2 * grid - f)
        keep = (precision > 0) & (precision <= 1)
        axis.plot(grid[keep], precision[keep], color="lightgrey", linewidth=0.8, zorder=0)
        axis.annotate(f"F={f}", (grid[keep][-1], precision[keep][-1]), fontsize=6, color="grey")
    for index, (label, scores) in enumerate(systems):
        curve = scores.get("curve") or []
        color = COLORS[index % len(COLORS)]
        f_max = _value(scores.get("f_max"))
        if not curve:
            axis.plot([], [], color=color, label=f"{label} (no prediction)")
            continue
        recall = [p["recall"] for p in curve]
        precision = [p["precision"] for p in curve]
        axis.plot(recall, precision, color=color, linewidth=1.5, marker="." if len(curve) < 3 else None,
                  label=f"{label} (F-max {f_max:.3f})" if f_max is not None else label)  # fmt: skip
        if f_max is not None and scores.get("recall") is not None:
            axis.scatter([scores["recall"]], [scores["precision"]], color=color, edgecolor="black", zorder=3)
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="lower left", framealpha=0.9)
    axis.grid(alpha=0.3)
    return _save(figure, Path(path))


def metric_by_step(
    title: str,
    label: str,
    points: Sequence[tuple[int, dict[str, Any]]],
    baselines: Sequence[tuple[str, dict[str, Any]]],
    path: str | Path,
) -> Path:
    """`points`: (step, metric dict) of one run's checkpoints; `baselines`: (label, metric dict)."""
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    ordered = sorted((step, metric) for step, metric in points if _value(metric) is not None)
    steps = [step for step, _ in ordered]
    values = [_value(metric) for _, metric in ordered]
    axis.plot(steps, values, color=COLORS[0], marker="o", label="model")
    lows = [metric.get("low") for _, metric in ordered]
    highs = [metric.get("high") for _, metric in ordered]
    if all(v is not None for v in lows + highs):
        axis.fill_between(steps, lows, highs, color=COLORS[0], alpha=0.2, label="95% interval")
    for index, (name, metric) in enumerate(baselines, start=1):
        value = _value(metric)
        if value is not None:
            axis.axhline(value, color=COLORS[index % len(COLORS)], linestyle="--", linewidth=1, label=name)
    axis.set_xlabel("training step")
    axis.set_ylabel(label)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    return _save(figure, Path(path))
