"""Preflight of a local launch: every file a recipe reads exists (records, checkpoints to load, the GO
ontology, the embedding cache, local tokenizer / model folders), each missing one named with the command that
makes it, and GRPO does not start from an untrained bridge by mistake. `nemo-run` runs it before launching on
this machine (`launch.cli.prepare` builds the plan it reads)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["REMOTE_EXECUTORS", "check_inputs", "config_parameters", "missing_inputs"]


def config_parameters(node: Any) -> dict[str, inspect.Parameter]:
    """The parameters of what a `run.Partial` / `run.Config` builds."""
    return dict(inspect.signature(node.__fn_or_cls__).parameters)


REMOTE_EXECUTORS = ("slurm", "docker")
DEMO_DATA = "build the CPU demo data with `make demo-data` (the data steps of scripts/demo.sh)"


def _local_path(value: str) -> bool:
    """A folder path rather than a hub id ("org/name"): absolute, relative with ./ ../ ~, or 2+ parts."""
    return value.startswith(("/", "./", "../", "~")) or value.count("/") >= 2


def _data_hint(key: str, path: str) -> str:
    from protein_llm_nemo.launch.recipes import DATA

    if any(path in (paths["train"], paths["valid"]) for name, paths in DATA.items() if "cpu" in name):
        return DEMO_DATA
    if path.startswith("data/biotext"):
        return "build it with `protein-llm data convert --source biotext ...` (docs/data.md#commands)"
    if path.startswith("data/go_split"):
        return (
            "build it with `protein-llm data build-go --out data/go` then `protein-llm data split --input "
            "data/go/records.jsonl --out-dir data/go_split` (docs/data.md#commands)"
        )
    return f"point {key}= at existing records (docs/data.md)"


def _checkpoint_hint(key: str, path: str, stage: str = "sft", bridge: str = "B") -> str:
    size = re.fullmatch(r"(?:.*/)?qwen3-([\w.]+)-megatron/?", path)
    if key == "checkpoint.load_language_model_from" and size:
        hub_id = f"Qwen/Qwen3-{size.group(1).upper()}"
        return f"import it with `protein-llm convert import --hf-model {hub_id} --out {path}`"
    if key == "checkpoint.load_language_model_from":
        return (
            f"import a Qwen3 with `protein-llm convert import --hf-model Qwen/Qwen3-... --out {path}` or train "
            f"an SSL run there with `nemo-run recipes/ssl.py checkpoint.dir={path}`"
        )
    if key == "checkpoint.load_model_from" and stage == "grpo":
        if re.fullmatch(r"(?:\./)?runs/demo/sft-mlp/?", path):
            return "run `make demo` first (its SFT run writes runs/demo/sft-mlp)"
        return (
            f"train the SFT run GRPO starts from first: `nemo-run recipes/sft.py --bridge {bridge} "
            f"[--preset P] checkpoint.dir={path}`"
        )
    if key == "checkpoint.load_model_from":
        return f"train the run it starts from first (e.g. `nemo-run recipes/ssl.py checkpoint.dir={path}`)"
    return "name a step folder of an earlier run of this recipe (checkpoint.dir/step_*)"


def _inputs(partial: Any, stage: str) -> list[tuple[str, str, str, bool]]:
    """(key, path, how to build it, exists) of every file or folder the recipe reads."""
    import fiddle as fdl

    sections = fdl.build(partial).keywords  # the typed configs, defaults filled in

    def get(section: str, name: str) -> Any:
        return getattr(sections.get(section), name, None)

    found: list[tuple[str, str, str, bool]] = []
    for name in ("train_path", "valid_path"):
        path = get("data", name)
        if path:
            exists = Path(path).exists()
            if stage == "ssl":  # SSL also reads a megatron .bin/.idx prefix
                exists = exists or (Path(f"{path}.bin").is_file() and Path(f"{path}.idx").is_file())
            found.append((f"data.{name}", str(path), _data_hint(f"data.{name}", str(path)), exists))
    for name in ("load_language_model_from", "load_model_from", "resume_from"):
        path = get("checkpoint", name)
        if path:
            key = f"checkpoint.{name}"
            bridge = getattr(sections.get("bridge"), "name", "B")
            hint = _checkpoint_hint(key, str(path), stage, bridge)
            found.append((key, str(path), hint, Path(path).exists()))
    for name in ("go_obo", "go_ontology_dir"):  # GRPO's GO rewards
        path = get("rewards", name)
        if path:
            from protein_llm_nemo.launch.recipes import GO_OBO

            demo = path in GO_OBO.values()
            hint = (
                DEMO_DATA
                if demo
                else f"point rewards.{name}= at the Gene Ontology the GO records were made with"
            )
            found.append((f"rewards.{name}", str(path), hint, Path(path).exists()))
    cache = get("encoder", "cache_dir")
    if cache:
        hint = f"build it with `protein-llm encode --encoder NAME --input RECORDS --cache-dir {cache}`"
        found.append(("encoder.cache_dir", str(cache), hint, Path(cache).is_dir()))
    weights = (get("encoder", "overrides") or {}).get("weights")
    local = {"model.tokenizer": get("model", "tokenizer"), "model.hf_path": get("model", "hf_path")}
    local["encoder.overrides.weights"] = weights if isinstance(weights, str) else None
    for key, value in local.items():
        if value and _local_path(str(value)):
            hint = f"give a local folder or a hub id (org/name) for {key}"
            found.append((key, str(value), hint, Path(str(value)).expanduser().exists()))
    return found


def missing_inputs(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, path, how to build it) of each input of the recipe that does not exist on this machine."""
    return [(k, p, hint) for k, p, hint, exists in _inputs(plan["partial"], plan["stage"]) if not exists]


