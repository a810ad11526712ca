"""Rewards by record task: ``@register_reward("go_mf", "go_bp", "go_cc")`` on a `Reward` class, then
`get_reward(task)` / `score(record, completion)`.

Instances are built lazily, on first use, with their defaults; one instance serves every task of its class
(the three GO tasks share one ontology and its ancestor cache). ``get_reward(task, **options)`` builds a
separate instance with those constructor options (``ontology=...``, ``config=...``) for the caller to keep;
``configure_reward(task, **options)`` installs such an instance as the one `score` uses.

Only tasks with a checkable answer have a reward. Free-text tasks (function descriptions, names, locations,
QA, SSL text) have none by design: `get_reward` / `score` raise `NoRewardError` for them as for any unknown
task, and `has_reward` lets a GRPO data filter keep the rewardable records.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.rewards.base import Reward, RewardResult

RewardClass = TypeVar("RewardClass", bound=type[Reward])

_MODULES: tuple[str, ...] = (
    "go_terms",
    "stability",
    "ppi",
    "structure_quality",
    "multiple_choice",
    "binary_property",
)

_CLASSES: dict[str, type[Reward]] = {}
_INSTANCES: dict[type[Reward], Reward] = {}


class NoRewardError(LookupError):
    """A task without a (verifiable) reward."""


def register_reward(*tasks: str) -> Callable[[RewardClass], RewardClass]:
    if not tasks:
        raise ValueError("register_reward needs at least one task")

    def decorator(cls: RewardClass) -> RewardClass:
        taken = [t for t in tasks if t in _CLASSES and _CLASSES[t] is not cls]
        if taken:
            raise ValueError(f"task {taken[0]!r} already has reward {_CLASSES[taken[0]].__name__}")
        for task in tasks:
            _CLASSES[task] = cls
        cls.tasks = tuple(tasks)
        return cls

    return decorator


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__package__}.{module}")


def _reward_class(task: str) -> type[Reward]:
    _load_all()
    if task not in _CLASSES:
        raise NoRewardError(
            f"no reward for task {task!r}: rewards exist for {', '.join(sorted(_CLASSES))}. Free-text tasks "
            "(function descriptions, names, locations, QA) have no verifiable answer and deliberately no "
            "reward; filter GRPO records with has_reward(record.task)"
        )
    return _CLASSES[task]


def list_rewards() -> dict[str, str]:
    """Task -> the reward class that scores it."""
    _load_all()
    return {task: cls.__name__ for task, cls in sorted(_CLASSES.items())}


def has_reward(task: str) -> bool:
    _load_all()
    return task in _CLASSES


def get_reward(task: str, **options: Any) -> Reward:
    """The shared default reward of `task` (built on first use), or a new one built with `options`."""
    cls = _reward_class(task)
    if options:
        return cls(**options)
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]


def configure_reward(task: str, **options: Any) -> Reward:
    """Build `task`'s reward with `options` and make it the one `score` uses for all of its class's tasks."""
    cls = _reward_class(task)
    _INSTANCES[cls] = cls(**options)
    return _INSTANCES[cls]


def reset_rewards() -> None:
    """Forget every built instance (the next use builds defaults again)."""
    _INSTANCES.clear()


def missing_ground_truth(record: ProteinRecord) -> str | None:
    """None when `record` can be scored, else what its ground truth lacks (``meta.ddg`` ...); checked on the
    reward class, so no resource (the GO ontology) is loaded. A task without a reward is `NoRewardError`."""
    return _reward_class(record.task).ground_truth_problem(record)


def score(record: ProteinRecord, completion: str) -> RewardResult:
    """Score `completion` against `record` with the reward registered for ``record.task``."""
    return get_reward(record.task).score(record, completion)
