"""Evaluation recipe: a megatron checkpoint on the test split, with the naive and homology baselines.

    nemo-run recipes/eval.py                                     # tiny CPU default: the SFT run of --bridge
    nemo-run recipes/eval.py --checkpoint runs/demo/sft-mlp --data outputs/go_demo_split/test.jsonl
    nemo-run recipes/eval.py checkpoint=runs/demo/sft-mlp data.test_path=outputs/go_demo_split/test.jsonl \\
        data.limit=24 generation.samples=4 out_dir=runs/demo/eval/sft-mlp
    nemo-run recipes/eval.py --preset qwen3-8b-1node --bridge flamingo --executor slurm ... --dryrun
    python recipes/eval.py checkpoint=runs/sft-mlp-tiny-cpu --yes  # NeMo-Run's own CLI

Keys address the entry point's arguments (`checkpoint`, `out_dir`, `baselines`) and sections (`data.*`,
`generation.*`, `parallel.*`); see docs/evaluation.md. `protein-llm eval` runs the same evaluation from flags.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], where recipes/ssl.py would shadow the standard library's
# `ssl` (imported by urllib3, torch hub, ...): drop it before anything else is imported.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import nemo_run as run  # noqa: E402

from protein_llm_nemo.launch.entrypoints import evaluate  # noqa: E402
from protein_llm_nemo.launch.executors import register_cli_executors  # noqa: E402
from protein_llm_nemo.launch.recipes import eval_recipe  # noqa: E402

STAGE = "eval"
ENTRYPOINT = evaluate


@run.cli.factory(target=evaluate)
def recipe(
    preset: str = "tiny-cpu", bridge: str = "mlp", checkpoint: str | None = None, test_path: str | None = None
) -> run.Partial[evaluate]:
    """The evaluation recipe at `preset` of `checkpoint` (default: the SFT run with `bridge`) on `test_path`
    (default: the preset's test split); see `nemo-run recipes/eval.py --list-presets`."""
    return eval_recipe(preset=preset, bridge=bridge, checkpoint=checkpoint, test_path=test_path)


if __name__ == "__main__":
    register_cli_executors(Path(__file__).resolve().parents[1] / "launchers" / "executors.py")
    run.cli.main(evaluate, default_factory=recipe)
