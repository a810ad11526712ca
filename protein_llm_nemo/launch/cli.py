"""`nemo-run RECIPE [flags] [key=value ...]`: launch a NeMo-Run recipe file of this project.

    nemo-run recipes/sft.py --bridge flamingo
    nemo-run recipes/sft.py --bridge mlp train.max_steps=20 optimizer.bridge_lr=3e-4
    nemo-run recipes/sft.py --executor torchrun --nproc-per-node 2 parallel.tensor_model_parallel_size=2
    nemo-run recipes/grpo.py --bridge mlp --task go checkpoint.load_model_from=runs/demo/sft-mlp
    nemo-run recipes/sft.py --preset qwen3-8b-2node --bridge flamingo --executor slurm --dryrun \\
        executor.account=bio executor.partition=batch executor.container_image=nvcr.io/acme/protein-llm-nemo:0.1

NeMo-Run's own CLI (`nemo` / `nemorun`, or `python recipes/sft.py ...`) takes only `key=value`; this front end
adds the flags above, maps them onto the recipe file's factory (`recipe(preset=..., bridge=..., task=...)`) and an
executor of `protein_llm_nemo.launch.executors`, applies `key=value` overrides to the recipe (`train.max_steps`)
or the executor (`executor.nodes`), checks the layout (ranks vs TP x PP, batch vs DP, container image) and, for a
job on this machine, that every file the recipe reads exists (data, checkpoints to load, embedding cache, local
tokenizer / model folders), then launches with NeMo-Run (`run.Experiment`), or prints the job with `--dryrun`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from protein_llm_nemo.launch.preflight import (
    REMOTE_EXECUTORS,
    check_inputs,
    config_parameters,
    missing_inputs,
)
from protein_llm_nemo.optional import MissingPackageError, optional_import, require

__all__ = [
    "UsageError",
    "apply_overrides",
    "build_parser",
    "check_inputs",
    "load_recipe",
    "main",
    "missing_inputs",
    "prepare",
]

EXECUTOR_NAMES = ("local", "torchrun", "slurm", "docker")


class UsageError(ValueError):
    """A flag, key or value the command cannot use (printed as `nemo-run: error: ...`, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nemo-run",
        description=__doc__.splitlines()[0],
        epilog="key=value overrides: recipe sections (train.max_steps=20, lora.rank=16) or executor.KEY=VALUE.",
        allow_abbrev=False,
    )
    parser.add_argument("recipe", help="a recipe file (recipes/sft.py, recipes/ssl.py, recipes/grpo.py)")
    parser.add_argument("--preset", default=None, help="recipe preset (default tiny-cpu); --list-presets")
    parser.add_argument(
        "--bridge",
        default=None,
        help="a registered bridge: text | mlp | perceiver | flamingo | ... (SFT; default mlp)",
    )
    parser.add_argument(
        "--task",
        default=None,
        help="GRPO: the records' tasks: go | ppi | stability | structure | mc | all (default all)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="eval: the megatron checkpoint (run or step folder) to evaluate (checkpoint=)",
    )
    parser.add_argument("--data", default=None, help="eval: the test records (data.test_path=)")
    parser.add_argument(
        "--executor", default=None, choices=EXECUTOR_NAMES, help="where to run (default local)"
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="processes (GPUs) per node; >1 implies torchrun locally",
    )
    parser.add_argument("--nodes", type=int, default=None, help="nodes (slurm)")
    parser.add_argument("--dryrun", action="store_true", help="print the job (script / command) and exit")
    parser.add_argument("--direct", action="store_true", help="run in this process (no NeMo-Run executor)")
    parser.add_argument("--name", default=None, help="experiment name (default <stage>-<bridge>-<preset>)")
    parser.add_argument("--detach", action="store_true", help="submit and return (slurm)")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    return parser


def _flag_names(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for action in parser._actions for s in action.option_strings if s.startswith("--"))


