"""The folders of a checkpoint root: which `step_*` are complete, the completion marker, pruning, cleanup.

    step_0000010/                  complete: its marker `train_state.json` lists every file of the folder
    .step_0000020.partial-<id>/    a save in progress (or killed): never listed, removed at the next save
    .trash-step_0000000-<pid>-<id>/  a folder being deleted (or whose deletion was killed): likewise
    latest                         text: the name of the newest complete checkpoint

Every change a reader could observe is one `os.replace`: a save renames its finished temp folder into place,
a deletion renames the folder to a `.trash-` sibling before removing its files, so a kill at any point leaves
`step_*` folders that are whole or (a legacy leftover) lack files their marker lists, and those are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from protein_llm_nemo.runtime import get_logger

logger = get_logger(__name__)

STEP_PATTERN = re.compile(r"^step_(\d+)$")
LATEST = "latest"
TRAIN_STATE = "train_state.json"  # the completion marker, written last
MANIFEST_KEY = "files"
TRASH_PREFIX = ".trash-"
# hidden leftovers of a killed save (`AtomicOutputDir` temp and replaced folders) or deletion
_STALE = re.compile(r"^(\.step_\d+\.(partial|old)-\w+|\.trash-.+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def incomplete_reason(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint (None: it is). A marker without a file list (written before
    the list existed) is trusted as it is."""
    marker = folder / TRAIN_STATE
    if not marker.is_file():
        return f"no {TRAIN_STATE}"
    try:
        files = json.loads(marker.read_text()).get(MANIFEST_KEY, [])
    except (OSError, ValueError) as error:
        return f"unreadable {TRAIN_STATE} ({error})"
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        return f"{len(missing)} of the {len(files)} files its {TRAIN_STATE} lists are missing ({missing[0]}, ...)"
    return None


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first; incomplete `step_*` folders are skipped (logged)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = STEP_PATTERN.match(child.name)
        if not (match and child.is_dir()):
            continue
        reason = incomplete_reason(child)
        if reason is None:
            found.append((int(match.group(1)), child))
        else:
            logger.warning("skipping incomplete checkpoint %s: %s", child, reason)
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def step_folder(path: str | Path) -> Path:
    """A checkpoint step folder: `path` itself, or the latest complete step of a run folder (one with a
    `latest` file)."""
    folder = Path(path)
    return (latest_checkpoint(folder) or folder) if (folder / "latest").is_file() else folder


def write_marker(folder: Path, train_state: dict[str, Any]) -> None:
    """Complete `folder`: the train state plus the list of every file in it, written atomically. Call it
    once every rank's files are on disk (after a barrier) and nothing else will be written."""
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    _write_atomically(
        folder / TRAIN_STATE, json.dumps({**train_state, MANIFEST_KEY: files}, indent=2, default=str)
    )


def write_latest(root: Path, name: str) -> None:
    _write_atomically(root / LATEST, name)


def remove_folder(path: Path) -> None:
    """Take `path` out of view with one rename, then delete it: a kill half-way leaves only hidden trash."""
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale(root: Path) -> None:
    """Delete what killed saves and deletions left behind: hidden temp and trash folders, and `step_*`
    folders that are not complete checkpoints. Rank 0, while no save is in progress."""
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        if _STALE.match(child.name):
            logger.info("removing the leftover %s of a killed save or deletion", child)
            shutil.rmtree(child, ignore_errors=True)
        elif STEP_PATTERN.match(child.name) and (reason := incomplete_reason(child)) is not None:
            logger.warning("removing incomplete checkpoint %s: %s", child, reason)
            remove_folder(child)


def prune(root: Path, keep_last: int, keep: Path) -> None:
    """Delete the oldest complete checkpoints beyond the newest `keep_last` (0: keep all); never `keep`."""
    if keep_last <= 0:
        return
    for _, path in list_checkpoints(root)[:-keep_last]:
        if path != keep:
            remove_folder(path)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp"  # one writer (rank 0); a leftover is overwritten next time
    with open(tmp, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
