"""Checkpoints under SIGKILL: a kill while pruning leaves no half-deleted `step_*` folder that looks complete
(resume and export take the newest complete checkpoint, the next save removes the trash), and a kill mid-save
leaves no process behind (megatron's forked writers and its `spawn` manager outlived the rank).

The kills are real SIGKILLs at fixed points of a tiny SFT run in a subprocess (this file run as a script):
`shutil.rmtree` deletes half of a folder, data files first, then kills its process; megatron's file writer
signals and waits to be killed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from protein_llm_nemo.testing.multiprocess import run_distributed
from protein_llm_nemo.testing.sft import tiny_config, write_records


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("sft_data")
    write_records(folder / "train.jsonl", 24, seed=1)
    write_records(folder / "valid.jsonl", 5, seed=2)
    return str(folder)


def _config(data_dir: str, ckpt: str):
    # keep_last=1: the save of step 2 prunes step 1
    return tiny_config(data_dir, checkpoint__dir=ckpt, checkpoint__save_interval=1, checkpoint__keep_last=1)


# -- the killed run (a subprocess: `python this_file.py <mode> <data_dir> <ckpt> <signals>`) ----------------
def _kill_half_way_through_rmtree(ckpt: str) -> None:
    import shutil

    original = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        files = sorted(
            (p for p in Path(path).rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".json", p.name)
        )
        if str(path).startswith(ckpt) and len(files) >= 4:
            # a checkpoint's folder: its data files go first, the json marker and header stay
            for file in files[: len(files) // 2]:
                file.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path, *args, **kwargs)

    shutil.rmtree = rmtree


def _block_in_file_writer(signals: Path) -> None:
    from megatron.core.dist_checkpointing.strategies.filesystem_async import FileSystemWriterAsync

    original = FileSystemWriterAsync.write_preloaded_data
    rank_pid = os.getpid()

    def write_preloaded_data(*args, **kwargs):
        (signals / f"writing-{os.getpid()}-{threading.get_ident()}").touch()
        deadline = time.monotonic() + 120
        # A writer in its own process goes on once the rank is gone, as one mid-write would.
        while time.monotonic() < deadline and (os.getpid() == rank_pid or os.getppid() == rank_pid):
            time.sleep(0.05)
        return original(*args, **kwargs)

    FileSystemWriterAsync.write_preloaded_data = staticmethod(write_preloaded_data)


def _killed_run(mode: str, data_dir: str, ckpt: str, signals: str) -> None:
    from protein_llm_nemo.runtime.distributed import find_free_port
    from protein_llm_nemo.training.sft import run_sft

    os.environ.update(
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(find_free_port()),
    )
    if mode == "prune":
        _kill_half_way_through_rmtree(ckpt)
    else:
        _block_in_file_writer(Path(signals))
    run_sft(_config(data_dir, ckpt))
    raise SystemExit("the run finished: it was meant to be killed")


def _start_killed_run(mode: str, data_dir: str, ckpt: Path, signals: Path) -> subprocess.Popen:
    signals.mkdir(exist_ok=True)
    # a file, not a pipe: a surviving writer would hold a pipe open
    with open(signals.parent / f"{mode}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, __file__, mode, data_dir, str(ckpt), str(signals)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            start_new_session=True,  # its session id finds every process it starts, orphaned or not
        )


def _session(sid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getsid(process.pid) == sid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, PermissionError):
            pass
    return members


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} ({process.memory_info().rss >> 20} MiB): {' '.join(process.cmdline())[:150]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def _survivors(sid: int) -> list[str]:
    """The processes of a killed run's session still there after a short wait (then killed)."""
    deadline = time.monotonic() + 10
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = [_describe(p) for p in _session(sid)]
    for process in _session(sid):
        process.kill()
    return found


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- tests ---------------------------------------------------------------------------------------------------
def _export_then_resume(rank: int, world_size: int, data_dir: str, ckpt: str, out: str) -> dict:
    from protein_llm_nemo.conversion.protein_llm_export import export_protein_llm_checkpoint
    from protein_llm_nemo.runtime import initialize_distributed
    from protein_llm_nemo.training.checkpoint import latest_checkpoint
    from protein_llm_nemo.training.sft import run_sft

    initialize_distributed()
    exported = export_protein_llm_checkpoint(latest_checkpoint(ckpt), out)
    result = run_sft(_config(data_dir, ckpt))
    return {
        "exported": sorted(p.name for p in Path(exported).iterdir()),
        "start": result.start_step,
        "names": sorted(p.name for p in Path(ckpt).iterdir()),
    }