def check_inputs(plan: dict[str, Any]) -> str | None:
    """The one-line error for a launch that would fail on a missing input, or None. Remote executors read
    paths on the cluster / in the container: nothing of theirs is checked here (a note says so)."""
    if plan["executor_name"] in REMOTE_EXECUTORS:
        keys = [key for key, *_ in _inputs(plan["partial"], plan["stage"])]
        where = "on the cluster" if plan["executor_name"] == "slurm" else "inside the container"
        if keys:
            print(
                f"nemo-run: note: the {plan['executor_name']} job reads {', '.join(keys)} {where}; "
                "only local inputs are checked here, so these are not",
                file=sys.stderr,
            )
        return None
    missing = missing_inputs(plan)
    if not missing:
        return _untrained_bridge(plan["partial"])
    key, path, hint = missing[0]
    also = [k for k, *_ in missing[1:]]
    more = f" (also missing: {', '.join(also)})" if also else ""
    return f"{key}={path} not found{more}; {hint}"


def _untrained_bridge(partial: Any) -> str | None:
    """GRPO from a random bridge is almost always a mistake (the run refuses it): say so before launching."""
    import fiddle as fdl

    from protein_llm_nemo.bridges import get_bridge_config_class
    from protein_llm_nemo.training.checkpoint import resolve_resume

    sections = fdl.build(partial).keywords
    if "allow_untrained_bridge" not in config_parameters(partial) or sections.get("allow_untrained_bridge"):
        return None
    bridge, checkpoint = sections["bridge"].name, sections["checkpoint"]
    if not get_bridge_config_class(bridge).uses_encoder or checkpoint.load_model_from:
        return None
    try:
        if resolve_resume(checkpoint.dir, checkpoint.resume_from, checkpoint.auto_resume) is not None:
            return None
    except FileNotFoundError:
        return None  # a bad resume_from is reported by the run itself
    return (
        f"GRPO would start from an untrained {bridge!r} bridge: train its SFT run first (`nemo-run "
        f"recipes/sft.py --bridge {bridge}`; `make demo` trains mlp), or set checkpoint.load_model_from=<an SFT "
        "checkpoint of this bridge>, or allow_untrained_bridge=True if you mean it"
    )
