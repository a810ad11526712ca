"""Verifiable rewards for GRPO and evaluation: ``score(record, completion) -> RewardResult`` by record task.

See ``docs/rewards.md`` for each reward's definition, parsing rules and the reward hacks it resists.
"""

from protein_llm_nemo.rewards.base import Reward, RewardConfig, RewardInputError, RewardResult
from protein_llm_nemo.rewards.registry import (
    NoRewardError,
    configure_reward,
    get_reward,
    has_reward,
    list_rewards,
    missing_ground_truth,
    register_reward,
    reset_rewards,
    score,
)

__all__ = [
    "NoRewardError",
    "Reward",
    "RewardConfig",
    "RewardInputError",
    "RewardResult",
    "configure_reward",
    "get_reward",
    "has_reward",
    "list_rewards",
    "missing_ground_truth",
    "register_reward",
    "reset_rewards",
    "score",
]