def test_a_kill_while_pruning_leaves_only_complete_checkpoints(data_dir, tmp_path):
    from protein_llm_nemo.training.checkpoint import latest_checkpoint, list_checkpoints

    ckpt = tmp_path / "ckpt"
    run = _start_killed_run("prune", data_dir, ckpt, tmp_path / "signals")
    assert run.wait(timeout=600) == -signal.SIGKILL, (tmp_path / "prune.log").read_text()[-3000:]
    survivors = _survivors(run.pid)  # not killed mid-save, yet megatron's results-queue manager stayed
    # Killed while the save of step 2 deleted step 1: half its files are gone, its marker is not.
    leftovers = [p for p in ckpt.iterdir() if "step_0000001" in p.name]
    assert len(leftovers) == 1 and (leftovers[0] / "train_state.json").is_file()
    assert not (leftovers[0] / "__0_0.distcp").exists()
    # ... and it is no checkpoint: out of view (a `.trash-` folder), not listed.
    assert leftovers[0].name.startswith(".trash-step_0000001-")
    assert [p.name for _, p in list_checkpoints(ckpt)] == ["step_0000002"]
    assert latest_checkpoint(ckpt) == ckpt / "step_0000002"
    # Export and resume take step 2; the next save removes the trash, and prunes again.
    (result,) = run_distributed(
        _export_then_resume, world_size=1, args=(data_dir, str(ckpt), str(tmp_path / "hf"))
    )
    assert "config.json" in result["exported"]
    assert result["start"] == 2
    assert result["names"] == ["latest", "logs", "step_0000004"]
    assert survivors == []


def test_a_kill_mid_save_leaves_no_process_behind(data_dir, tmp_path):
    from protein_llm_nemo.training.checkpoint import list_checkpoints

    ckpt, signals = tmp_path / "ckpt", tmp_path / "signals"
    run = _start_killed_run("save", data_dir, ckpt, signals)
    _wait_for(lambda: any(signals.iterdir()) or run.poll() is not None, 600, "the first save to write")
    assert run.poll() is None, (tmp_path / "save.log").read_text()[-3000:]
    time.sleep(1.0)  # every file writer of the save has started
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert _survivors(run.pid) == []
    # The killed save left only its hidden temp folder, which is no checkpoint (the next save removes it).
    assert list_checkpoints(ckpt) == []
    assert [p.name.split("-")[0] for p in ckpt.iterdir() if p.name.startswith(".")] == [
        ".step_0000001.partial"
    ]


# -- the folder rules, without training ---------------------------------------------------------------------
def _fake_checkpoint(folder: Path) -> Path:
    from protein_llm_nemo.training.checkpoint_files import write_marker

    folder.mkdir(parents=True)
    for name in (".metadata", "__0_0.distcp", "common.pt"):
        (folder / name).write_bytes(b"x")
    write_marker(folder, {"step": 1})
    return folder


def test_a_folder_is_a_checkpoint_only_with_every_file_its_marker_lists(tmp_path, caplog):
    from protein_llm_nemo.training import checkpoint_files
    from protein_llm_nemo.training.checkpoint import list_checkpoints, resolve_resume

    complete = _fake_checkpoint(tmp_path / "step_0000001")
    assert json.loads((complete / "train_state.json").read_text())["files"] == [
        ".metadata",
        "__0_0.distcp",
        "common.pt",
    ]
    lost_a_file = _fake_checkpoint(tmp_path / "step_0000002")
    (lost_a_file / "__0_0.distcp").unlink()
    (tmp_path / "step_0000003").mkdir()  # no marker
    checkpoint_files.logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=checkpoint_files.logger.name):
            assert list_checkpoints(tmp_path) == [(1, complete)]
    finally:
        checkpoint_files.logger.removeHandler(caplog.handler)
    assert (
        "step_0000002: 1 of the 3 files" in caplog.text and "step_0000003: no train_state.json" in caplog.text
    )
    assert resolve_resume(None, str(tmp_path), auto_resume=False) == complete
    for incomplete in (lost_a_file, tmp_path / "step_0000003"):
        with pytest.raises(FileNotFoundError, match="not a complete training checkpoint"):
            resolve_resume(None, str(incomplete), auto_resume=False)


def test_the_next_save_removes_what_killed_saves_and_deletions_left(tmp_path):
    from protein_llm_nemo.training.checkpoint_files import prune, remove_stale

    kept = [_fake_checkpoint(tmp_path / f"step_000000{i}") for i in (1, 2, 3)]
    (kept[0] / "common.pt").unlink()  # a half-deleted folder: its marker, not every file
    leftovers = [".step_0000004.partial-1a2b", ".step_0000002.old-3c4d", ".trash-step_0000000-12-ab12cd"]
    for name in [*leftovers, "step_0000005", "notes"]:  # step_0000005: no marker
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(b"x")
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "step_0000002", "step_0000003"]
    prune(tmp_path, keep_last=1, keep=kept[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "step_0000003"]


if __name__ == "__main__":
    _killed_run(*sys.argv[1:])
