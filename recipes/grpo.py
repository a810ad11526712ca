"""GRPO recipe: reinforcement learning with verifiable rewards, starting from an SFT checkpoint of the bridge.

    nemo-run recipes/grpo.py --bridge mlp                       # tiny CPU default: starts from `make demo`'s SFT
    nemo-run recipes/grpo.py --bridge mlp --task go checkpoint.load_model_from=runs/sft-mlp-tiny-cpu
    nemo-run recipes/grpo.py --preset qwen3-8b-1node --bridge flamingo --task go --executor slurm \\
        executor.account=bio executor.container_image=nvcr.io/acme/protein-llm-nemo:0.1 rewards.go_obo=... --dryrun
    python recipes/grpo.py bridge=flamingo train.max_steps=2 --yes     # NeMo-Run's own CLI

--task picks the records' tasks (go, ppi, stability, structure, mc, all; `protein_llm_nemo.launch.recipes`);
keys (`grpo.num_generations=8`, `routing.freeze_bridge_steps=50`, `rewards.go_obo=...`) address the sections of
`GRPOConfig`. See docs/grpo.md.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], where recipes/ssl.py would shadow the standard library's
# `ssl` (imported by urllib3, torch hub, ...): drop it before anything else is imported.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import nemo_run as run  # noqa: E402

from protein_llm_nemo.launch.entrypoints import grpo  # noqa: E402
from protein_llm_nemo.launch.executors import register_cli_executors  # noqa: E402
from protein_llm_nemo.launch.grpo_presets import GRPO_PRESETS as PRESETS  # noqa: E402, F401 - read by nemo-run
from protein_llm_nemo.launch.grpo_presets import format_grpo_presets as format_presets  # noqa: E402, F401
from protein_llm_nemo.launch.recipes import grpo_recipe  # noqa: E402

STAGE = "grpo"
ENTRYPOINT = grpo


@run.cli.factory(target=grpo)
def recipe(preset: str = "tiny-cpu", bridge: str = "mlp", task: str = "all") -> run.Partial[grpo]:
    """The GRPO recipe at `preset` with `bridge` on `task`'s records (see `nemo-run recipes/grpo.py
    --list-presets`)."""
    return grpo_recipe(preset=preset, bridge=bridge, task=task)


if __name__ == "__main__":
    register_cli_executors(Path(__file__).resolve().parents[1] / "launchers" / "executors.py")
    run.cli.main(grpo, default_factory=recipe)