def load_recipe(path: str | Path) -> ModuleType:
    """Import a recipe file by path. It must define `recipe(preset=..., [bridge=...], [task=...])` returning a
    `run.Partial`; `STAGE` names it, `PRESETS` / `format_presets` (optional) are its own presets."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"recipe file {str(path)!r} not found (try recipes/sft.py, recipes/ssl.py or recipes/grpo.py)"
        )
    name = f"protein_llm_nemo_recipe_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with optional_import("the nemo-run command", "train"):  # recipe files import nemo_run first
        spec.loader.exec_module(module)
    if not callable(getattr(module, "recipe", None)):
        raise UsageError(f"{path} defines no recipe(...) factory; it is not a recipe file of this project")
    return module


# ---------------------------------------------------------------------------------------------- overrides


def _dataclass_in(annotation: Any) -> type | None:
    import dataclasses

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _annotation(node: Any, name: str) -> Any:
    try:
        return typing.get_type_hints(node.__fn_or_cls__).get(name)
    except Exception:  # noqa: BLE001 - unresolvable hints: no auto-created section
        return None


def _resolve(root: Any, key: str, what: str) -> tuple[Any, str]:
    """Walk `key`'s dotted path through `run.Config`s; return (the config holding the last part, its name).
    Unknown parts raise a UsageError listing the valid ones; a None section with a dataclass annotation
    (`lora`) becomes that dataclass's config."""
    import fiddle as fdl
    import nemo_run as run

    parts = key.split(".")
    node = root
    shown = f"executor.{key}" if what == "executor" else key
    for depth, part in enumerate(parts):
        where = ".".join(p for p in (what if what == "executor" else "", *parts[:depth]) if p) or what
        if isinstance(node, dict):
            if depth != len(parts) - 1:
                raise UsageError(f"{key!r}: {where} is a dict; set one of its keys (e.g. {where}.NAME=VALUE)")
            return node, part
        params = config_parameters(node)
        if part not in params:
            raise UsageError(
                f"unknown key {shown!r}: {where} has no {part!r}; valid keys: {', '.join(sorted(params))}"
            )
        if depth == len(parts) - 1:
            return node, part
        child = getattr(node, part)
        if child is None:
            cls = _dataclass_in(_annotation(node, part))
            if cls is None:
                raise UsageError(f"{key!r}: {'.'.join(parts[: depth + 1])} is None and has no fields to set")
            child = run.Config(cls)
            setattr(node, part, child)
        if not isinstance(child, (fdl.Buildable, dict)):
            raise UsageError(
                f"{key!r}: {'.'.join(parts[: depth + 1])} is a value ({child!r}), not a section with keys"
            )
        node = child
    raise AssertionError("unreachable")


def _literal(value: str) -> Any:
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None, "null": None}.get(value.lower(), value)


def apply_overrides(root: Any, overrides: list[str], what: str = "the recipe") -> None:
    """Apply NeMo-Run style `key=value` overrides to a `run.Partial` / `run.Config` tree, values parsed
    against the field's type by NeMo-Run's own parser."""
    from nemo_run.cli.cli_parser import parse_cli_args

    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        if key.endswith(("+", "-", "*", "/", "|", "&")):
            raise UsageError(f"{item!r}: only plain key=value overrides are supported here")
        holder, name = _resolve(root, key, what)
        if isinstance(holder, dict):
            holder[name] = _literal(value)
            continue
        try:  # NeMo-Run prints its own (long) parse errors: keep them out of the user's way
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                parse_cli_args(holder, [f"{name}={value}"], holder)
        except Exception:  # noqa: BLE001 - NeMo-Run raises several parse exception types
            expected = _annotation(holder, name)
            expected = getattr(expected, "__name__", None) or str(expected)
            raise UsageError(f"cannot set {key}={value!r}: expected a value of type {expected}") from None


# ---------------------------------------------------------------------------------------------- launch


