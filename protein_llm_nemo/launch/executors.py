"""Where a recipe runs: NeMo-Run executors built from a few named settings, checked, and rendered.

    executor = build_executor("slurm", account="bio", partition="batch", nodes=2,
                              container_image="nvcr.io/acme/protein-llm-nemo:0.1")   # run.Config[Executor]
    check_launch(fdl.build(executor), parallel, data)      # GPUs vs TP x PP, batch vs DP, image present
    print(render_job(partial, fdl.build(executor)))         # the sbatch script / torchrun command / docker run

| name     | NeMo-Run executor                                  | ranks                          |
|----------|----------------------------------------------------|--------------------------------|
| local    | `LocalExecutor` (one process)                      | 1                              |
| torchrun | `LocalExecutor(launcher="torchrun")`               | `nproc_per_node`               |
| slurm    | `SlurmExecutor` + container, torchrun, git archive | `nodes` x `gpus_per_node`      |
| docker   | `DockerExecutor` (NVIDIA runtime) + torchrun       | `num_gpus` (or `nproc_per_node`) |

Builders return `run.Config[...]` (NeMo-Run's factory idiom): `key=value` overrides (`executor.nodes=4`)
apply to the config before `fdl.build`. `launchers/executors.py` registers them as `@run.cli.factory`
so `python recipes/sft.py run.executor=slurm run.executor.account=bio` works through NeMo-Run's own CLI.

`LocalExecutor` starts `python` / `torchrun` from PATH (not `sys.executable`): `ensure_venv_on_path()`
puts this interpreter's directory first so a job runs in the environment that launched it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from protein_llm_nemo.optional import optional_import

with optional_import("NeMo-Run executors", "train"):
    import fiddle as fdl
    import nemo_run as run
    from nemo_run.config import get_nemorun_home

__all__ = [
    "EXECUTORS",
    "GPU_ENV",
    "LaunchError",
    "build_executor",
    "check_launch",
    "docker_executor",
    "ensure_venv_on_path",
    "executor_world_size",
    "local_executor",
    "register_cli_executors",
    "render_job",
    "slurm_executor",
    "torchrun_executor",
]

# Environment of GPU jobs: one CUDA connection per device keeps megatron's TP communication ordered with
# compute; async NCCL error handling turns a hung collective into an error instead of a stuck job.
GPU_ENV: dict[str, str] = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "PYTHONWARNINGS": "ignore",
}
# CPU torchrun: one BLAS thread per rank (N ranks on a few cores would otherwise oversubscribe).
CPU_ENV: dict[str, str] = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


IMAGE_ENV = "PROTEIN_LLM_IMAGE"  # the default container image of slurm / docker launches


class LaunchError(ValueError):
    """A launch setting that cannot work (raised before anything is submitted)."""


def _merge_env(base: dict[str, str], extra: dict[str, str] | None) -> dict[str, str]:
    return {**base, **(extra or {})}


def local_executor(env_vars: dict[str, str] | None = None) -> run.Config[run.LocalExecutor]:
    """One local process (`python -m nemo_run.core.runners.fdl_runner ...`)."""
    return run.Config(run.LocalExecutor, ntasks_per_node=1, env_vars=_merge_env({}, env_vars))


def torchrun_executor(
    nproc_per_node: int = 2, env_vars: dict[str, str] | None = None
) -> run.Config[run.LocalExecutor]:
    """`torchrun --nproc-per-node N` on this machine (gloo on CPU, NCCL on GPUs)."""
    if nproc_per_node < 1:
        raise LaunchError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    return run.Config(
        run.LocalExecutor,
        ntasks_per_node=nproc_per_node,
        launcher="torchrun",
        env_vars=_merge_env(CPU_ENV, env_vars),
    )


def slurm_executor(
    account: str | None = None,
    partition: str | None = None,
    nodes: int = 1,
    gpus_per_node: int = 8,
    time: str = "04:00:00",
    container_image: str | None = None,
    container_mounts: Sequence[str] = (),
    job_dir: str | None = None,
    host: str | None = None,
    user: str | None = None,
    identity: str | None = None,
    exclusive: bool = True,
    mem: str | None = "0",
    qos: str | None = None,
    env_vars: dict[str, str] | None = None,
) -> run.Config[run.SlurmExecutor]:
    """A Slurm batch job: `nodes` x `gpus_per_node` ranks, each node one `srun` task running
    `torchrun --nproc-per-node gpus_per_node` inside `container_image` (pyxis/enroot), the code shipped as
    a `git archive` of HEAD (NeMo-Run's `GitArchivePackager`, extracted to /nemo_run/code, the working
    directory, so the committed code is what runs even over an older image).

    Submits with `sbatch` on this machine (a login node) unless `host` is given: then over SSH, with
    `job_dir` a directory on the cluster. `account` defaults to $SBATCH_ACCOUNT (Slurm's own variable) and
    `container_image` to $PROTEIN_LLM_IMAGE."""
    account = account or os.environ.get("SBATCH_ACCOUNT") or None
    container_image = container_image or os.environ.get(IMAGE_ENV) or None
    if host:
        if not job_dir:
            raise LaunchError("slurm over SSH (host=...) needs job_dir=<a directory on the cluster>")
        tunnel = run.Config(
            run.SSHTunnel, host=host, user=user or os.environ.get("USER", ""), job_dir=job_dir
        )
        if identity:
            tunnel.identity = identity
    else:
        tunnel = run.Config(
            run.LocalTunnel, job_dir=job_dir or os.path.join(get_nemorun_home(), "slurm_jobs")
        )
    return run.Config(
        run.SlurmExecutor,
        account=account,
        partition=partition,
        nodes=nodes,
        ntasks_per_node=gpus_per_node,  # the torchrun launcher turns this into one task x N procs per node
        gpus_per_node=gpus_per_node,
        time=time,
        container_image=container_image,
        container_mounts=list(container_mounts),
        exclusive=exclusive or None,
        mem=mem,
        qos=qos,
        launcher="torchrun",
        packager=run.Config(run.GitArchivePackager, subpath=""),
        tunnel=tunnel,
        env_vars=_merge_env(GPU_ENV, env_vars),
    )


def docker_executor(
    container_image: str | None = None,
    num_gpus: int = 8,
    nproc_per_node: int | None = None,
    volumes: Sequence[str] = (),
    shm_size: str = "16g",
    env_vars: dict[str, str] | None = None,
) -> run.Config[run.DockerExecutor]:
    """One container on this machine's Docker engine (NVIDIA runtime, `num_gpus` GPUs, host IPC), running
    `torchrun --nproc-per-node nproc_per_node` (default: one rank per GPU) on a git archive of HEAD.
    `container_image` defaults to $PROTEIN_LLM_IMAGE."""
    container_image = container_image or os.environ.get(IMAGE_ENV) or None
    return run.Config(
        run.DockerExecutor,
        container_image=container_image,
        num_gpus=num_gpus,
        runtime="nvidia" if num_gpus else None,
        ntasks_per_node=nproc_per_node or max(num_gpus, 1),
        volumes=list(volumes),
        shm_size=shm_size,
        ipc_mode="host",
        ulimits=["memlock:-1", "stack:67108864"],
        launcher="torchrun",
        packager=run.Config(run.GitArchivePackager, subpath=""),
        env_vars=_merge_env(GPU_ENV if num_gpus else CPU_ENV, env_vars),
    )


EXECUTORS = {
    "local": local_executor,
    "torchrun": torchrun_executor,
    "slurm": slurm_executor,
    "docker": docker_executor,
}


def build_executor(name: str, **settings: Any) -> run.Config:
    """`run.Config` of executor `name` with builder `settings` (None values are left at their default)."""
    try:
        builder = EXECUTORS[name]
    except KeyError:
        raise LaunchError(f"unknown executor {name!r}; choose one of {sorted(EXECUTORS)}") from None
    import inspect

    known = set(inspect.signature(builder).parameters)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise LaunchError(f"executor {name!r} takes no settings {unknown}; its settings are {sorted(known)}")
    return builder(**{k: v for k, v in settings.items() if v is not None})


def executor_world_size(executor: run.Executor) -> int:
    """Ranks the executor starts: nodes x processes per node."""
    if isinstance(executor, run.SlurmExecutor):
        per_node = executor.torchrun_nproc_per_node or executor.gpus_per_node or executor.ntasks_per_node
        return int(executor.nodes) * int(per_node)
    if isinstance(executor, run.DockerExecutor):
        return int(executor.ntasks_per_node) * int(getattr(executor, "nodes", 1) or 1)
    return int(executor.nnodes()) * int(executor.nproc_per_node())


def _executor_name(executor: run.Executor) -> str:
    if isinstance(executor, run.SlurmExecutor):
        return "slurm"
    if isinstance(executor, run.DockerExecutor):
        return "docker"
    if isinstance(executor, run.LocalExecutor) and executor.launcher:
        return "torchrun"
    return "local"


PLACEHOLDER_IMAGE = "<container-image>"
PLACEHOLDER_ACCOUNT = "<slurm-account>"


def check_launch(
    executor: run.Executor, parallel: Any, data: Any | None = None, dryrun: bool = False
) -> dict[str, int]:
    """Reject settings that cannot run, before submitting anything.

    - slurm/docker without a container image (the job would start bare on the node);
    - slurm without an account;
    - a world size that is not a multiple of tensor x pipeline (x context) parallel sizes;
    - a global batch that is not a multiple of micro-batch x data-parallel size.
    A dry run only renders the job: a missing image or account becomes a visible placeholder (with a
    warning on stderr) instead of an error, so the rest of the job can be reviewed.
    Returns the layout: world_size, model_parallel, data_parallel, gradient_accumulation (when `data`).
    """
    name = _executor_name(executor)
    missing = []
    if name in ("slurm", "docker") and not executor.container_image:
        if not dryrun:
            raise LaunchError(
                f"the {name} executor needs a container image: executor.container_image=<registry/image:tag> "
                f"or ${IMAGE_ENV} (build it from launchers/Dockerfile; see launchers/README.md)"
            )
        executor.container_image = PLACEHOLDER_IMAGE
        missing.append(f"executor.container_image (or ${IMAGE_ENV})")
    if name == "slurm" and not executor.account:
        if not dryrun:
            raise LaunchError(
                "the slurm executor needs an account: executor.account=<slurm account> or $SBATCH_ACCOUNT"
            )
        executor.account = PLACEHOLDER_ACCOUNT
        missing.append("executor.account (or $SBATCH_ACCOUNT)")
    if missing:
        print(f"dry run: placeholders for {', '.join(missing)}; a real launch needs them", file=sys.stderr)
    if name == "slurm" and executor.gpus_per_node is not None and executor.gpus_per_node < 1:
        raise LaunchError(f"gpus_per_node must be >= 1, got {executor.gpus_per_node}")
    world = executor_world_size(executor)
    tp = parallel.tensor_model_parallel_size
    pp = parallel.pipeline_model_parallel_size
    cp = getattr(parallel, "context_parallel_size", 1) or 1
    model_parallel = tp * pp * cp
    if world % model_parallel:
        where = (
            f"{executor.nodes} node(s) x {world // max(int(executor.nodes), 1)} GPUs"
            if name == "slurm"
            else f"{world} process(es)"
        )
        raise LaunchError(
            f"{where} = {world} ranks is not divisible by tensor_model_parallel_size ({tp}) x "
            f"pipeline_model_parallel_size ({pp})"
            + (f" x context_parallel_size ({cp})" if cp > 1 else "")
            + f" = {model_parallel}; use a multiple of {model_parallel} ranks or change parallel.*"
        )
    layout = {"world_size": world, "model_parallel": model_parallel, "data_parallel": world // model_parallel}
    if data is not None:
        per_step = data.micro_batch_size * layout["data_parallel"]
        if data.global_batch_size % per_step:
            raise LaunchError(
                f"data.global_batch_size ({data.global_batch_size}) is not a multiple of "
                f"data.micro_batch_size ({data.micro_batch_size}) x data-parallel size "
                f"({layout['data_parallel']}) = {per_step}"
            )
        layout["gradient_accumulation"] = data.global_batch_size // per_step
    return layout


def ensure_venv_on_path() -> None:
    """Put this interpreter's bin directory first on PATH: NeMo-Run's local scheduler runs `python` and
    `torchrun` from PATH, which must be the environment that has this package."""
    bindir = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, *[p for p in parts if p != bindir]])


def _render_popen(request: Any) -> str:
    lines = []
    for role, replicas in request.role_params.items():
        for i, replica in enumerate(replicas):
            lines.append(f"# role {role}, replica {i}; logs: {replica.stdout}")
            lines.append(f"cd {shlex.quote(replica.cwd or os.getcwd())}")
            env = {k: v for k, v in replica.env.items() if k != "PATH"}
            env_prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(env.items()))
            lines.append(f"{env_prefix} {shlex.join(replica.args)}".strip())
    return "\n".join(lines)


def _render_docker(request: Any) -> str:
    lines = []
    for container in request.containers:
        ex = container.executor
        args = ["docker", "run", "--detach", "--rm", "--name", container.name, "--network", ex.network]
        if ex.runtime:
            args += ["--runtime", ex.runtime]
        if ex.num_gpus:
            args += ["--gpus", str(ex.num_gpus)]
        if ex.shm_size:
            args += ["--shm-size", ex.shm_size]
        if ex.ipc_mode:
            args += ["--ipc", ex.ipc_mode]
        for ulimit in ex.ulimits or []:
            key, _, limits = ulimit.partition(":")
            args += ["--ulimit", f"{key}={limits}"]
        for volume in ex.volumes or []:
            args += ["--volume", volume]
        for key, value in sorted({**ex.env_vars, **container.extra_env}.items()):
            args += ["--env", f"{key}={value}"]
        args += ["--workdir", "/nemo_run/code", ex.container_image, "bash", "-c", " ".join(container.command)]
        lines.append(shlex.join(args))
    return "\n".join(lines)


def render_job(partial: Any, executor: run.Executor, name: str = "job") -> str:
    """What NeMo-Run would submit, as text: the sbatch script (slurm), the command line with its
    environment (local, torchrun) or the equivalent `docker run` (docker), followed by the task config.
    Nothing is submitted or started (NeMo-Run's experiment dryrun underneath)."""
    from nemo_run.core.serialization.yaml import YamlSerializer

    executor = fdl.build(executor.to_config())  # a copy: the dryrun assigns job dirs to it
    with run.Experiment(title=name, executor=executor, log_level="WARN") as exp:
        exp.add(partial, name=name, tail_logs=False)
        exp.dryrun(log=False)
        info = exp.jobs[0]._dryrun_info
    request = info.request
    if hasattr(request, "materialize"):  # SlurmBatchRequest
        body = request.materialize()
    elif hasattr(request, "containers"):  # DockerJobRequest
        body = _render_docker(request)
    elif hasattr(request, "role_params"):  # torchx local PopenRequest
        body = _render_popen(request)
    else:  # pragma: no cover - another scheduler
        body = str(info)
    config = YamlSerializer().serialize(partial)
    return f"{body.rstrip()}\n\n# task config ({name})\n{config.rstrip()}\n"


def register_cli_executors(path: str | os.PathLike | None = None) -> bool:
    """Register `launchers/executors.py`'s NeMo-Run factories (`run.executor=slurm` on NeMo-Run's CLI).

    `path` defaults to `launchers/executors.py` under the working directory; returns False when absent
    (an installed package without the repository's launchers/)."""
    import importlib.util
    from pathlib import Path

    path = Path(path) if path is not None else Path.cwd() / "launchers" / "executors.py"
    if not path.is_file():
        return False
    name = "protein_llm_nemo_launchers_executors"
    if name in sys.modules:
        return True
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return True
