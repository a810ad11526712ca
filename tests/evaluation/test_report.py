"""`protein-llm eval report`: the Markdown page (runs and baselines side by side with intervals, notes for
undefined values) and its PNGs (bars, GO precision-recall, metric by step), from scripted runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from protein_llm_nemo.cli import main
from protein_llm_nemo.evaluation.config import EvalConfig, EvalDataConfig, EvalGenerationConfig
from protein_llm_nemo.evaluation.report import write_report
from protein_llm_nemo.evaluation.results import read_results
from protein_llm_nemo.evaluation.runner import run_evaluation
from protein_llm_nemo.testing.evaluation import ScriptedGenerator, write_eval_data

OBO = Path(__file__).parent / "fixtures" / "go_six_terms.obo"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(data, out: Path, generator: ScriptedGenerator) -> Path:
    config = EvalConfig(
        out_dir=str(out),
        model="scripted",
        data=EvalDataConfig(test_path=str(data.test), train_path=str(data.train), go_obo=str(data.obo)),
        generation=EvalGenerationConfig(samples=4),
        baselines="naive",
        bootstrap_resamples=100,
        progress=False,
    )
    run_evaluation(config, generator)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = write_eval_data(root / "data", OBO)
    early = _run(data, root / "step10", ScriptedGenerator(step=10))
    late = _run(data, root / "step20", ScriptedGenerator(step=20))
    silent = ScriptedGenerator(run="silent", step=None, path="silent-model")
    silent.complete = lambda records, n, settings, greedy: [[""] * n for _ in records]  # type: ignore[method-assign]
    quiet = _run(data, root / "silent", silent)
    return root, early, late, quiet


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    pixels = image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, path
    assert float(np.std(pixels)) > 0.01, f"{path} is blank"


def test_report_puts_runs_and_baselines_side_by_side_with_their_plots(runs, tmp_path):
    root, early, late, quiet = runs
    page = write_report([early, late, quiet], tmp_path / "report")
    text = page.read_text()
    assert "| metric | scripted@10 | scripted@20 | silent | naive |" in text
    results = read_results(early)
    f_max = results["tasks"]["go_mf"]["systems"]["model"]["f_max"]
    row = next(line for line in text.splitlines() if line.startswith("| F-max ↑"))
    assert f"{f_max['value']:.3f} [{f_max['low']:.3f}, {f_max['high']:.3f}]" in row
    naive = results["tasks"]["go_mf"]["systems"]["naive"]["f_max"]["value"]
    assert row.split("|")[-2].strip().startswith(f"{naive:.3f} [")  # the last column: the baseline
    # the silent run predicts nothing: F-max 0 with a footnote, S-min undefined (n/a), never a bare 0
    assert "n/a [^" in text and "no protein has a prediction at any threshold" in text
    for task in ("function", "ppi", "stability"):
        assert f"### {task} (" in text
    assert "| ROUGE-L ↑ |" in text and "| MAE (kcal/mol) ↓ |" in text
    assert "| F1 of the greedy answer ↑ |" in text and "— |" in text  # naive has no greedy answer

    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"bars_go_mf.png", "pr_go_mf.png", "bars_function.png", "bars_ppi.png"} <= set(linked)
    assert "steps_scripted_go_mf.png" in linked  # two checkpoints (steps 10, 20) of one run
    for name in linked:
        _check_png(tmp_path / "report" / name)
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == sorted(set(linked))


def test_one_run_has_no_step_plot_and_the_cli_reports_bad_folders(runs, tmp_path, capsys):
    root, early, late, quiet = runs
    assert main(["eval", "report", str(early), "--out", str(tmp_path / "one")]) == 0
    text = (tmp_path / "one" / "report.md").read_text()
    assert "Checkpoints of one run" not in text and not list((tmp_path / "one").glob("steps_*.png"))
    assert "| metric | scripted@10 | naive |" in text
    assert main(["eval", "report", str(tmp_path / "missing"), "--out", str(tmp_path / "bad")]) == 2
    assert "no results.json" in capsys.readouterr().err
