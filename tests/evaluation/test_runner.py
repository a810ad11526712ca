"""The evaluation runner: results.json against hand-computed values (scripted completions on the six-term
ontology), every bad input counted or refused, resumption after a kill (no record generated twice, the same
results), and a tiny megatron checkpoint end to end with its HF export giving the same greedy answers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protein_llm_nemo.evaluation.baselines.go import naive_scores
from protein_llm_nemo.evaluation.config import EvalConfig, EvalDataConfig, EvalGenerationConfig
from protein_llm_nemo.evaluation.metrics.go import evaluate_go
from protein_llm_nemo.evaluation.metrics.information_accretion import information_accretion
from protein_llm_nemo.evaluation.metrics.obo import OboFileError
from protein_llm_nemo.evaluation.metrics.propagation import TermClosure
from protein_llm_nemo.evaluation.metrics.text import text_metrics
from protein_llm_nemo.evaluation.results import read_results
from protein_llm_nemo.evaluation.runner import run_evaluation
from protein_llm_nemo.testing.evaluation import (
    EXPECTED_SKIPPED,
    ROOT,
    SCRIPT,
    B,
    C,
    D,
    E,
    F,
    ScriptedGenerator,
    write_eval_data,
)

REPO = Path(__file__).resolve().parents[2]
OBO = Path(__file__).parent / "fixtures" / "go_six_terms.obo"
needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")

TRUTH = {"P1": [D], "P2": [E], "P3": [F]}
# term frequencies over the k=4 scripted samples, each sample propagated (SCRIPT in testing/evaluation.py):
# P1 {D}, {D, F}, none, {B}; P2 {E}, {E}, {C}, empty; P3 an alt_id (unknown to the reward), {F}, {F}, {C}
CONFIDENCES = {
    "P1": {D: 0.5, B: 0.75, ROOT: 0.75, F: 0.25, C: 0.25},
    "P2": {E: 0.5, B: 0.5, C: 0.75, ROOT: 0.75},
    "P3": {F: 0.5, C: 0.75, ROOT: 0.75},
}
# training T1 {D}, T2 {E}, T3 {B} propagated: every one has B and the root, one in three C, D, E
NAIVE = {ROOT: 1.0, B: 1.0, C: 1 / 3, D: 1 / 3, E: 1 / 3}


class Killed(RuntimeError):
    """Raised from the batch hook: the run dies right after a batch was appended."""


def _config(data, out: Path, **changes) -> EvalConfig:
    generation = changes.pop("generation", EvalGenerationConfig(samples=4))
    return EvalConfig(
        out_dir=str(out),
        model="scripted",
        data=EvalDataConfig(
            test_path=str(data.test),
            train_path=str(data.train),
            go_obo=str(data.obo),
            global_batch_size=changes.pop("batch", 4),
        ),
        generation=generation,
        bootstrap_resamples=200,
        progress=False,
        **changes,
    )


@pytest.fixture
def data(tmp_path):
    return write_eval_data(tmp_path / "data", OBO)


def _ia(data) -> dict[str, float]:
    return information_accretion({"T1": [D], "T2": [E], "T3": [B]}, TermClosure.from_obo(data.obo))


def test_results_json_holds_hand_checked_metrics_and_every_left_out_record(data, tmp_path):
    results = run_evaluation(_config(data, tmp_path / "run", baselines="naive"), ScriptedGenerator())
    on_disk = read_results(tmp_path / "run")
    assert on_disk["tasks"] == json.loads(json.dumps(results["tasks"]))  # what was returned was written

    records = on_disk["records"]
    assert records["evaluated"] == 9 and records["read"]["seen"] == 15
    assert records["skipped"] == EXPECTED_SKIPPED
    assert records["per_task"] == {"go_mf": 3, "function": 2, "ppi": 2, "stability": 2}
    assert records["empty_completions"] == {"greedy": 1, "samples": 1}  # P3's greedy, one of P2's samples
    assert on_disk["go"]["information_accretion"] == "train"

    go = on_disk["tasks"]["go_mf"]
    assert go["kind"] == "go" and go["records"] == 3
    model = go["systems"]["model"]
    expected = evaluate_go(CONFIDENCES, TRUTH, data.obo, information_accretion=_ia(data))[
        "molecular_function"
    ]
    assert model["f_max"]["value"] == pytest.approx(expected.f_max)
    assert model["s_min"]["value"] == pytest.approx(expected.s_min)
    assert model["weighted_f_max"]["value"] == pytest.approx(expected.weighted_f_max)
    assert model["s_min_unweighted"]["value"] == pytest.approx(expected.s_min_unweighted)
    assert model["f_max"]["low"] <= model["f_max"]["value"] <= model["f_max"]["high"]
    assert model["f_max"]["n"] == 3 and model["f_max"]["note"] == ""  # bootstrap agrees with cafaeval
    # greedy: P1 names D (F1 1), P2 names B against {E, B, C} (P 1, R 1/3: F1 0.5), P3 says nothing (0)
    assert model["f1_greedy"]["value"] == pytest.approx(0.5)
    assert model["parse_failure_rate"]["value"] == pytest.approx(1 / 3)
    assert model["sample_parse_failure_rate"] == pytest.approx(2 / 12)
    assert [p["threshold"] for p in model["curve"]] == sorted(p["threshold"] for p in model["curve"])

    naive = go["systems"]["naive"]
    naive_expected = evaluate_go({p: NAIVE for p in TRUTH}, TRUTH, data.obo, information_accretion=_ia(data))
    assert naive["f_max"]["value"] == pytest.approx(naive_expected["molecular_function"].f_max)
    assert naive_scores(
        {"T1": [D], "T2": [E], "T3": [B]}, TermClosure.from_obo(data.obo), "F"
    ) == pytest.approx(NAIVE)
    assert "f1_greedy" not in naive  # a baseline has scores, not answers

    text = on_disk["tasks"]["function"]["systems"]["model"]
    references = ["It is a kinase that phosphorylates serine.", "A membrane transporter of sugars."]
    # the answer region: thinking removed, the text after the last "Answer:" marker
    expected_text = text_metrics(["It is a kinase.", "a membrane protein"], references, n_resamples=200)
    assert text["rouge_l"]["value"] == pytest.approx(expected_text.rouge_l.value)
    assert "naive" not in on_disk["tasks"]["function"]["systems"]  # naive is a GO baseline only

    ppi = on_disk["tasks"]["ppi"]["systems"]["model"]
    assert ppi["accuracy"]["value"] == pytest.approx(0.5) and ppi["parse_failure_rate"]["value"] == 0.5
    stability = on_disk["tasks"]["stability"]["systems"]["model"]
    assert stability["mae"]["value"] == pytest.approx(0.2)
    assert stability["pearson"]["value"] == pytest.approx(1.0)  # two points: perfectly correlated
    assert 0 < stability["mean_reward"]["value"] < 1

    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    by_id = {json.loads(line)["id"]: json.loads(line) for line in lines}
    assert len(lines) == 9 and set(by_id) == set(SCRIPT)
    assert by_id["go:P1"]["samples"] == SCRIPT["go:P1"][1] and by_id["ppi:1"]["samples"] == []


def test_a_killed_run_resumes_without_generating_any_record_twice(data, tmp_path):
    generator = ScriptedGenerator()

    def kill_after_first_batch(index, predictions):
        assert len(predictions) == 4
        raise Killed

    with pytest.raises(Killed):
        run_evaluation(_config(data, tmp_path / "run"), generator, on_batch=kill_after_first_batch)
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 4
    assert not (tmp_path / "run" / "results.json").exists()
    resumed = run_evaluation(_config(data, tmp_path / "run"), generator)
    assert set(generator.generated) == set(SCRIPT) and max(generator.generated.values()) == 1
    assert set(generator.sampled) == {"go:P1", "go:P2", "go:P3"} and max(generator.sampled.values()) == 1
    assert resumed["records"]["generated_this_run"] == 5

    whole = run_evaluation(_config(data, tmp_path / "whole"), ScriptedGenerator())
    assert resumed["tasks"] == whole["tasks"]
    again = ScriptedGenerator()
    run_evaluation(_config(data, tmp_path / "run"), again)  # a finished run: nothing left to generate
    assert not again.generated and not again.sampled


def test_a_torn_last_line_is_cut_and_its_record_generated_again(data, tmp_path):
    generator = ScriptedGenerator()

    def kill(index, predictions):
        raise Killed

    with pytest.raises(Killed):
        run_evaluation(_config(data, tmp_path / "run"), generator, on_batch=kill)
    predictions = tmp_path / "run" / "predictions.jsonl"
    with open(predictions, "a") as handle:
        handle.write('{"id": "text:t2", "task": "function", "gre')  # the machine died mid-write
    results = run_evaluation(_config(data, tmp_path / "run"), generator)
    assert results["records"]["predictions"]["torn_lines"] == 1
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 9 and len({row["id"] for row in rows}) == 9
    assert generator.generated["text:t2"] == 1


def test_bad_inputs_are_counted_or_refused_clearly(data, tmp_path, monkeypatch):
    monkeypatch.delenv("PROTEIN_LLM_GO_OBO", raising=False)
    no_ontology = _config(data, tmp_path / "a")
    no_ontology.data.go_obo = None
    with pytest.raises(ValueError, match="--go-obo"):
        run_evaluation(no_ontology, ScriptedGenerator())
    broken = tmp_path / "broken.obo"
    broken.write_text("format-version: 1.2\n\nthis is not an ontology\n")
    bad_ontology = _config(data, tmp_path / "b")
    bad_ontology.data.go_obo = str(broken)
    with pytest.raises(OboFileError, match="broken.obo"):
        run_evaluation(bad_ontology, ScriptedGenerator())

    # predictions of records the test file does not hold: counted, not scored
    (tmp_path / "c").mkdir()
    ghost = {"id": "ghost", "task": "go_mf", "greedy": D, "samples": [D]}
    (tmp_path / "c" / "predictions.jsonl").write_text(json.dumps(ghost) + "\n")
    results = run_evaluation(_config(data, tmp_path / "c"), ScriptedGenerator())
    assert results["records"]["predictions"]["unknown_records"] == 1
    assert results["tasks"]["go_mf"]["systems"]["model"]["f_max"]["n"] == 3

    # the same run folder with other generation settings would mix two models' answers
    with pytest.raises(ValueError, match="other model or generation settings"):
        run_evaluation(
            _config(data, tmp_path / "c", generation=EvalGenerationConfig(samples=3)), ScriptedGenerator()
        )
    # a record the folder predicted as another task: another test file
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "predictions.jsonl").write_text(json.dumps({**ghost, "id": "ppi:1"}) + "\n")
    with pytest.raises(ValueError, match="ppi:1"):
        run_evaluation(_config(data, tmp_path / "d"), ScriptedGenerator())

    only_bad = tmp_path / "only_bad.jsonl"
    only_bad.write_text(
        "".join(line for line in data.test.read_text().splitlines(True) if "ssl_text" in line)
    )
    nothing = _config(data, tmp_path / "e")
    nothing.data.test_path = str(only_bad)
    with pytest.raises(ValueError, match="no record .* can be evaluated"):
        run_evaluation(nothing, ScriptedGenerator())
    with pytest.raises(ValueError, match="baselines need the training records"):
        EvalConfig(out_dir="x", model="m", baselines="naive")


def test_a_system_with_no_prediction_scores_zero_f_max_with_a_note(data, tmp_path):
    silent = ScriptedGenerator()
    silent.complete = lambda records, n, settings, greedy: [[""] * n for _ in records]  # type: ignore[method-assign]
    results = run_evaluation(_config(data, tmp_path / "run"), silent)
    go = results["tasks"]["go_mf"]["systems"]["model"]
    assert go["f_max"]["value"] == 0.0 and "no protein has a prediction" in go["f_max"]["note"]
    assert go["s_min"]["value"] is None and "undefined" in go["s_min"]["note"]
    assert go["parse_failure_rate"]["value"] == 1.0
    assert results["records"]["empty_completions"] == {"greedy": 9, "samples": 12}


@needs_mmseqs
def test_homology_baseline_transfers_from_the_identical_training_protein(data, tmp_path):
    results = run_evaluation(_config(data, tmp_path / "run", baselines="naive,homology"), ScriptedGenerator())
    homology = results["tasks"]["go_mf"]["systems"]["homology"]
    # P1's sequence is T1's: P1 gets T1's propagated terms {D, B, root} at score 1; P2, P3 have no hit
    expected = evaluate_go(
        {"P1": {D: 1.0, B: 1.0, ROOT: 1.0}}, TRUTH, data.obo, information_accretion=_ia(data)
    )
    assert homology["f_max"]["value"] == pytest.approx(expected["molecular_function"].f_max)
    assert homology["predicted_proteins"] == 1
    text = results["tasks"]["function"]["systems"]["homology"]
    assert text["answered"] == 0.5  # t1 answered with tr:t1's response, t2 has no homolog
    assert results["baselines"]["homology"]["counts"]["nearest:not_one_protein"] == 2  # the PPI pairs


# -- a tiny megatron checkpoint and its HF export ------------------------------------------------------


def _train(rank: int, world_size: int, data_dir: str, run_dir: str) -> str:
    from protein_llm_nemo.testing.sft import tiny_config
    from protein_llm_nemo.training.sft import run_sft

    result = run_sft(tiny_config(data_dir, checkpoint__dir=run_dir, train__max_steps=1))
    return str(result.checkpoint_dir)


def _evaluate(rank: int, world_size: int, checkpoint: str, test: str, obo: str, out: str) -> dict:
    """A killed and resumed run and an uninterrupted one on the same loaded model."""
    from protein_llm_nemo.evaluation.generators import build_generator

    def config(folder: str) -> EvalConfig:
        return EvalConfig(
            out_dir=folder,
            checkpoint=checkpoint,
            data=EvalDataConfig(test_path=test, go_obo=obo, micro_batch_size=2, global_batch_size=4),
            generation=EvalGenerationConfig(samples=2, max_new_tokens=6, system_prompt=None),
            bootstrap_resamples=50,
            progress=False,
        )

    generator = build_generator(config(f"{out}/resumed"))
    calls: list[str] = []
    complete = generator.complete

    def counting(records, n, settings, greedy):
        calls.extend(f"{'greedy' if greedy else 'sampled'}:{r.id}" for r in records)
        return complete(records, n, settings, greedy)

    generator.complete = counting

    def kill(index, predictions):
        raise Killed

    with contextlib.suppress(Killed):
        run_evaluation(config(f"{out}/resumed"), generator, on_batch=kill)
    resumed = run_evaluation(config(f"{out}/resumed"), generator)
    killed_and_resumed = list(calls)
    whole = run_evaluation(config(f"{out}/whole"), generator)
    return {"calls": killed_and_resumed, "resumed": resumed, "whole": whole}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from protein_llm_nemo.testing.multiprocess import run_distributed
    from protein_llm_nemo.testing.sft import write_records

    root = tmp_path_factory.mktemp("eval_tiny")
    (root / "sft").mkdir()
    write_records(root / "sft" / "train.jsonl", 8, seed=0)
    write_records(root / "sft" / "valid.jsonl", 4, seed=1)
    (step,) = run_distributed(_train, world_size=1, args=(str(root / "sft"), str(root / "run")))
    data = write_eval_data(root / "data", OBO)
    (result,) = run_distributed(
        _evaluate, world_size=1, args=(step, str(data.test), str(data.obo), str(root / "eval")), timeout_s=900
    )
    return step, data, root, result


def test_megatron_checkpoint_end_to_end_and_resumed(tiny_run):
    step, data, root, result = tiny_run
    calls = result["calls"]  # the killed run's first batch, then the resumed run's rest
    assert len(calls) == len(set(calls)) == 9 + 3  # every record greedy once, the GO ones sampled once
    assert {c.split(":", 1)[1] for c in calls if c.startswith("greedy")} == set(SCRIPT)
    resumed, whole = result["resumed"], result["whole"]
    assert resumed["tasks"] == whole["tasks"]  # the same completions: samples keyed by prompt, not batch
    assert resumed["model"]["kind"] == "megatron" and resumed["model"]["step"] == 1
    assert resumed["records"]["skipped"] == EXPECTED_SKIPPED
    rows = [
        json.loads(line)
        for line in (root / "eval" / "resumed" / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 9 and all(isinstance(row["greedy"], str) for row in rows)
    assert all(len(row["samples"]) == (2 if row["task"] == "go_mf" else 0) for row in rows)
    for task in ("go_mf", "function", "ppi", "stability"):
        assert "model" in resumed["tasks"][task]["systems"]


def test_hf_export_through_the_cli_gives_the_megatron_greedy_answers(tiny_run, tmp_path):
    step, data, root, result = tiny_run
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "protein_llm_nemo.cli", *args], cwd=REPO, env=env, capture_output=True,
            text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    export = cli("convert", "export", "--checkpoint", step, "--out", str(tmp_path / "hf"))
    assert export.returncode == 0, export.stderr[-3000:]
    run = cli(
        "eval", "--model", str(tmp_path / "hf"), "--data", str(data.test), "--go-obo", str(data.obo),
        "--samples", "2", "--max-new-tokens", "6", "--system-prompt", "none", "--batch-size", "4",
        "--bootstrap-resamples", "50", "--out", str(tmp_path / "eval"), "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = read_results(tmp_path / "eval")
    assert results["model"]["kind"] == "hf" and results["records"]["evaluated"] == 9
    hf = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    megatron = [
        json.loads(line) for line in (root / "eval" / "whole" / "predictions.jsonl").read_text().splitlines()
    ]
    assert {r["id"]: r["greedy"] for r in hf} == {r["id"]: r["greedy"] for r in megatron}
    missing = cli("eval", "--model", str(tmp_path / "hf"), "--data", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr


def test_eval_recipe_through_the_nemo_run_front_end():
    from protein_llm_nemo.launch.cli import prepare

    plan = prepare(
        ["recipes/eval.py", "checkpoint=runs/demo/sft-mlp", "data.limit=24", "generation.samples=4",
         "baselines=naive", "out_dir=runs/demo/eval/x"]
    )  # fmt: skip
    partial = plan["partial"]
    assert plan["stage"] == "eval" and plan["layout"]["world_size"] == 1
    assert partial.checkpoint == "runs/demo/sft-mlp" and partial.baselines == "naive"
    assert partial.data.limit == 24 and partial.data.test_path == "outputs/go_demo_split/test.jsonl"
    assert partial.generation.samples == 4 and partial.out_dir == "runs/demo/eval/x"
    from protein_llm_nemo.launch.presets import PRESETS
    from protein_llm_nemo.launch.recipes import eval_recipe

    gpu, preset = eval_recipe("qwen3-8b-1node", bridge="flamingo"), PRESETS["qwen3-8b-1node"]
    assert gpu.checkpoint == "runs/sft-flamingo-qwen3-8b-1node"  # the SFT recipe's run at that preset
    assert gpu.parallel.tensor_model_parallel_size == preset.tensor_model_parallel_size
    # every data-parallel rank generates micro_batch_size prompts of each appended batch
    assert gpu.data.global_batch_size == gpu.data.micro_batch_size * preset.data_parallel_size


def test_eval_recipe_takes_checkpoint_and_data_flags():
    from protein_llm_nemo.launch.cli import UsageError, prepare

    plan = prepare(["recipes/eval.py", "--checkpoint", "runs/x/step_0000004", "--data", "held_out.jsonl"])
    assert plan["partial"].checkpoint == "runs/x/step_0000004"
    assert plan["partial"].data.test_path == "held_out.jsonl"
    assert plan["partial"].out_dir == "runs/eval/step_0000004"
    with pytest.raises(UsageError, match="takes no --checkpoint"):
        prepare(["recipes/sft.py", "--checkpoint", "runs/x"])