def _executor_settings(name: str, args: argparse.Namespace, preset: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if name == "torchrun":
        settings["nproc_per_node"] = args.nproc_per_node or 2
    elif name == "slurm":
        # A CPU preset on a cluster is a 1-GPU smoke test of the image and the plumbing.
        settings["nodes"] = args.nodes or (preset.nodes if preset.gpus_per_node else 1)
        settings["gpus_per_node"] = args.nproc_per_node or preset.gpus_per_node or 1
    elif name == "docker":
        settings["num_gpus"] = preset.gpus_per_node or 1
        settings["nproc_per_node"] = args.nproc_per_node
    return settings


def prepare(argv: list[str]) -> dict[str, Any]:
    """Parse `argv` into what would launch: {partial, executor (built), executor_name, name, layout, args}.
    Raises UsageError for anything unknown or inconsistent; submits nothing."""
    import fiddle as fdl

    from protein_llm_nemo.launch.executors import LaunchError, build_executor, check_launch
    from protein_llm_nemo.launch.presets import PRESETS

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    flags = [item for item in extra if item.startswith("-")]
    if flags:
        raise UsageError(f"unknown flag(s) {' '.join(flags)}; valid flags: {', '.join(_flag_names(parser))}")
    overrides = [item for item in extra if "=" in item]
    positional = [item for item in extra if "=" not in item]
    if positional:
        raise UsageError(f"unexpected argument(s) {' '.join(positional)}: overrides are key=value")

    module = load_recipe(args.recipe)
    factory_params = inspect.signature(module.recipe).parameters
    stage = getattr(module, "STAGE", Path(args.recipe).stem)
    presets = getattr(module, "PRESETS", PRESETS)  # GRPO's presets add rollouts to the same layouts
    kwargs: dict[str, Any] = {}
    preset_name = args.preset or factory_params["preset"].default
    if preset_name not in presets:
        raise UsageError(f"unknown preset {preset_name!r}; choose one of {', '.join(presets)}")
    kwargs["preset"] = preset_name
    bridge = None
    if "bridge" in factory_params:
        bridge = args.bridge or factory_params["bridge"].default
        kwargs["bridge"] = bridge
    elif args.bridge:
        raise UsageError(f"{args.recipe} takes no --bridge (the {stage} stage has no protein bridge)")
    task = None
    if "task" in factory_params:
        task = args.task or factory_params["task"].default
        kwargs["task"] = task
    elif args.task:
        raise UsageError(f"{args.recipe} takes no --task (only GRPO selects records by their reward's task)")
    for flag, param in (("--checkpoint", "checkpoint"), ("--data", "test_path")):
        value = getattr(args, flag[2:])
        if value is None:
            continue
        if param not in factory_params:
            raise UsageError(
                f"{args.recipe} takes no {flag} (the evaluation recipe does; use key=value here)"
            )
        kwargs[param] = value
    try:
        partial = module.recipe(**kwargs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    executor_overrides = [o[len("executor.") :] for o in overrides if o.startswith("executor.")]
    recipe_overrides = [o for o in overrides if not o.startswith("executor.")]
    apply_overrides(partial, recipe_overrides)
    try:  # build the config objects once here: their own checks (__post_init__) fail before any launch
        fdl.build(partial)
    except (TypeError, ValueError) as exc:
        message = str(exc).split("\n\nFiddle context:")[0]
        raise UsageError(f"invalid recipe config: {message}") from None

    preset = presets[preset_name]
    executor_name = args.executor or ("torchrun" if (args.nproc_per_node or 1) > 1 else "local")
    if executor_name == "local" and (args.nproc_per_node or 1) > 1:
        raise UsageError("--executor local runs one process; use --executor torchrun --nproc-per-node N")
    if args.nodes and executor_name != "slurm":
        raise UsageError(
            f"--nodes needs --executor slurm (the {executor_name} executor runs on this machine)"
        )
    try:
        executor_config = build_executor(executor_name, **_executor_settings(executor_name, args, preset))
    except LaunchError as exc:
        raise UsageError(str(exc)) from None
    apply_overrides(executor_config, executor_overrides, what="executor")
    try:
        executor = fdl.build(executor_config)
        batched = "global_batch_size" in config_parameters(partial.data)  # GRPO's batch is its rollouts
        layout = check_launch(
            executor, partial.parallel, partial.data if batched else None, dryrun=args.dryrun
        )
        if not batched:
            layout.update(_rollout_layout(partial, layout["data_parallel"]))
    except LaunchError as exc:
        raise UsageError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"executor {executor_name}: {exc}") from None
    task_part = task if task != "all" else None
    name = args.name or "-".join(part for part in (stage, bridge, task_part, preset_name) if part)
    return dict(
        partial=partial,
        executor=executor,
        executor_name=executor_name,
        name=name,
        layout=layout,
        args=args,
        stage=stage,
    )


def _rollout_layout(partial: Any, data_parallel: int) -> dict[str, int]:
    """GRPO: the step's samples (prompts x generations) split evenly over DP ranks and micro-batches."""
    import fiddle as fdl

    grpo, data = fdl.build(partial.grpo), fdl.build(partial.data)
    samples = grpo.num_prompts_per_step * grpo.num_generations
    per_pass = data.micro_batch_size * data_parallel
    if samples % per_pass:
        raise UsageError(
            f"grpo.num_prompts_per_step x grpo.num_generations = {samples} samples per step is not a multiple "
            f"of data.micro_batch_size ({data.micro_batch_size}) x data-parallel size ({data_parallel}) = "
            f"{per_pass}"
        )
    return {"samples_per_step": samples, "micro_batches_per_rank": samples // per_pass}


def _launch(plan: dict[str, Any]) -> int:
    import nemo_run as run

    from protein_llm_nemo.launch.executors import ensure_venv_on_path, render_job

    args, partial, executor, name = plan["args"], plan["partial"], plan["executor"], plan["name"]
    layout = plan["layout"]
    summary = ", ".join(f"{k}={v}" for k, v in layout.items())
    print(f"nemo-run: {name} on {plan['executor_name']} ({summary})", flush=True)
    if args.dryrun:
        print(render_job(partial, executor, name))
        return 0
    if args.direct:
        run.run(partial, direct=True)
        return 0
    ensure_venv_on_path()
    # NeMo-Run's closing "reconstruct this experiment" hints matter for cluster jobs, not for local runs.
    remote = plan["executor_name"] in ("slurm", "docker")
    with run.Experiment(title=name, executor=executor, enable_goodbye_message=remote) as exp:
        exp.add(partial, name=name, tail_logs=not args.detach)
        exp.run(detach=args.detach, tail_logs=not args.detach)
    states = [job.state for job in exp.jobs]  # final once the experiment's context has waited for them
    if args.detach:
        print(f"nemo-run: submitted {name}; states {[str(s) for s in states]}")
        return 0
    failed = [str(s) for s in states if str(s) != "SUCCEEDED"]
    if failed:
        print(f"nemo-run: {name} finished with state(s) {failed}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--list-presets" in argv:
        from protein_llm_nemo.launch.presets import format_presets

        recipes = [item for item in argv if item.endswith(".py")]
        if recipes:  # a recipe file may list its own presets (GRPO)
            try:
                with optional_import("the nemo-run command", "train"):
                    format_presets = getattr(load_recipe(recipes[0]), "format_presets", format_presets)
            except (UsageError, MissingPackageError) as exc:
                print(f"nemo-run: error: {exc}", file=sys.stderr)
                return 2
        print(format_presets())
        return 0
    try:
        require("nemo_run", "the nemo-run command", "train")
        with optional_import("the nemo-run command", "train"):
            plan = prepare(argv)
        problem = None
        if not plan["args"].dryrun:
            if plan["executor_name"] not in REMOTE_EXECUTORS:  # the job trains in this environment
                require("megatron", "training", "train")
            problem = check_inputs(plan)
    except UsageError as exc:
        build_parser().print_usage(sys.stderr)
        print(f"nemo-run: error: {exc}", file=sys.stderr)
        return 2
    except MissingPackageError as exc:
        print(f"nemo-run: error: {exc}", file=sys.stderr)
        return 2
    if problem:  # one line, before NeMo-Run starts a job that would fail deep inside
        print(f"nemo-run: error: {problem}", file=sys.stderr)
        return 2
    return _launch(plan)


if __name__ == "__main__":
    sys.exit(main())
